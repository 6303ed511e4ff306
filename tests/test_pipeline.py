"""The data pipeline on files it writes itself: seeking, colour range, cache, skipping, datasets, CLI."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from vidbench_plugins.datasets import folder, kinetics

from tests.conftest import REAL_CLIPS, only_run_dir, vidbench, write_suite
from vidbench.data.cache import ClipCache
from vidbench.data.decode import open_video, probe
from vidbench.data.loader import ClipDataset, collate_skipping_none, read_skip_log
from vidbench.data.sampling import ClipSpec
from vidbench.data.scan import DatasetError
from vidbench.specs import VideoSample


def encode(path: Path, frames: np.ndarray, pix_fmt: str = "yuv420p", gop: int = 12, fps: int = 25) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": "1", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def patches(count: int) -> np.ndarray:
    colours = [
        (12, 12, 12),
        (243, 243, 243),
        (200, 30, 30),
        (30, 200, 30),
        (30, 30, 200),
        (128, 128, 128),
        (250, 200, 20),
        (20, 200, 250),
    ]
    frames = np.zeros((count, 64, 64, 3), np.uint8)
    for i, colour in enumerate(colours):
        frames[:, (i // 4) * 32 : (i // 4 + 1) * 32, (i % 4) * 16 : (i % 4 + 1) * 16] = colour
    return frames


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_full_and_limited_range_give_the_same_colours(tmp_path: Path, backend: str) -> None:
    truth = patches(6)
    limited = encode(tmp_path / "limited.mp4", truth, "yuv420p")
    full = encode(tmp_path / "full.mp4", truth, "yuvj420p")
    assert probe(full).color_range == "full"
    a = open_video(limited, backend).read([0, 5]).astype(int)  # type: ignore[arg-type]
    b = open_video(full, backend).read([0, 5]).astype(int)  # type: ignore[arg-type]
    assert np.abs(a - truth[[0, 5]]).mean() < 3 and np.abs(b - truth[[0, 5]]).mean() < 3
    assert np.abs(a - b).mean() < 3


def test_seek_in_a_long_file_decodes_only_from_the_nearest_keyframe(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (40, 1, 1, 3), dtype=np.uint8), 10, axis=0)
    frames = np.broadcast_to(frames, (400, 32, 32, 3)).copy()
    frames[np.arange(400), 0, 0, 0] = np.arange(400) % 256  # each frame a little different
    path = encode(tmp_path / "long.mp4", frames, gop=25)
    meta = probe(path)
    assert meta.frames == 400 and meta.keyframes >= 16
    reader = open_video(path, "pyav")
    out = reader.read(list(range(380, 396)))
    assert out.shape[0] == 16
    assert reader.decoded_frames <= 16 + 25, f"decoded {reader.decoded_frames} of 400"
    assert np.abs(out.astype(int) - frames[380:396].astype(int)).mean() < 4
    spread = open_video(path, "pyav")
    spread.read([5, 200, 395])
    assert spread.decoded_frames < 3 * 26


def test_clip_cache_returns_the_decoded_frames(data_root: Path, tmp_path: Path) -> None:
    from vidbench_plugins.datasets import synthetic

    from tests.conftest import TINY_DATA

    samples = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA).splits["test"][:6]
    cache = ClipCache(tmp_path / "cache")
    cached = ClipDataset(samples, ClipSpec(4), 16, train=False, cache=cache)
    plain = ClipDataset(samples, ClipSpec(4), 16, train=False)
    first = [cached[i][0] for i in range(6)]
    assert cache.misses == 6 and cache.hits == 0
    second = [cached[i][0] for i in range(6)]
    assert cache.hits == 6
    for a, b, c in zip(first, second, [plain[i][0] for i in range(6)], strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_an_empty_or_cut_cache_entry_is_a_miss_and_is_written_anew(data_root: Path, tmp_path: Path) -> None:
    from vidbench_plugins.datasets import synthetic

    from tests.conftest import TINY_DATA

    samples = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA).splits["test"][:2]
    cache = ClipCache(tmp_path / "cache")
    dataset = ClipDataset(samples, ClipSpec(4), 16, train=False, cache=cache)
    expected = [dataset[i][0] for i in range(2)]
    empty, cut = sorted((tmp_path / "cache").rglob("*.npy"))
    empty.write_bytes(b"")  # renamed before its data reached the disk, then a crash
    cut.write_bytes(cut.read_bytes()[:200])
    again = [dataset[i][0] for i in range(2)]
    assert cache.misses == 4 and cache.hits == 0
    assert all(torch.equal(a, b) for a, b in zip(expected, again, strict=True))
    assert [dataset[i][0].shape for i in range(2)] and cache.hits == 2, "the entries were not written anew"


def test_training_draws_index_a_whole_cached_video(data_root: Path, tmp_path: Path) -> None:
    """Random training draws read the same frames from a video cached whole as from the file, with one cache
    entry per video; a video over ``whole_video_mb`` is decoded from the file every time."""
    from vidbench_plugins.datasets import synthetic

    from tests.conftest import TINY_DATA

    samples = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA).splits["train"][:4]
    cache = ClipCache(tmp_path / "cache")
    cached = ClipDataset(samples, ClipSpec(4), 16, train=True, cache=cache, whole_video_mb=16)
    plain = ClipDataset(samples, ClipSpec(4), 16, train=True)
    for draw in range(3):
        for sample in samples:
            a = cached.decode(sample, np.random.default_rng(draw))
            b = plain.decode(sample, np.random.default_rng(draw))
            assert a.shape == b.shape and np.array_equal(a, b)
    assert cache.misses == 4 and cache.hits == 8
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 4
    small = ClipDataset(samples, ClipSpec(4), 16, train=True, cache=ClipCache(tmp_path / "small"), whole_video_mb=0.01)
    small.decode(samples[0], np.random.default_rng(0))
    assert small.cache is not None and small.cache.misses == small.cache.hits == 0


def test_broken_files_are_skipped_and_listed(tmp_path: Path, data_root: Path) -> None:
    from vidbench_plugins.datasets import synthetic

    from tests.conftest import TINY_DATA

    good = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA).splits["test"][0]
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.path.read_bytes()[:600])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    log = tmp_path / "skipped.csv"
    ds = ClipDataset(
        [VideoSample(p, 0) for p in (text, good.path, truncated, empty)], ClipSpec(4), 16, False, skip_log=log
    )
    batch = collate_skipping_none([ds[i] for i in range(4)])
    assert batch is not None and batch[0].shape[0] == 1
    listed = dict(read_skip_log(log))
    assert set(listed) == {str(text), str(truncated), str(empty)}
    assert all(reason for reason in listed.values())


def _asl_folder(tmp_path: Path, with_corrupt: bool) -> Path:
    root = tmp_path / "asl"
    for clip in sorted((REAL_CLIPS / "asl_gestures").glob("*.mkv")):
        (root / clip.stem).mkdir(parents=True)
        os.symlink(clip, root / clip.stem / clip.name)
    if with_corrupt:
        os.symlink(REAL_CLIPS / "odd/corrupted.mp4", root / "yes" / "corrupted.mp4")
    return root


@pytest.mark.skipif(not REAL_CLIPS.exists(), reason="real clips absent")
def test_folder_suite_over_the_asl_clips_runs_end_to_end(tmp_path: Path) -> None:
    root = _asl_folder(tmp_path, with_corrupt=True)
    suite = write_suite(
        tmp_path,
        tmp_path / "data",
        datasets=[{"name": "folder", "options": {"path": str(root), "split": "all"}}],
        input={"frames": 4, "crop": 32},
        batch_sizes=[1],
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert list(frame["status"]) == ["ok"] and frame["top1"].notna().all()
    skipped = dict(read_skip_log(run_dir / "skipped.csv"))
    assert any(path.endswith("corrupted.mp4") for path in skipped), skipped
    assert "skipped" in proc.stdout


def test_folder_dataset_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        folder.prepare(tmp_path, {"path": str(tmp_path / "nowhere")})
    (tmp_path / "ds" / "cats").mkdir(parents=True)
    (tmp_path / "ds" / "dogs").mkdir(parents=True)
    (tmp_path / "ds" / "dogs" / "a.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no video files: cats"):
        folder.prepare(tmp_path, {"path": str(tmp_path / "ds")})


def test_missing_dataset_path_fails_the_run_before_training(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path, tmp_path / "data", datasets=[{"name": "folder", "options": {"path": str(tmp_path / "absent")}}]
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])  # a data error, not a usage error
    assert "does not exist" in proc.stderr and str(tmp_path / "absent") in proc.stderr
    assert not list(tmp_path.glob("results/t/*/models"))


def _kinetics_tree(tmp_path: Path, data_root: Path) -> Path:
    from vidbench_plugins.datasets import synthetic

    from tests.conftest import TINY_DATA

    samples = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA).splits["train"]
    root = tmp_path / "k400"
    rows = {"train": [], "val": []}
    for i, sample in enumerate(samples[:24]):
        split = "train" if i < 16 else "val"
        label = ["abseiling", "archery", "yoga"][i % 3]
        row = {"label": label, "youtube_id": f"vid{i:04d}", "time_start": "10", "time_end": "20", "split": split}
        target = kinetics.video_path(root, split, row)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(sample.path, target)
        rows[split].append(row)
    rows["train"].append(
        {"label": "archery", "youtube_id": "gone", "time_start": "0", "time_end": "10", "split": "train"}
    )
    for split, items in rows.items():
        with open(root / f"{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, ["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writeheader()
            writer.writerows(items)
    return root


def test_kinetics_layout_classes_and_errors(tmp_path: Path, data_root: Path) -> None:
    root = _kinetics_tree(tmp_path, data_root)
    prepared = kinetics.prepare(tmp_path, {"root": str(root), "classes": ["archery", "yoga"]})
    assert prepared.class_names == ["archery", "yoga"]
    assert len(prepared.splits["train"]) == 10 and len(prepared.splits["test"]) == 6
    assert [s.path for s in prepared.splits["val"]] == [s.path for s in prepared.splits["test"]]
    assert any("gone_000000_000010.mp4" in path for path, _ in prepared.skipped)
    assert len(kinetics.KINETICS50) == len(set(kinetics.KINETICS50)) == 50
    with pytest.raises(DatasetError, match=r"kinetics classes not in train\.csv: yoga-extreme"):
        kinetics.prepare(tmp_path, {"root": str(root), "classes": ["yoga-extreme"]})
    with open(root / "val.csv", "a") as fh:
        fh.write("juggling fire,x,0,10,val\n")
    with pytest.raises(DatasetError, match=r"label\(s\) not in train\.csv: juggling fire"):
        kinetics.prepare(tmp_path, {"root": str(root)})
    with pytest.raises(DatasetError, match="expected layout"):
        kinetics.prepare(tmp_path, {"root": str(tmp_path / "no-kinetics"), "classes": "kinetics50"})


@pytest.mark.skipif(not REAL_CLIPS.exists(), reason="real clips absent")
def test_data_cli_inspect_bench_preview(tmp_path: Path) -> None:
    inspect = vidbench("data", "inspect", str(REAL_CLIPS / "odd"), "--decode", cwd=tmp_path, timeout=300)
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    assert "corrupted.mp4" in inspect.stdout and "unreadable" in inspect.stdout
    assert "rotated 90 deg" in inspect.stdout
    bench = vidbench(
        "data",
        "bench",
        str(REAL_CLIPS / "odd/video_90.mov"),
        "--rounds",
        "1",
        "--frames",
        "3",
        cwd=tmp_path,
        timeout=300,
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    for backend in ("decord", "pyav", "pytorchvideo"):
        assert backend in bench.stdout
    out = tmp_path / "sheet.png"
    preview = vidbench(
        "data",
        "preview",
        str(REAL_CLIPS / "odd/video_90.mov"),
        "--out",
        str(out),
        "--frames",
        "3",
        cwd=tmp_path,
        timeout=300,
    )
    assert preview.returncode == 0, preview.stderr[-2000:]
    image = np.asarray(Image.open(out))
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 10


def test_variable_frame_rate_is_detected_and_sampling_follows_time(tmp_path: Path) -> None:
    from fractions import Fraction

    from vidbench.data.sampling import sample_indices

    path = tmp_path / "vfr.mp4"
    frames = patches(20)
    frames[:, 0, 0, 0] = np.arange(20) * 10
    # 10 frames 10 ms apart, then 10 frames 500 ms apart: one clip, two rates.
    stamps = [i * 10 for i in range(10)] + [100 + i * 500 for i in range(10)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=100)
        stream.height, stream.width = 64, 64
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "1", "bf": "0"}
        for array, stamp in zip(frames, stamps, strict=True):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = stamp, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    meta = probe(path)
    assert meta.frames == 20 and meta.vfr
    times = meta.timestamps_s
    assert times[9] < 0.2 and times[-1] > 4
    idx = sample_indices(meta.frames, ClipSpec(5), timestamps_s=times)
    assert sum(i < 10 for i in idx) == 1, idx
    assert "variable frame rate" in " ".join(meta.problems())


def _write(path: Path, codec: str, fmt: str, frames: int = 20, size: tuple[int, int] = (64, 48)) -> Path:
    """A short clip of moving bars in container ``fmt`` (PyAV's muxer name), whatever ``path``'s suffix."""
    width, height = size
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, (3 * i) % width :: 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_files_ffmpeg_reads_are_read_whatever_their_names(tmp_path: Path) -> None:
    """Found by content, not by suffix: an elementary H.264 stream (no timestamps, seeking fails: read
    forward), MPEG-2 in a program stream (seeks land late: read forward), FLV, H.263 in 3GP and an MP4
    without a suffix are listed and read; an audio-only file and a text file are reported as not video."""
    folder_ = tmp_path / "mixed"
    folder_.mkdir()
    videos = {
        "raw.h264": _write(folder_ / "raw.h264", "libx264", "h264"),
        "ps.mpg": _write(folder_ / "ps.mpg", "mpeg2video", "vob"),
        "old.flv": _write(folder_ / "old.flv", "flv", "flv"),
        "phone.3gp": _write(folder_ / "phone.3gp", "h263", "3gp", size=(176, 144)),
        "no_suffix": _write(folder_ / "no_suffix", "libx264", "mp4"),
    }
    with av.open(str(folder_ / "tone.wav"), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    (folder_ / "notes.txt").write_text("not a video\n")
    raw = probe(videos["raw.h264"])
    assert not raw.seekable and raw.frames == 20 and "seeking fails" in "; ".join(raw.problems())
    for name, path in videos.items():
        for backend in ("decord", "pyav"):
            clip = ClipDataset([VideoSample(path, 0)], ClipSpec(8), 32, train=False, backend=backend)[0]
            assert clip is not None and clip[0].shape == (3, 8, 32, 32), (name, backend)
    inspect = vidbench("data", "inspect", str(folder_), "--decode", cwd=tmp_path, timeout=300)
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    text = " ".join(inspect.stdout.split())
    assert "7 file(s): 5 video(s), 0 unreadable, 2 not video" in text, inspect.stdout
    assert text.count("read by") == 5 and "no backend reads it" not in text

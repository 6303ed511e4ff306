"""Decode policies on real H.264 files whose frames say their own index: which frame each policy returns,
how much it decodes, and a suite that measures a policy's accuracy cost on the same trained model."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from tests.conftest import only_run_dir, vidbench, write_suite
from vidbench.data.decode import DecodePolicy, PyAVReader, open_video, policy_from_label, probe
from vidbench.job.context import Context
from vidbench.rundir import RunDir
from vidbench.serve.artifact import chosen_decode_policy, measured_rows

FRAMES, GOP = 48, 8


def numbered(path: Path, frames: int = FRAMES, gop: int = GOP) -> Path:
    """An H.264 file with B-frames and a keyframe every ``gop`` frames; frame ``i`` is grey level ``5 i``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height = stream.width = 32
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "crf": "1",
            "bf": "2",
            "threads": "1",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        for i in range(frames):
            array = np.full((32, 32, 3), 5 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def indices_of(frames: np.ndarray) -> list[int]:
    """The index each decoded frame shows (its grey level / 5)."""
    return [round(float(frame.mean()) / 5) for frame in frames]


WANTED = [0, 3, 9, 14, 22, 30, 37, 45]


@pytest.mark.parametrize("mode", ["exact", "sequential", "seek"])
@pytest.mark.parametrize("threads", [1, 2])
def test_exact_modes_return_the_frame_at_each_index(tmp_path: Path, mode: str, threads: int) -> None:
    path = numbered(tmp_path / "n.mp4")
    reader = open_video(path, "pyav", policy=DecodePolicy(mode, threads))  # type: ignore[arg-type]
    assert indices_of(reader.read(WANTED)) == WANTED
    assert indices_of(reader.read([30, 2, 30])) == [30, 2, 30], "any order, repeats allowed"


def test_sequential_decodes_everything_up_to_the_last_wanted_frame_and_seek_only_near_each(tmp_path: Path) -> None:
    path = numbered(tmp_path / "n.mp4")
    sequential = open_video(path, "pyav", policy=DecodePolicy("sequential"))
    sequential.read([2, 40])
    seeking = open_video(path, "pyav", policy=DecodePolicy("seek"))
    seeking.read([2, 40])
    assert sequential.decoded_frames >= 41 and seeking.decoded_frames <= 2 * (GOP + 3)


def test_keyframes_returns_the_nearest_keyframe_and_decodes_only_keyframes(tmp_path: Path) -> None:
    path = numbered(tmp_path / "n.mp4")
    meta = probe(path)
    assert meta.keyframes == FRAMES // GOP
    reader = open_video(path, "decord", policy=DecodePolicy("keyframes"))
    assert isinstance(reader, PyAVReader), "decord reads exact frames only: the policy opens PyAV"
    got = indices_of(reader.read(WANTED))
    keyframes = np.arange(0, FRAMES, GOP)
    assert got == [int(keyframes[np.abs(keyframes - i).argmin()]) for i in WANTED]
    assert reader.decoded_frames <= FRAMES // GOP


def test_nonref_skips_the_b_frames_and_returns_a_frame_next_to_each_index(tmp_path: Path) -> None:
    path = numbered(tmp_path / "n.mp4")
    reader = open_video(path, "pyav", policy=DecodePolicy("nonref"))
    got = indices_of(reader.read(WANTED))
    assert all(abs(g - w) <= 2 for g, w in zip(got, WANTED, strict=True)), got
    assert got != WANTED and reader.decoded_frames < FRAMES, "some wanted frames were B-frames, and skipped"


def test_scaled_decoding_gives_the_short_side_asked_and_the_same_picture(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 255, (4, 4, 6, 3), dtype=np.uint8).repeat(16, axis=1).repeat(16, axis=2)
    path = tmp_path / "wide.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width, stream.pix_fmt, stream.options = 64, 96, "yuv420p", {"crf": "1"}
        for array in blocks:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    full = open_video(path, "pyav").read([1, 3])
    small = open_video(path, "pyav", policy=policy_from_label("exact+scaled", scaled_side=32)).read([1, 3])
    assert small.shape == (2, 32, 48, 3)
    assert np.abs(full[:, 8::16, 8::16].astype(int) - small[:, 4::8, 4::8]).mean() < 4, "block centres agree"


def test_policy_labels_name_the_allowed_values() -> None:
    assert policy_from_label("nonref+scaled", 2, 36) == DecodePolicy("nonref", 2, 36)
    assert policy_from_label("keyframes").label == "keyframes"
    for label in ("nonref+scaled", "exact", "keyframes+scaled"):  # /healthz and the rows give back what parses
        assert policy_from_label(policy_from_label(label, 1, 36).label, 1, 36) == policy_from_label(label, 1, 36)
    with pytest.raises(ValueError, match=r"allowed: exact\[\+scaled\], sequential"):
        policy_from_label("keyframes+small")


def test_a_further_decode_policy_is_measured_on_the_same_trained_model(tmp_path: Path, data_root: Path) -> None:
    suite = write_suite(tmp_path, data_root, data={"decode_policy": ["exact", "keyframes"], "decode_threads": 2})
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    rows = pd.read_csv(run_dir / "results.csv").set_index(["measure_task", "batch_size"])
    assert sorted(rows.index) == [("eager", 1), ("eager", 2), ("eager@keyframes", 1), ("eager@keyframes", 2)]
    assert set(rows["status"]) == {"ok"} and set(rows["decode_threads"]) == {2}
    assert rows.loc[("eager", 1), "decode_policy"] == "exact"
    assert rows.loc[("eager@keyframes", 1), "decode_policy"] == "keyframes"
    assert rows.loc[("eager", 1), "agreement_top1"] == 1.0 and rows.loc[("eager", 1), "max_abs_logit_diff"] < 1e-4
    # The tiny set's 8-frame clips hold one keyframe: the policy shows the model one picture 4 times over.
    assert 0 <= rows.loc[("eager@keyframes", 1), "agreement_top1"] <= 1
    assert rows.loc[("eager@keyframes", 1), "max_abs_logit_diff"] > 0.01
    assert rows["cell_key"].nunique() == 4
    assert json.loads((run_dir / "env.json").read_text())["decode"] == {
        "policies": ["exact", "keyframes"],
        "threads": 2,
    }
    assert len(list((run_dir / "models").glob("*/train.json"))) == 1, "one model trained, evaluated twice"

    # The server's `--decode-policy auto`: the fastest measured policy whose top-1 ties the first policy's.
    ctx = Context.for_job(RunDir(run_dir), "synthetic-motion__r2plus1d__tiny")
    label, why = chosen_decode_policy(run_dir, ctx)
    exact, keyframes = rows.loc[("eager", 1)], rows.loc[("eager@keyframes", 1)]
    ties = keyframes["top1"] >= exact["top1_ci95_low"]
    faster = keyframes["e2e_clips_per_s"] > exact["e2e_clips_per_s"]
    assert label == ("keyframes" if ties and faster else "exact") and label in why
    assert {r["decode_policy"] for r in measured_rows(run_dir, ctx, "eager")} == {"exact"}


def test_a_folder_read_through_short_gop_copies_seeks_within_one_gop(tmp_path: Path) -> None:
    from vidbench_plugins.datasets import folder

    for name in ("a", "b"):
        (tmp_path / "clips" / name).mkdir(parents=True)
        numbered(tmp_path / "clips" / name / "one.mp4", gop=FRAMES)  # a single keyframe
    (tmp_path / "clips" / "a" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    options = {"path": str(tmp_path / "clips"), "split": "all", "reencode_gop": 8, "workers": 1}
    prepared = folder.prepare(tmp_path / "root", options)
    copies = sorted({s.path for s in prepared.splits["test"]})
    assert len(copies) == 2 and all(p.parent == tmp_path / "root" / "reencoded-g8" for p in copies)
    assert [r for r, _ in prepared.skipped] == [str(tmp_path / "clips" / "a" / "broken.mp4")]
    assert probe(copies[0]).keyframes == FRAMES // 8
    reader = open_video(copies[0], "pyav", policy=DecodePolicy("seek"))
    assert indices_of(reader.read([41])) == [41] and reader.decoded_frames <= 8 + 3
    mtime = copies[0].stat().st_mtime_ns
    folder.prepare(tmp_path / "root", options)
    assert copies[0].stat().st_mtime_ns == mtime, "made once"

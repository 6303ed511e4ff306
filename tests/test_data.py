"""The synthetic-motion dataset, decoding, sampling and transforms, on real encoded files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vidbench_plugins.datasets import synthetic

from tests.conftest import TINY_DATA
from vidbench.data.decode import DecodeError, open_video
from vidbench.data.loader import ClipDataset
from vidbench.data.sampling import ClipSpec


def test_reversed_class_is_its_partner_played_backwards() -> None:
    for pattern in range(len(synthetic.PATTERNS)):
        forward = synthetic.render_clip(2 * pattern, np.random.default_rng(7), 32, 8)
        backward = synthetic.render_clip(2 * pattern + 1, np.random.default_rng(7), 32, 8)
        assert np.array_equal(forward[::-1], backward)
        assert not np.array_equal(forward[0], forward[-1]), f"{synthetic.PATTERNS[pattern]} does not move"


def test_dataset_is_deterministic_balanced_and_cached(data_root: Path, tmp_path: Path) -> None:
    first = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA)
    assert first.num_classes == 20 and len(set(first.class_names)) == 20
    counts = {split: len(samples) for split, samples in first.splits.items()}
    assert sum(counts.values()) == 20 * synthetic.CLIPS_PER_CLASS["tiny"]
    for samples in first.splits.values():
        assert {s.label for s in samples} == set(range(20))
    again = synthetic.prepare(tmp_path / "synthetic-motion", {**TINY_DATA, "workers": 1})
    a, b = first.splits["test"][3], again.splits["test"][3]
    assert a.label == b.label
    assert np.array_equal(open_video(a.path).read(range(8)), open_video(b.path).read(range(8)))
    mtime = a.path.stat().st_mtime_ns
    synthetic.prepare(data_root / "synthetic-motion", TINY_DATA)
    assert a.path.stat().st_mtime_ns == mtime, "a prepared dataset must not be generated again"


def test_two_generations_are_the_same_bytes(tmp_path: Path) -> None:
    """Every file of the set is byte-identical from one generation to the next (x264's macroblock-tree once
    made about 5 % of the clips differ between generations under a process pool, so two cold runs of one seed
    trained on different data)."""
    options = {"size": "tiny", "resolution": 64, "length": 16, "workers": 2}
    first = synthetic.prepare(tmp_path / "a", options)
    second = synthetic.prepare(tmp_path / "b", options)
    files = sorted(p.relative_to(first.root) for p in first.root.rglob("*") if p.is_file())
    assert len(files) > 20 * synthetic.CLIPS_PER_CLASS["tiny"]
    differing = [str(f) for f in files if (first.root / f).read_bytes() != (second.root / f).read_bytes()]
    assert not differing, f"{len(differing)} of {len(files)} files differ, e.g. {differing[:3]}"


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_decoded_frames_match_rendered_frames(data_root: Path, backend: str) -> None:
    prepared = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA)
    sample = prepared.splits["train"][0]
    index = int(sample.path.stem)
    rendered = synthetic.render_clip(sample.label, np.random.default_rng((0, index)), 32, 8)
    reader = open_video(sample.path, backend)
    assert (reader.meta.frames, *reader.meta.display_size) == (8, 32, 32)
    decoded = reader.read([0, 3, 7])
    assert decoded.shape == (3, 32, 32, 3)
    assert np.abs(decoded.astype(int) - rendered[[0, 3, 7]].astype(int)).mean() < 8


def test_unreadable_file_raises_decode_error(tmp_path: Path) -> None:
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("this is text")
    for backend in ("decord", "pyav"):
        with pytest.raises(DecodeError):
            open_video(bad, backend)  # type: ignore[arg-type]


def test_clip_dataset_gives_normalized_cthw(data_root: Path) -> None:
    prepared = synthetic.prepare(data_root / "synthetic-motion", TINY_DATA)
    dataset = ClipDataset(prepared.splits["val"], ClipSpec(4), crop=16, train=False)
    clip, label = dataset[0]
    assert clip.shape == (3, 4, 16, 16) and clip.dtype.is_floating_point
    assert 0 <= label < 20
    assert -3 < float(clip.mean()) < 3 and float(clip.std()) > 0.05


def test_mirror_map_is_an_involution_and_swaps_directions() -> None:
    names, mirror = synthetic.class_names(), synthetic.mirror_map()
    label = {name: i for i, name in enumerate(names)}
    for source, target in mirror.items():
        assert target is None or mirror[target] == source
    assert mirror[label["slide-right"]] == label["slide-right-reversed"]
    assert mirror[label["slide-down-right"]] == label["slide-down-left"]
    assert mirror[label["slide-down"]] == label["slide-down"]
    assert mirror[label["right-then-down"]] is None


def test_flip_follows_the_mirror_map() -> None:
    from vidbench.data.transforms import LabelAwareFlip

    flip = LabelAwareFlip({0: 1, 1: 0, 2: None}, p=1.0)
    frames = np.arange(2 * 2 * 3 * 3, dtype=np.uint8).reshape(2, 2, 3, 3)
    flipped, label = flip(frames, 0, np.random.default_rng(0))
    assert label == 1 and np.array_equal(flipped, frames[:, :, ::-1])
    same, label = flip(frames, 2, np.random.default_rng(0))
    assert label == 2 and np.array_equal(same, frames)
    same, label = flip(frames, 5, np.random.default_rng(0))
    assert label == 5 and np.array_equal(same[:, :, ::-1], frames)

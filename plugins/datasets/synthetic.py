"""``synthetic-motion``: 20 classes of moving shapes stored as real H.264 MP4 files.

The 20 classes are 10 motion patterns x {forward, reversed}. A reversed clip shows exactly the
frames of a forward clip in reverse order, and appearance (shape, colours, background texture,
position, size) is drawn independently of the label, so a model that ignores frame order cannot
tell a class from its partner and cannot beat 50% top-1. No pattern is the time reversal of
another, so the 20 classes are all distinct for a model that does use order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from vidbench import hookimpl
from vidbench.data.encode import write_mp4, write_split_tables
from vidbench.specs import DatasetOptions, DatasetSpec, PreparedDataset, VideoSample

CLIPS_PER_CLASS = {"tiny": 8, "small": 75, "full": 500}
SPLITS = ("train", "val", "test")
PATTERNS = (
    "slide-right",
    "slide-down",
    "slide-down-right",
    "slide-down-left",
    "grow",
    "orbit-clockwise",
    "fade-in",
    "spin-clockwise",
    "scroll-right",
    "right-then-down",
)
SHAPES = ("square", "triangle", "ell", "bar")


class SyntheticMotionOptions(DatasetOptions):
    """Options of ``synthetic-motion``; each distinct setting is generated once and cached on disk."""

    size: Literal["tiny", "small", "full"] = "small"
    resolution: int = Field(64, ge=16, le=512, multiple_of=2)
    length: int = Field(16, ge=4, le=128)
    fps: int = Field(16, ge=1, le=120)
    seed: int = 0
    workers: int = Field(2, ge=1, le=64)


def class_names() -> list[str]:
    """Class ``2k`` is pattern ``k`` forward; class ``2k+1`` is the same pattern reversed in time."""
    return [f"{p}{suffix}" for p in PATTERNS for suffix in ("", "-reversed")]


# Horizontal mirror of each forward pattern, as (pattern, reversed?); None: its mirror is no class.
_MIRROR = {
    "slide-right": ("slide-right", True),
    "slide-down": ("slide-down", False),
    "slide-down-right": ("slide-down-left", False),
    "slide-down-left": ("slide-down-right", False),
    "grow": ("grow", False),
    "orbit-clockwise": ("orbit-clockwise", True),
    "fade-in": ("fade-in", False),
    "spin-clockwise": ("spin-clockwise", True),
    "scroll-right": ("scroll-right", True),
    "right-then-down": None,
}


def mirror_map() -> dict[int, int | None]:
    """Label of the mirrored clip for each label (a mirrored slide-right is a slide-left, i.e. the
    reversed slide-right); right-then-down mirrors to left-then-down, which is no class."""
    out: dict[int, int | None] = {}
    for k, pattern in enumerate(PATTERNS):
        target = _MIRROR[pattern]
        for reverse in (False, True):
            if target is None:
                out[2 * k + reverse] = None
            else:
                partner, flips_direction = target
                out[2 * k + reverse] = 2 * PATTERNS.index(partner) + (reverse != flips_direction)
    return out


@dataclass(frozen=True)
class _Pose:
    cx: float
    cy: float
    size: float
    angle: float
    alpha: float
    scroll: float


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in the shape's own unit coordinates."""
    if shape == "square":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "bar":
        return (np.abs(u) <= 1.2) & (np.abs(v) <= 0.4)
    if shape == "ell":
        return ((u >= -1) & (u <= -0.2) & (np.abs(v) <= 1)) | ((v >= 0.2) & (v <= 1) & (u >= -1) & (u <= 1))
    # triangle with vertices (0, -1), (1, 0.8), (-1, 0.8)
    return (v <= 0.8) & (v >= -1 + 1.8 * np.abs(u))


def _poses(pattern: str, rng: np.random.Generator, res: int, length: int) -> list[_Pose]:
    """The forward trajectory of one clip: its object pose at each frame."""
    size = res * rng.uniform(0.09, 0.14)
    margin = size * 1.6
    travel = 0.42 * res
    angle0 = rng.uniform(0, 2 * math.pi)

    def place(dx: float, dy: float) -> tuple[float, float]:
        lo_x, hi_x = margin - min(dx, 0), res - margin - max(dx, 0)
        lo_y, hi_y = margin - min(dy, 0), res - margin - max(dy, 0)
        return rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))

    times = [i / max(length - 1, 1) for i in range(length)]
    if pattern.startswith("slide-"):
        dx = {"slide-right": 1.0, "slide-down": 0.0, "slide-down-right": 0.75, "slide-down-left": -0.75}[pattern]
        dy = {"slide-right": 0.0, "slide-down": 1.0, "slide-down-right": 0.75, "slide-down-left": 0.75}[pattern]
        x0, y0 = place(dx * travel, dy * travel)
        return [_Pose(x0 + dx * travel * t, y0 + dy * travel * t, size, angle0, 1.0, 0.0) for t in times]
    if pattern == "right-then-down":
        leg = 0.8 * travel
        x0, y0 = place(leg, leg)
        return [_Pose(x0 + leg * min(2 * t, 1), y0 + leg * max(2 * t - 1, 0), size, angle0, 1.0, 0.0) for t in times]
    if pattern == "orbit-clockwise":
        radius = res * rng.uniform(0.18, 0.26)
        ox, oy = res / 2 + rng.uniform(-0.06, 0.06) * res, res / 2 + rng.uniform(-0.06, 0.06) * res
        start = rng.uniform(0, 2 * math.pi)
        # Image y points down, so an increasing angle turns clockwise on screen.
        return [
            _Pose(
                ox + radius * math.cos(start + math.pi * t),
                oy + radius * math.sin(start + math.pi * t),
                size,
                angle0,
                1.0,
                0.0,
            )
            for t in times
        ]
    if pattern not in ("grow", "fade-in", "spin-clockwise", "scroll-right"):
        raise ValueError(f"unknown pattern {pattern}")
    x0, y0 = place(0, 0)
    if pattern == "grow":
        return [_Pose(x0, y0, size * (0.5 + 0.9 * t), angle0, 1.0, 0.0) for t in times]
    if pattern == "fade-in":
        return [_Pose(x0, y0, size * 1.2, angle0, 0.1 + 0.9 * t, 0.0) for t in times]
    if pattern == "spin-clockwise":
        return [_Pose(x0, y0, size * 1.3, angle0 + 0.6 * math.pi * t, 1.0, 0.0) for t in times]
    return [_Pose(x0, y0, size, angle0, 1.0, travel * t) for t in times]


def _random_colour(rng: np.random.Generator, bright: bool) -> np.ndarray:
    base = rng.uniform(0.6, 1.0, 3) if bright else rng.uniform(0.0, 0.35, 3)
    base[rng.integers(3)] = rng.uniform(0.75, 1.0) if bright else rng.uniform(0.0, 0.15)
    return base


def render_clip(label: int, rng: np.random.Generator, res: int, length: int) -> np.ndarray:
    """Frames (``length x res x res x 3`` uint8) of one clip of class ``label``."""
    return render_objects([label], rng, res, length)


def render_objects(labels: Sequence[int], rng: np.random.Generator, res: int, length: int) -> np.ndarray:
    """One object per label over a shared textured background; each object's trajectory runs
    backwards in time when its class is a reversed one (so a one-object reversed clip is exactly its
    partner's frames in reverse order)."""
    objects = []
    bright_object = False
    for i, label in enumerate(labels):
        pattern, reverse = PATTERNS[label // 2], bool(label % 2)
        shape = SHAPES[rng.integers(len(SHAPES))]
        if i == 0:  # draws in the order first written, so cached one-object datasets stay valid
            bright_object = bool(rng.integers(2))
        colour = _random_colour(rng, bright_object)
        if i == 0:
            bg_a = _random_colour(rng, not bright_object)
            bg_b = np.clip(bg_a + (0.3 if bright_object else -0.3), 0, 1)
            tex_angle, period = rng.uniform(0, math.pi), res * rng.uniform(0.15, 0.35)
        poses = _poses(pattern, rng, res, length)
        objects.append((shape, colour, poses[::-1] if reverse else poses))

    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) + 0.5
    ct, st = math.cos(tex_angle), math.sin(tex_angle)
    frames = []
    for f in range(length):
        tx = xx - sum(poses[f].scroll for _, _, poses in objects)
        tu, tv = tx * ct + yy * st, -tx * st + yy * ct
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * tu / period) * np.sin(2 * math.pi * tv / period)
        image = bg_a * (1 - mix[..., None]) + bg_b * mix[..., None]
        for shape, colour, poses in objects:
            pose = poses[f]
            ca, sa = math.cos(pose.angle), math.sin(pose.angle)
            dx, dy = (xx - pose.cx) / pose.size, (yy - pose.cy) / pose.size
            inside = _shape_mask(shape, dx * ca + dy * sa, -dx * sa + dy * ca)[..., None]
            image = np.where(inside, image * (1 - pose.alpha) + colour * pose.alpha, image)
        frames.append(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
    return np.stack(frames)


def _generate_one(args: tuple[int, tuple[int, ...], Path, SyntheticMotionOptions]) -> None:
    index, labels, path, opts = args
    if path.exists():
        return
    rng = np.random.default_rng((opts.seed, index))
    write_mp4(render_objects(labels, rng, opts.resolution, opts.length), path, opts.fps)


def multi_labels(index: int, seed: int) -> tuple[int, int]:
    """Two classes of two different patterns for clip ``index`` of the multi-label variant."""
    rng = np.random.default_rng((seed, index, 7))
    first, second = rng.choice(len(PATTERNS), size=2, replace=False)
    return tuple(sorted((2 * int(first) + int(rng.integers(2)), 2 * int(second) + int(rng.integers(2)))))


def _split_of(position: int, per_class: int) -> str:
    """First 70% of each class's clips train, next 15% val, the rest test."""
    n_train = round(per_class * 0.7)
    n_val = max(1, round(per_class * 0.15))
    return "train" if position < n_train else ("val" if position < n_train + n_val else "test")


# Bumped when the same options would write different files: a cache from an older generator is not reused.
GENERATOR_VERSION = 2


def dataset_dir(root: Path, opts: SyntheticMotionOptions) -> Path:
    """The cache folder of one setting of the options (and of the generator's version)."""
    return root / f"{opts.size}-r{opts.resolution}-l{opts.length}-fps{opts.fps}-seed{opts.seed}-v{GENERATOR_VERSION}"


def _prepare(root: Path, options: SyntheticMotionOptions | dict, multi: bool) -> PreparedDataset:
    opts = SyntheticMotionOptions.model_validate(options)
    out = dataset_dir(Path(root), opts)
    names = class_names()
    per_class = CLIPS_PER_CLASS[opts.size]
    jobs, rows = [], {split: [] for split in SPLITS}
    for index in range(per_class * len(names)):
        position = index // len(names)
        labels = multi_labels(index, opts.seed) if multi else (index % len(names),)
        folder = "multi" if multi else names[labels[0]]
        rel = Path("videos") / folder / f"{index:06d}.mp4"
        jobs.append((index, labels, out / rel, opts))
        rows[_split_of(position, per_class)].append((str(rel), labels if multi else labels[0]))
    if not (out / ".complete").exists():
        for folder in {Path(rel).parent for items in rows.values() for rel, _ in items}:
            (out / folder).mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(max_workers=opts.workers) as pool:
            list(pool.map(_generate_one, jobs, chunksize=16))
        tables = {
            split: [(rel, ";".join(map(str, y)) if multi else y) for rel, y in items] for split, items in rows.items()
        }
        write_split_tables(out, names, tables, ("path", "label"))
    splits = {split: [VideoSample(out / rel, label) for rel, label in items] for split, items in rows.items()}
    return PreparedDataset(
        root=out,
        class_names=names,
        splits=splits,
        labels_kind="multi" if multi else "single",
        mirror=None if multi else mirror_map(),
    )


def prepare(root: Path, options: SyntheticMotionOptions | dict) -> PreparedDataset:
    """Generate the clips once (in parallel, resumable) and return the splits."""
    return _prepare(root, options, multi=False)


def prepare_multi(root: Path, options: SyntheticMotionOptions | dict) -> PreparedDataset:
    """The multi-label variant: two moving objects of two different patterns per clip."""
    return _prepare(root, options, multi=True)


@hookimpl
def vidbench_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="synthetic-motion",
            prepare=prepare,
            options=SyntheticMotionOptions,
            description="20 motion classes (10 patterns x forward/reversed) as H.264 MP4, order-sensitive",
        ),
        DatasetSpec(
            name="synthetic-motion-multi",
            prepare=prepare_multi,
            options=SyntheticMotionOptions,
            description="multi-label variant: two objects of two different motion classes per clip (BCE, mAP)",
        ),
    ]

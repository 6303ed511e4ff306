"""Which frame indices make a clip.

- ``uniform``: ``frames`` indices spread from the first frame to the last (TSN-style jitter inside each
  segment when training); with a variable frame rate the spread is even in time, not in index.
- ``dense``: ``frames`` consecutive indices ``stride`` apart (mmaction2's clip_len / frame_interval); a
  random window when training, the centre one otherwise.
- multi-view testing: :func:`temporal_views` gives N windows spread over the video.
- a video shorter than the clip follows ``short``: ``loop`` (wrap around), ``repeat_last`` (hold the
  last frame) or ``pad`` (index ``-1``, which the loader turns into a black frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

SamplingMode = Literal["uniform", "dense"]
ShortPolicy = Literal["loop", "repeat_last", "pad"]
PAD = -1


@dataclass(frozen=True)
class ClipSpec:
    """T frames per clip, how they are spread, and what happens when the video is too short."""

    frames: int
    stride: int = 1
    mode: SamplingMode = "uniform"
    short: ShortPolicy = "repeat_last"

    def span(self) -> int:
        """Frames a dense window covers."""
        return (self.frames - 1) * self.stride + 1


def _round_symmetric(positions: np.ndarray, num_frames: int) -> np.ndarray:
    """Round half away from the middle, so a video played backwards gives the reversed indices."""
    middle = (num_frames - 1) / 2
    return np.where(positions < middle, np.floor(positions + 0.5), np.ceil(positions - 0.5))


def uniform_indices(num_frames: int, clip_frames: int) -> list[int]:
    """``clip_frames`` indices spread evenly from the first frame to the last.

    Rounded symmetrically, so an order-blind model sees the same frames of a reversed video.
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    positions = np.linspace(0, num_frames - 1, clip_frames)
    return np.clip(_round_symmetric(positions, num_frames), 0, num_frames - 1).astype(int).tolist()


def uniform_time_indices(timestamps_s: Sequence[float], clip_frames: int) -> list[int]:
    """For a variable frame rate: the frame nearest each of ``clip_frames`` times spread evenly."""
    times = np.asarray(timestamps_s, dtype=np.float64)
    targets = np.linspace(times[0], times[-1], clip_frames)
    right = np.clip(np.searchsorted(times, targets), 1, len(times) - 1)
    left = right - 1
    nearest = np.where(np.abs(times[left] - targets) <= np.abs(times[right] - targets), left, right)
    return np.maximum.accumulate(nearest).astype(int).tolist() if len(times) > 1 else [0] * clip_frames


def jittered_uniform_indices(num_frames: int, clip_frames: int, rng: np.random.Generator) -> list[int]:
    """Training variant of ``uniform``: one random frame inside each of ``clip_frames`` equal segments."""
    edges = np.linspace(0, num_frames, clip_frames + 1)
    starts, ends = np.floor(edges[:-1]), np.maximum(np.floor(edges[1:]) - 1, np.floor(edges[:-1]))
    picks = starts + np.floor(rng.random(clip_frames) * (ends - starts + 1))
    return np.clip(picks, 0, num_frames - 1).astype(int).tolist()


def _fit_short(indices: np.ndarray, num_frames: int, policy: ShortPolicy) -> list[int]:
    if policy == "loop":
        return (indices % num_frames).astype(int).tolist()
    if policy == "pad":
        return np.where(indices < num_frames, indices, PAD).astype(int).tolist()
    return np.minimum(indices, num_frames - 1).astype(int).tolist()


def dense_indices(num_frames: int, spec: ClipSpec, start: int | None = None) -> list[int]:
    """``spec.frames`` indices ``spec.stride`` apart from ``start`` (centred when None)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    latest_start = max(num_frames - spec.span(), 0)
    begin = latest_start // 2 if start is None else min(max(start, 0), latest_start)
    return _fit_short(begin + np.arange(spec.frames) * spec.stride, num_frames, spec.short)


def is_short(num_frames: int, spec: ClipSpec) -> bool:
    """Whether the video is shorter than what the clip needs (the short-video policy applies)."""
    return num_frames < (spec.span() if spec.mode == "dense" else spec.frames)


def sample_indices(
    num_frames: int,
    spec: ClipSpec,
    rng: np.random.Generator | None = None,
    timestamps_s: Sequence[float] | None = None,
) -> list[int]:
    """Indices for one clip; with ``rng`` (training) the window or the segments are drawn at random.

    ``timestamps_s`` (one per frame) switches ``uniform`` sampling to even spacing in time.
    """
    if spec.mode == "uniform":
        if num_frames < spec.frames:
            return _fit_short(np.arange(spec.frames), num_frames, spec.short)
        if rng is not None:
            return jittered_uniform_indices(num_frames, spec.frames, rng)
        if timestamps_s is not None and len(timestamps_s) == num_frames:
            return uniform_time_indices(timestamps_s, spec.frames)
        return uniform_indices(num_frames, spec.frames)
    start = None
    if rng is not None:
        start = int(rng.integers(0, max(num_frames - spec.span(), 0) + 1))
    return dense_indices(num_frames, spec, start)


def temporal_views(num_frames: int, spec: ClipSpec, views: int) -> list[list[int]]:
    """``views`` clips spread over the video for multi-view testing (windows evenly placed)."""
    if views < 1:
        raise ValueError("need at least one view")
    if spec.mode == "dense":
        latest_start = max(num_frames - spec.span(), 0)
        starts = np.linspace(0, latest_start, views).round().astype(int) if views > 1 else [latest_start // 2]
        return [dense_indices(num_frames, spec, int(s)) for s in starts]
    if views == 1:
        return [uniform_indices(num_frames, spec.frames)]
    # Shift the uniform grid by a fraction of one segment per view.
    segment = num_frames / spec.frames
    out = []
    for v in range(views):
        offset = (v + 0.5) / views * segment
        positions = np.arange(spec.frames) * segment + offset
        out.append(np.clip(np.floor(positions), 0, num_frames - 1).astype(int).tolist())
    return out

"""Property tests of the clip samplers: indices in range, sorted, the right count, for any video and spec."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from vidbench.data.sampling import (
    PAD,
    ClipSpec,
    dense_indices,
    sample_indices,
    temporal_views,
    uniform_indices,
    uniform_time_indices,
)

specs = st.builds(
    ClipSpec,
    frames=st.integers(1, 64),
    stride=st.integers(1, 8),
    mode=st.sampled_from(["uniform", "dense"]),
    short=st.sampled_from(["loop", "repeat_last", "pad"]),
)


def _check(indices: list[int], length: int, spec: ClipSpec) -> None:
    assert len(indices) == spec.frames
    real = [i for i in indices if i != PAD]
    assert all(0 <= i < length for i in real)
    if spec.short == "pad":
        assert real == sorted(real)
        assert all(i == PAD for i in indices[len(real) :]), "padding goes at the end"
    elif spec.short == "repeat_last" or length >= spec.span():
        assert indices == sorted(indices)


@given(st.integers(1, 600), specs, st.integers(0, 2**32 - 1), st.booleans())
def test_any_video_any_spec(length: int, spec: ClipSpec, seed: int, training: bool) -> None:
    rng = np.random.default_rng(seed) if training else None
    _check(sample_indices(length, spec, rng), length, spec)


@given(st.integers(1, 600), specs, st.integers(1, 10))
def test_multi_view_windows(length: int, spec: ClipSpec, views: int) -> None:
    windows = temporal_views(length, spec, views)
    assert len(windows) == views
    for window in windows:
        _check(window, length, spec)
    starts = [w[0] for w in windows]
    assert starts == sorted(starts)


@given(st.integers(1, 600), st.integers(1, 32), st.integers(1, 8), st.integers(0, 10**6))
def test_dense_windows_keep_their_stride(length: int, frames: int, stride: int, start: int) -> None:
    spec = ClipSpec(frames, stride, "dense")
    idx = dense_indices(length, spec, start)
    if spec.span() <= length:
        assert all(b - a == stride for a, b in itertools.pairwise(idx))


@given(st.lists(st.floats(0.001, 1.0), min_size=1, max_size=300), st.integers(1, 32))
def test_time_based_uniform_indices(deltas: list[float], frames: int) -> None:
    times = np.concatenate([[0.0], np.cumsum(deltas)])
    idx = uniform_time_indices(times, frames)
    assert len(idx) == frames and idx == sorted(idx)
    assert idx[0] >= 0 and idx[-1] < len(times)


def test_time_based_sampling_follows_time_not_index() -> None:
    # 10 frames in the first second, then 10 frames spread over the next 9 seconds.
    times = np.concatenate([np.linspace(0, 0.9, 10), np.linspace(1, 10, 10)])
    idx = uniform_time_indices(times, 5)
    assert idx[0] == 0 and idx[-1] == 19
    assert sum(i < 10 for i in idx) == 1, "most of the time is in the slow part"


def test_short_video_policies() -> None:
    assert sample_indices(3, ClipSpec(6, mode="uniform", short="loop")) == [0, 1, 2, 0, 1, 2]
    assert sample_indices(3, ClipSpec(6, mode="uniform", short="repeat_last")) == [0, 1, 2, 2, 2, 2]
    assert sample_indices(3, ClipSpec(6, mode="uniform", short="pad")) == [0, 1, 2, PAD, PAD, PAD]
    assert sample_indices(5, ClipSpec(3, 2, "dense", "loop")) == [0, 2, 4]
    assert sample_indices(4, ClipSpec(3, 2, "dense", "loop")) == [0, 2, 0]


def test_uniform_sampling_of_a_reversed_video_is_the_reversed_clip() -> None:
    for length, frames in [(16, 8), (16, 4), (30, 8), (8, 8), (300, 16)]:
        idx = uniform_indices(length, frames)
        assert [length - 1 - i for i in reversed(idx)] == idx

"""Evaluation analysis: per-class accuracy, confusion, calibration, retrieval, probes (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vidbench.learn.analysis import (
    TEMPORAL_PROBES,
    confusion_matrix,
    expected_calibration_error,
    knn_retrieval,
    mean_average_precision,
    most_confused_pairs,
    per_class_accuracy,
    worst_clips,
)
from vidbench.learn.evaluate import accuracy
from vidbench.stats import wilson_interval


@st.composite
def predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    classes = draw(st.integers(2, 12))
    n = draw(st.integers(1, 60))
    logits = draw(arrays(np.float32, (n, classes), elements=st.floats(-4, 4, width=32)))
    labels = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    return logits, labels, classes


@given(predictions())
def test_per_class_accuracy_sums_back_to_overall_accuracy(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    logits, labels, classes = case
    confusion = confusion_matrix(logits, labels, classes)
    counts = np.bincount(labels, minlength=classes)
    assert np.array_equal(confusion.sum(axis=1), counts), "rows sum to class counts"
    per_class = per_class_accuracy(confusion)
    weighted = np.nansum(per_class * counts) / counts.sum()
    assert weighted == pytest.approx(accuracy(logits, labels).top1)
    assert np.nanmean(per_class) == pytest.approx(accuracy(logits, labels).mean_class_acc)


@given(predictions())
def test_top5_at_least_top1_and_ece_in_range(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    logits, labels, _ = case
    acc = accuracy(logits, labels)
    assert acc.top1 <= acc.top5
    assert 0 <= expected_calibration_error(logits, labels) <= 1


def test_ece_of_a_perfectly_calibrated_confident_model_is_zero() -> None:
    logits = np.eye(4, dtype=np.float32) * 100
    assert expected_calibration_error(logits, np.arange(4)) == pytest.approx(0, abs=1e-6)
    assert expected_calibration_error(logits, np.array([1, 2, 3, 0])) == pytest.approx(1, abs=1e-6)


def test_map_retrieval_and_error_analysis_on_known_cases() -> None:
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert mean_average_precision(targets * 1.0, targets) == pytest.approx(1.0)
    assert mean_average_precision(1 - targets * 1.0, targets) < 0.7
    features = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    assert knn_retrieval(features, labels, k=1) == {"knn_top1": 1.0, "recall_at_1": 1.0}
    logits = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])
    truth = np.array([0, 1, 1, 1])
    pairs = most_confused_pairs(confusion_matrix(logits, truth, 2), ["a", "b"])
    assert pairs == [{"true": "b", "predicted": "a", "count": 1, "share": pytest.approx(1 / 3)}]
    worst = worst_clips(logits, truth, ["c0", "c1", "c2", "c3"], ["a", "b"], top=1)
    assert worst[0]["clip"] == "c1" and worst[0]["predicted"] == "a"


def test_temporal_probes_change_order_but_not_shape() -> None:
    clip = torch.arange(8, dtype=torch.float32).view(1, 1, 8, 1, 1).expand(2, 3, 8, 4, 4)
    for name, probe in TEMPORAL_PROBES.items():
        out = probe(clip)
        assert out.shape == clip.shape, name
        assert not torch.equal(out, clip), name
    assert TEMPORAL_PROBES["reversed"](clip)[0, 0, :, 0, 0].tolist() == list(range(7, -1, -1))
    assert sorted(TEMPORAL_PROBES["shuffled"](clip)[0, 0, :, 0, 0].tolist()) == list(range(8))
    assert TEMPORAL_PROBES["frame_drop"](clip)[0, 0, :, 0, 0].tolist() == [0, 0, 2, 2, 4, 4, 6, 6]
    assert set(TEMPORAL_PROBES["frozen"](clip)[0, 0, :, 0, 0].tolist()) == {4.0}


@settings(max_examples=30)
@given(st.integers(1, 40))
def test_probes_work_for_any_clip_length(frames: int) -> None:
    clip = torch.randn(1, 3, frames, 2, 2)
    for probe in TEMPORAL_PROBES.values():
        assert probe(clip).shape == clip.shape


def test_wilson_interval_known_value_and_bounds() -> None:
    low, high = wilson_interval(0.5, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)  # the textbook value
    assert wilson_interval(0.0, 10)[0] == 0.0 and wilson_interval(1.0, 10)[1] == 1.0
    assert wilson_interval(0.0, 10)[1] > 0.2, "no empty interval at 0 %"


@given(st.integers(1, 5000), st.floats(0, 1))
def test_wilson_interval_holds_the_rate_and_narrows_with_more_clips(n: int, share: float) -> None:
    rate = round(share * n) / n
    low, high = wilson_interval(rate, n)
    assert 0.0 <= low <= rate + 1e-12 and rate - 1e-12 <= high <= 1.0
    low4, high4 = wilson_interval(rate, 4 * n)
    assert high4 - low4 < high - low

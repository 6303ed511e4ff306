"""Measurement and evaluation helpers: the latency plan's stopping rules, accuracy and parity."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vidbench.learn.evaluate import accuracy, parity
from vidbench.measure.latency import LatencyPlan, measure_latency


def test_latency_meets_both_minimums_and_skips_warmup() -> None:
    calls = []

    def work() -> None:
        calls.append(1)
        time.sleep(0.002)

    stats = measure_latency(work, LatencyPlan(warmup=4, min_iters=5, min_seconds=0.1, max_seconds=10))
    assert stats.iterations >= 5 and stats.measured_s >= 0.1
    assert len(calls) == 1 + 4 + stats.iterations
    assert 2.0 <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.cv_pct >= 0


def test_samples_are_kept_and_p99_is_trusted_from_a_hundred_calls() -> None:
    few = measure_latency(lambda: time.sleep(0.001), LatencyPlan(warmup=0, min_iters=20, min_seconds=0))
    many = measure_latency(lambda: time.sleep(0.001), LatencyPlan(warmup=0, min_iters=100, min_seconds=0))
    assert (few.iterations, len(few.samples_ms), few.p99_trusted) == (20, 20, False)
    assert (len(many.samples_ms), many.p99_trusted) == (100, True)
    assert many.p50_ms == pytest.approx(float(np.median(many.samples_ms)))
    # throughput from the loop's wall time: no faster than the calls themselves allow
    assert many.calls_per_s == pytest.approx(100 / many.measured_s) and many.calls_per_s <= 1000 / min(many.samples_ms)
    jittery = iter([0.001, 0.02] * 10)
    flagged = measure_latency(lambda: time.sleep(next(jittery)), LatencyPlan(warmup=0, min_iters=19, min_seconds=0))
    assert flagged.unstable and flagged.cv_pct > 10


def test_latency_never_cuts_below_min_iters() -> None:
    stats = measure_latency(
        lambda: time.sleep(0.02), LatencyPlan(warmup=0, min_iters=6, min_seconds=0, max_seconds=0.01)
    )
    assert stats.iterations == 6


def test_cold_start_is_reported_apart() -> None:
    state = {"first": True}

    def work() -> None:
        time.sleep(0.05 if state["first"] else 0.001)
        state["first"] = False

    stats = measure_latency(work, LatencyPlan(warmup=1, min_iters=5, min_seconds=0))
    assert stats.cold_ms >= 50 > stats.p99_ms


def test_accuracy_on_a_known_case() -> None:
    logits = np.array([[3, 1, 0], [0, 2, 1], [0, 1, 2], [2, 1, 0]], dtype=np.float32)
    labels = np.array([0, 1, 1, 1])
    acc = accuracy(logits, labels)
    assert acc.top1 == pytest.approx(0.5)
    assert acc.top5 == 1.0
    assert acc.mean_class_acc == pytest.approx((1.0 + 1 / 3) / 2)


@given(
    arrays(np.float32, st.tuples(st.integers(1, 40), st.integers(2, 12)), elements=st.floats(-5, 5, width=32)),
    st.data(),
)
def test_top5_is_never_below_top1(logits: np.ndarray, data: st.DataObject) -> None:
    labels = np.array(
        data.draw(st.lists(st.integers(0, logits.shape[1] - 1), min_size=len(logits), max_size=len(logits)))
    )
    acc = accuracy(logits, labels)
    assert 0 <= acc.top1 <= acc.top5 <= 1


def test_parity_counts_flips_and_the_largest_difference() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    cand = ref + np.array([[0.0, 0.5], [0.0, 0.0], [-2.5, 0.0]])
    match = parity(ref, cand)
    assert match.agreement_top1 == pytest.approx(2 / 3)
    assert match.max_abs_logit_diff == pytest.approx(2.5)


def test_each_precision_has_a_measured_peak_named_by_its_kernel() -> None:
    """fp32, bf16 and int8 each get a real matmul rate here, the best of the kernels that offer it, and say which
    kernel gave it (int8: torch's or ONNX Runtime's)."""
    from vidbench.measure.peak import matmul_peaks

    peaks = matmul_peaks(1, seconds=0.1)
    assert set(peaks) == {"fp32", "bf16", "int8"}, peaks
    assert all(peak.gmacs_per_s > 0 for peak in peaks.values()), peaks
    assert peaks["fp32"].method.startswith("torch.mm fp32") and "1 thread(s)" in peaks["fp32"].method
    assert peaks["int8"].method.startswith(("torch._int_mm", "ONNX Runtime MatMulInteger")), peaks["int8"]


def test_a_rows_roofline_divides_by_the_peak_of_its_own_precision() -> None:
    """An INT8 row is held to the int8 ceiling, not fp32's (where it read 220 % on an AMX CPU); a row with no
    precision recorded (an older run's) is fp32; a precision slower than fp32 here, or without a measured peak,
    is held to fp32's (autocast keeps layers in fp32: timesformer's bf16 rows read 230 % of a slow bf16 peak)."""
    from vidbench.measure.latency import Rounds
    from vidbench.run.interleave import timed_fields

    rounds = Rounds(1.0, [[10.0]] * 6)  # 100 calls a second
    peaks = {"fp32": 10.0, "int8": 40.0, "bf16": 0.5}
    int8 = timed_fields(rounds, None, 2, {"gflops_per_clip": 0.1, "precision": "int8"}, peaks)  # 20 GMAC/s
    assert (int8["peak_gmacs_per_s"], int8["roofline_pct"]) == (40.0, pytest.approx(50.0))
    older = timed_fields(rounds, None, 2, {"gflops_per_clip": 0.025}, peaks)
    assert (older["peak_gmacs_per_s"], older["roofline_pct"]) == (10.0, pytest.approx(50.0))
    bf16 = timed_fields(rounds, None, 2, {"gflops_per_clip": 0.025, "precision": "bf16"}, peaks)
    assert (bf16["peak_gmacs_per_s"], bf16["roofline_pct"]) == (10.0, pytest.approx(50.0))
    fp16 = timed_fields(rounds, None, 2, {"gflops_per_clip": 0.025, "precision": "fp16"}, peaks)
    assert fp16["peak_gmacs_per_s"] == 10.0
    none = timed_fields(rounds, None, 2, {"gflops_per_clip": 0.1, "precision": "int8"}, {})
    assert none["peak_gmacs_per_s"] is None and none["roofline_pct"] is None

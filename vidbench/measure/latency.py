"""Latency of a callable: cold start, warm-up, then at least ``min_iters`` AND at least ``min_seconds``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

P99_MIN_SAMPLES = 100
"""Fewer timed calls than this and a p99 is only the largest sample or near it (MLPerf LoadGen asks far more)."""
UNSTABLE_CV_PCT = 10.0
"""A cell whose per-call times vary more than this (coefficient of variation) is flagged unstable."""


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds; percentiles, not means, are the headline."""

    cold_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    cv_pct: float
    iterations: int
    measured_s: float
    """Wall time of the timed loop."""
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    """Every timed call, in order (kept in the run directory)."""

    @property
    def calls_per_s(self) -> float:
        """Throughput: calls timed over the wall time of the timed loop (not derived from a percentile)."""
        return self.iterations / self.measured_s if self.measured_s > 0 else 0.0

    @property
    def p99_trusted(self) -> bool:
        return self.iterations >= P99_MIN_SAMPLES

    @property
    def unstable(self) -> bool:
        return self.cv_pct > UNSTABLE_CV_PCT

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "samples_ms"}


@dataclass(frozen=True)
class LatencyPlan:
    """How long to measure: warm-up calls, then iterate until both minimums are met (or ``max_seconds``)."""

    warmup: int = 3
    min_iters: int = 10
    min_seconds: float = 1.0
    max_seconds: float = 60.0


def synchronizer(device: str) -> Callable[[], None]:
    """Waits for ``device``'s queued work (a CUDA call returns before its kernels finish); a no-op on the CPU."""
    import torch

    target = torch.device(device)
    if target.type == "cuda":
        return lambda: torch.cuda.synchronize(target)
    return lambda: None


def measure_latency(call: Callable[[], object], plan: LatencyPlan) -> LatencyStats:
    """Time ``call()``: the first call is the cold start; warm-up calls are discarded.

    Iteration stops once ``min_iters`` calls AND ``min_seconds`` have passed, or at ``max_seconds``
    as long as ``min_iters`` is reached (a slow model is never cut below ``min_iters``).
    """
    start = time.perf_counter()
    call()
    cold_ms = (time.perf_counter() - start) * 1e3
    for _ in range(plan.warmup):
        call()
    samples: list[float] = []
    began = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - began
        enough = len(samples) >= plan.min_iters and elapsed >= plan.min_seconds
        if enough or (len(samples) >= plan.min_iters and elapsed >= plan.max_seconds):
            break
    ms = np.asarray(samples) * 1e3
    mean = float(ms.mean())
    return LatencyStats(
        cold_ms=cold_ms,
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=mean,
        cv_pct=float(ms.std(ddof=1) / mean * 100) if len(ms) > 1 and mean > 0 else 0.0,
        iterations=len(samples),
        measured_s=time.perf_counter() - began,
        samples_ms=tuple(float(x) for x in ms),
    )

"""Latency: one callable timed alone (cold start, warm-up, then at least ``min_iters`` AND ``min_seconds``), and
several artifacts timed in interleaved rounds, each in its own process, with the speedup over the baseline."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Protocol

import numpy as np

from vidbench.profiles import OperatorProfile
from vidbench.stats import MIN_INTERVAL_ROUNDS, interval_too_wide, median_interval

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
    return latency_stats(ms, cold_ms, time.perf_counter() - began, float(np.percentile(ms, 50)))


def latency_stats(ms: np.ndarray, cold_ms: float, measured_s: float, p50_ms: float) -> LatencyStats:
    """The percentiles, mean and CV of timed calls ``ms`` (the headline ``p50_ms`` is the caller's rule)."""
    mean = float(ms.mean())
    return LatencyStats(
        cold_ms=cold_ms,
        p50_ms=p50_ms,
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=mean,
        cv_pct=float(ms.std(ddof=1) / mean * 100) if len(ms) > 1 and mean > 0 else 0.0,
        iterations=len(ms),
        measured_s=measured_s,
        samples_ms=tuple(float(x) for x in ms),
    )


def time_sequence(calls: dict[str, Callable[[int], object]], items: int, warmup: int = 2) -> dict[str, list[float]]:
    """Each named per-item call timed on items ``0 .. items - 1`` in order (a cascade's real sequence of clips:
    what each clip costs, not an estimate), the names taking turns on each item in an order that rotates from one
    item to the next, so a slow spell lands on every one alike; ``warmup`` untimed items first. Milliseconds per
    item, by name."""
    names = list(calls)
    for index in range(min(warmup, items)):
        for name in names:
            calls[name](index)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(items):
        turn = index % len(names)
        for name in names[turn:] + names[:turn]:
            began = time.perf_counter()
            calls[name](index)
            samples[name].append((time.perf_counter() - began) * 1e3)
    return samples


# Interleaved timing: the artifacts of one job take turns in short rounds, each in its own warm process, so a
# slow spell of the machine lands on all of them alike and the per-round ratio to the baseline cancels it.


@dataclass(frozen=True)
class RoundPlan:
    """Interleaved timing: ``rounds`` turns per artifact, each of at least ``min_calls`` calls and ``seconds``."""

    rounds: int = 10
    warmup: int = 3
    seconds: float = 0.1
    min_calls: int = 1
    max_seconds: float = math.inf
    """Timed seconds of one artifact at one batch size past which it sits out the rest of the rounds, once it has
    :data:`~vidbench.stats.MIN_INTERVAL_ROUNDS` (an engine whose one call outlasts many rounds' worth of the
    others' would otherwise set the step's length alone)."""

    @classmethod
    def spread(
        cls, rounds: int, warmup: int, min_iters: int, min_seconds: float, max_seconds: float = math.inf
    ) -> RoundPlan:
        """The totals of a suite's ``measure`` block (at least ``min_iters`` calls and ``min_seconds`` per
        artifact, at most ``max_seconds`` once it has enough rounds for an interval) spread over ``rounds``."""
        return cls(rounds, warmup, min_seconds / rounds, max(1, -(-min_iters // rounds)), max_seconds)

    def done(self, rounds: Rounds) -> bool:
        """Whether an artifact has had enough: its timed seconds past ``max_seconds`` and enough rounds for an
        interval."""
        return len(rounds.samples_ms) >= MIN_INTERVAL_ROUNDS and rounds.timed_s >= self.max_seconds


TURN_WARMUP_CALLS = 1
"""Untimed calls that open each turn of interleaved timing: the artifact's threads and caches were idle or
another's while the others had their turns (on 2 cores a torch model's first call after another engine's turn
ran 5-10x its steady time). Skipped for an artifact whose calls outlast a round: one call is then the round,
and its warm-up would double the round's cost for a first-call effect that is small beside it."""
WARMUP_MAX_S = 2.0
"""Warm-up calls after the cold call stop early past this many seconds (at least one is made): a call of
seconds (bf16 on a CPU without fast bf16 convolutions) is warm after one."""
TURN_GAP_S = 0.02
"""A pause before each turn: the previous engine's spinning threads stand down before the next one is timed."""


def timed_round(call: Callable[[], object], seconds: float, min_calls: int, warmup: int = 0) -> list[float]:
    """One round: ``warmup`` untimed calls, then ``call()`` until ``min_calls`` calls and ``seconds`` have passed;
    each timed call's milliseconds."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    began = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - began < seconds:
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


class RoundTimer(Protocol):
    """One artifact's warm timing process, as the coordinator drives it."""

    def warm(self, batch: int, calls: int) -> float:
        """Build the input of ``batch`` clips, call once (returned: that cold call's ms), then ``calls`` more."""

    def round(self, batch: int, seconds: float, min_calls: int, warmup: int) -> list[float]:
        """One timed round (see :func:`timed_round`)."""

    def profile(self, batch: int, calls: int) -> dict[str, Any]:
        """An operator profile of ``calls`` calls at ``batch`` (:meth:`OperatorProfile.as_dict`), once timed."""


class Channel(Protocol):
    """How a warm timing process talks to its coordinator: one message (a dict) at a time each way."""

    def receive(self) -> dict[str, Any] | None:
        """The next command; None once the coordinator has gone."""

    def send(self, message: dict[str, Any]) -> None:
        """One reply."""


class StdioChannel:
    """JSON lines: commands on stdin, replies on the stdout this process started with. Whatever else prints
    from now on (an engine, a plugin) goes to stderr, never into the replies; made before anything loads."""

    def __init__(self) -> None:
        self.replies: IO[str] = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def receive(self) -> dict[str, Any] | None:
        line = sys.stdin.readline()
        return json.loads(line) if line else None

    def send(self, message: dict[str, Any]) -> None:
        self.replies.write(json.dumps(message) + "\n")
        self.replies.flush()


ProfileFor = Callable[[int, int, Callable[[], object]], OperatorProfile]
"""An artifact's operator profiler in its timing process: ``(batch, calls, the warm call at that batch)``."""


def serve_rounds(
    call_for: Callable[[int], Callable[[], object]], channel: Channel, profile_for: ProfileFor | None = None
) -> None:
    """A warm timing process's loop: says ``ready``, then answers each command (``warm``, ``round``,
    ``profile``; ``stop`` ends it) with one reply. ``call_for(batch)`` is the call on an input of ``batch`` clips
    (built once per batch size, at its ``warm``); ``profile_for`` profiles it by operator (none: a ``profile``
    command is answered with why not)."""
    calls: dict[int, Callable[[], object]] = {}
    typical_ms: dict[int, float] = {}
    channel.send({"ready": True})
    while (command := channel.receive()) is not None and command["op"] != "stop":
        batch = int(command["batch"])
        if command["op"] == "warm":
            calls[batch] = call_for(batch)
            start = time.perf_counter()
            calls[batch]()
            cold_ms = (time.perf_counter() - start) * 1e3
            typical_ms[batch] = _warm_up(calls[batch], int(command["calls"])) or cold_ms
            channel.send({"cold_ms": cold_ms})
        elif command["op"] == "profile":
            channel.send(_profiled(profile_for, batch, int(command["calls"]), calls.get(batch)))
        else:
            seconds = float(command["seconds"])
            warmup = int(command.get("warmup", 0)) if typical_ms[batch] < seconds * 1e3 else 0
            samples = timed_round(calls[batch], seconds, int(command["min_calls"]), warmup)
            typical_ms[batch] = float(np.median(samples))
            channel.send({"samples_ms": samples})


def _profiled(profile_for: ProfileFor | None, batch: int, calls: int, call: Callable[[], object] | None) -> dict:
    """The reply to ``profile``: the profile, between two runs of as many calls timed without it (their median:
    what a call costs around that moment, for the profile's own overhead to be seen), or ``profile_error`` with
    why there is none (the process goes on)."""
    if profile_for is None or call is None:
        return {"profile_error": "this timing process has no operator profiler" if call else "batch not warmed"}
    try:
        before = timed_round(call, 0.0, calls, warmup=1)
        profile = profile_for(batch, calls, call)
        after = timed_round(call, 0.0, calls, warmup=1)
    except Exception as exc:
        return {"profile_error": _reason(exc)}
    profile.unprofiled_ms = float(np.median(before + after))
    return {"profile": profile.as_dict()}


def _warm_up(call: Callable[[], object], calls: int) -> float | None:
    """Up to ``calls`` untimed calls, stopping past :data:`WARMUP_MAX_S` after the first; the last call's ms."""
    began, last_ms = time.perf_counter(), None
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        last_ms = (time.perf_counter() - t0) * 1e3
        if time.perf_counter() - began > WARMUP_MAX_S:
            break
    return last_ms


@dataclass
class Rounds:
    """What interleaved timing measured of one artifact at one batch size: every call, round by round."""

    cold_ms: float
    samples_ms: list[list[float]] = field(default_factory=list)
    error: str = ""
    """Why the artifact's timing stopped early (its process died or answered nonsense); empty when it did not."""

    @property
    def timed_s(self) -> float:
        """Seconds of timed calls so far."""
        return sum(sum(r) for r in self.samples_ms) / 1e3

    @property
    def round_p50s(self) -> list[float]:
        return [float(np.median(r)) for r in self.samples_ms]

    def stats(self) -> LatencyStats:
        """Percentiles of every call, except the headline p50: the median of the rounds' medians (a slow spell
        that spans a round moves one round, not the figure)."""
        ms = np.concatenate([np.asarray(r) for r in self.samples_ms])
        return latency_stats(ms, self.cold_ms, float(ms.sum()) / 1e3, float(np.median(self.round_p50s)))


@dataclass(frozen=True)
class Speedup:
    """The baseline's round p50 over an artifact's, per round: their median and its 95 % interval."""

    value: float
    low: float
    high: float
    rounds: int

    @property
    def uncertain(self) -> bool:
        """The interval is too wide to say how much faster (:func:`vidbench.stats.interval_too_wide`)."""
        return interval_too_wide(self.low, self.high)


def speedup(baseline: Rounds, other: Rounds) -> Speedup | None:
    """The per-round speedup of ``other`` over ``baseline`` (rounds paired by index), or None with no pair."""
    ratios = [b / o for b, o in zip(baseline.round_p50s, other.round_p50s, strict=False) if o > 0]
    if not ratios:
        return None
    low, high = median_interval(ratios)
    return Speedup(float(np.median(ratios)), float(low), float(high), len(ratios))


def run_rounds(
    timers: dict[Any, RoundTimer], batch: int, plan: RoundPlan, interleave: bool = True
) -> dict[Any, Rounds]:
    """Time every artifact of ``timers`` at ``batch``: each warmed, then ``plan.rounds`` rounds.

    Interleaved (the default), a round visits the artifacts in order and the next in reverse (A B C, C B A, ...),
    so a drift in time weighs on each alike. ``interleave=False`` times each artifact's rounds back to back, one
    artifact after the other (how a harness without interleaving times them; kept for comparison). A timer that
    fails keeps the rounds it finished and its error; the others go on."""
    results: dict[str, Rounds] = {}
    for name, timer in timers.items():
        try:
            results[name] = Rounds(timer.warm(batch, plan.warmup))
        except Exception as exc:
            results[name] = Rounds(float("nan"), error=_reason(exc))
    names = [n for n in timers if not results[n].error]
    if interleave:
        visits = [n for i in range(plan.rounds) for n in (names if i % 2 == 0 else names[::-1])]
    else:
        visits = [n for n in names for _ in range(plan.rounds)]
    for name in visits:
        if results[name].error or plan.done(results[name]):
            continue
        time.sleep(TURN_GAP_S)
        try:
            results[name].samples_ms.append(timers[name].round(batch, plan.seconds, plan.min_calls, TURN_WARMUP_CALLS))
        except Exception as exc:
            results[name].error = _reason(exc)
    return results


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]

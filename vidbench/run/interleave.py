"""The timing step of a job: its artifacts timed in interleaved rounds, each in its own warm process.

Once every measure task of a job has ended, each artifact that passed its parity gate waits in its task's
``untimed.json``. Here each gets a warm timing process (an engine file: ``vidbench.measure.alone --serve``,
without torch; an artifact that lives in torch: a ``timer`` task of the worker, which prepares it again), and
:func:`~vidbench.measure.latency.run_rounds` times them in turns per thread count and batch size. Each row gets
its latency over its rounds and its speedup over the baseline's rounds (the median of per-round ratios, with
its 95 % interval); the rows come back to the caller, the store's writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidbench.measure.alone import ENGINES, serve_command
from vidbench.measure.latency import RoundPlan, Rounds, run_rounds, speedup
from vidbench.measure.operators import profile_calls
from vidbench.results import KEY_COLUMN, Row, RowTiming, failed_row, row_with
from vidbench.run.launch import TimerError, TimerProcess
from vidbench.rundir import TaskDir, write_json_atomic


@dataclass(frozen=True)
class ProfilePlan:
    """Which timed batch sizes get an operator profile (``none`` | ``smallest`` | ``all``), and its length."""

    batches: str = "smallest"
    seconds: float = 1.0

    def chosen(self, batches: list[int]) -> list[int]:
        """The batch sizes of ``batches`` (one artifact's, timed) to profile."""
        if self.batches == "none" or not batches:
            return []
        return sorted(batches) if self.batches == "all" else [min(batches)]


@dataclass(frozen=True)
class Untimed:
    """One measure task's artifact that passed its gate: its rows by batch size and how to start its timer."""

    optimization: str
    threads: int
    folder: TaskDir
    task: dict[str, Any]
    """The measure task (a torch artifact's timer task is the same task, of kind ``timer``)."""
    timer: dict[str, Any]
    rows: dict[int, Row]

    @classmethod
    def read(cls, folder: TaskDir, task: dict[str, Any]) -> Untimed | None:
        """The task's untimed rows, or None when it left none (its rows were written, or it failed)."""
        try:
            data = json.loads(folder.untimed.read_text())
        except (OSError, ValueError):
            return None
        rows = {int(bs): row for bs, row in data["rows"].items()}
        return cls(task["optimization"], int(task["threads"]), folder, task, data["timer"], rows)

    def start(self, timeout_s: float) -> TimerProcess:
        """This artifact's warm timing process."""
        engine, file = self.timer.get("engine"), self.timer.get("engine_file")
        if engine in ENGINES and file:
            precision = self.timer.get("precision", "fp32")
            command = serve_command(engine, Path(file), self.timer["clip_shape"], self.threads, precision)
            return TimerProcess.command(command, self.folder.timer, timeout_s)
        return TimerProcess.forked({**self.task, "kind": "timer"}, self.folder.timer, timeout_s)


def time_job(
    untimed: list[Untimed], baseline: str | None, plan: RoundPlan, timeout_s: float, peaks: Mapping[str, float],
    profile: ProfilePlan = ProfilePlan(),
) -> list[Row]:  # fmt: skip
    """Every untimed row of one job, timed: ``ok`` with its latency and speedup, or ``failed`` with why its
    timing process did not answer; each timed artifact's operator profiles (``profile``) right after its batch
    size's rounds, a profile's failure costing only the profile. The timing processes are stopped before this
    returns."""
    timers: dict[int, TimerProcess] = {}
    rows: list[Row] = []
    try:
        for index, item in enumerate(untimed):
            try:
                timers[index] = item.start(timeout_s)
            except OSError as exc:  # no process could be started (a full disk, no memory left)
                rows += [failed_row(row, f"timing: could not start: {exc}") for row in item.rows.values()]
        ready: dict[int, TimerProcess] = {}
        for index, timer in timers.items():
            try:
                timer.ready()
                ready[index] = timer
            except TimerError as exc:
                rows += [failed_row(row, f"timing: {exc}") for row in untimed[index].rows.values()]
        for threads in sorted({untimed[i].threads for i in ready}):
            group = {i: t for i, t in ready.items() if untimed[i].threads == threads}
            rows += _time_group(untimed, group, baseline, plan, peaks, profile)
    finally:
        for timer in timers.values():
            timer.stop()
    return rows


def _time_group(
    untimed: list[Untimed], timers: dict[int, TimerProcess], baseline: str | None, plan: RoundPlan,
    peaks: Mapping[str, float], profile: ProfilePlan,
) -> list[Row]:  # fmt: skip
    """The rows of one thread count: each batch size's artifacts timed in turns, baseline first, then profiled
    (as soon after their rounds as can be: the host drifts by the minute, and the profile is set beside the
    rounds' p50)."""
    # the reference is the baseline decoded as every other cell is (not a further decode policy's cell of it)
    is_reference = [item.optimization == baseline and "decode" not in item.task for item in untimed]
    order = sorted(timers, key=lambda i: not is_reference[i])
    reference = next((i for i in order if is_reference[i]), None)
    rows: list[Row] = []
    for batch in sorted({bs for i in order for bs in untimed[i].rows}):
        present = {i: timers[i] for i in order if batch in untimed[i].rows}
        measured = run_rounds(present, batch, plan)
        base = measured.get(reference) if reference is not None else None
        for index, rounds in measured.items():
            item = untimed[index]
            _keep_samples(item.folder, batch, rounds, base, plan)
            row = item.rows[batch]
            if rounds.error or not rounds.samples_ms:
                rows.append(failed_row(row, f"timing: {rounds.error or 'no round was timed'}"))
                continue
            usable_base = base if base is not None and not base.error and base.samples_ms else None
            rows.append(row_with(row, **timed_fields(rounds, usable_base, batch, row, peaks)))
        for index in present:
            if batch in profile.chosen(list(untimed[index].rows)):
                _profile(untimed[index], timers[index], _timed_row(rows, untimed[index], batch), batch, profile)
    return rows


def _timed_row(rows: list[Row], item: Untimed, batch: int) -> Row | None:
    """The ``ok`` row ``rows`` holds for ``item`` at ``batch``, if it was timed."""
    key = item.rows[batch][KEY_COLUMN]
    return next((r for r in reversed(rows) if r[KEY_COLUMN] == key and r.get("status") == "ok"), None)


def ceiling(peaks: Mapping[str, float], precision: str) -> float | None:
    """The roofline's ceiling for an artifact of ``precision``: the higher of that precision's peak and fp32's.
    Every artifact may run some layers in fp32 (autocast keeps some, INT8 keeps its fallbacks), and a precision
    without a fast kernel here (bf16 through torch on a CPU without one) is slower than fp32, so the ceiling is
    the fastest arithmetic the artifact could have used; its roofline is a floor, never above 100 %."""
    known = [peak for peak in (peaks.get(precision), peaks.get("fp32")) if peak]
    return max(known) if known else None


def timed_fields(
    rounds: Rounds, base: Rounds | None, batch: int, row: Mapping[str, Any], peaks: Mapping[str, float]
) -> RowTiming:
    """The timing columns of a row from its rounds (and the baseline's, for the speedup); its roofline against
    the matmul peak of the precision it runs (``peaks``, GMAC/s by precision)."""
    stats = rounds.stats()
    clips_per_s = batch * stats.calls_per_s
    gflops = row.get("gflops_per_clip") or 0.0
    ratio = speedup(base, rounds) if base is not None else None
    peak = ceiling(peaks, str(row.get("precision") or "fp32"))
    return RowTiming(
        status="ok",
        reason="",
        latency_ms_p50=stats.p50_ms,
        latency_ms_p90=stats.p90_ms,
        latency_ms_p99=stats.p99_ms,
        latency_cv_pct=stats.cv_pct,
        clips_per_s=clips_per_s,
        frames_per_s=clips_per_s * (row.get("frames") or 0),
        latency_ms_cold=stats.cold_ms,
        latency_iterations=stats.iterations,
        latency_p99_trusted=stats.p99_trusted,
        timing="interleaved" if ratio is not None else "alone",
        timing_rounds=len(rounds.samples_ms),
        speedup=ratio.value if ratio else None,
        speedup_ci95_low=ratio.low if ratio else None,
        speedup_ci95_high=ratio.high if ratio else None,
        speedup_uncertain=ratio.uncertain if ratio else None,
        timed_alone=row.get("engine") != "torch",
        achieved_gmacs_per_s=gflops * clips_per_s,
        peak_gmacs_per_s=peak,
        roofline_pct=gflops * clips_per_s / peak * 100 if peak else None,
    )


def _profile(item: Untimed, timer: TimerProcess, row: Row | None, batch: int, plan: ProfilePlan) -> None:
    """One timed artifact's operator profile at ``batch``, written beside its samples with the row's p50, or with
    the reason there is none."""
    if row is None or not row.get("latency_ms_p50"):
        return
    p50 = float(row["latency_ms_p50"])
    record: dict[str, Any] = {"latency_ms_p50": p50}
    try:
        record |= timer.profile(batch, profile_calls(p50, plan.seconds))
    except TimerError as exc:
        record["error"] = str(exc)
    write_json_atomic(item.folder.operator_profile(batch), record)


def _keep_samples(folder: TaskDir, batch: int, rounds: Rounds, base: Rounds | None, plan: RoundPlan) -> None:
    """Every timed call (``.npy``, the report's histograms) and the rounds as they ran, with the baseline's."""
    folder.root.mkdir(parents=True, exist_ok=True)
    flat = [x for r in rounds.samples_ms for x in r]
    np.save(folder.latency_samples(batch), np.asarray(flat, dtype=np.float64))
    record = {
        "plan": {"rounds": plan.rounds, "warmup": plan.warmup, "seconds": plan.seconds, "min_calls": plan.min_calls},
        "cold_ms": rounds.cold_ms,
        "samples_ms": rounds.samples_ms,
        "error": rounds.error,
        "baseline_round_p50_ms": base.round_p50s if base is not None else None,
    }
    write_json_atomic(folder.latency_rounds(batch), record)

"""Interleaved timing: the order statistics, the rounds, and a slow spell that moves a back-to-back ratio but not
an interleaved one. Real ONNX files, each timed in its own ``vidbench.measure.alone --serve`` process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vidbench.measure.alone import serve_command
from vidbench.measure.latency import RoundPlan, Rounds, run_rounds, speedup
from vidbench.run.launch import TimerError, TimerProcess
from vidbench.rundir import TaskDir
from vidbench.stats import median_interval

WIDTH = 1024
SPELL_BATCH = 64
"""At this batch each layer is ~3 ms: every call outlasts a scheduler slice, so contention reaches its median."""
SPELL_BURNERS = 4
"""CPU-bound processes a slow spell starts, each in its own session: Linux shares the CPU between sessions
(autogroups) first, and a timing process has its own, so burners inside the test's session barely touch it."""


def mlp_file(path: Path, layers: int, seed: int) -> Path:
    """A real ONNX model: ``layers`` dense layers of WIDTH x WIDTH with ReLU, input ``[batch, WIDTH]``."""
    rng = np.random.default_rng(seed)
    nodes, weights, current = [], [], "x"
    for i in range(layers):
        weight = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]),
            helper.make_node("Relu", [f"m{i}"], [f"h{i}"]),
        ]
        current = f"h{i}"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", WIDTH])], weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def timer(tmp_path: Path, name: str, file: Path) -> TimerProcess:
    process = TimerProcess.command(serve_command("onnxruntime", file, [WIDTH], 1), TaskDir(tmp_path / name), 60)
    process.ready()
    return process


def test_median_interval_takes_the_binomial_order_statistics() -> None:
    assert median_interval(list(range(1, 11))) == (2, 9)  # n = 10: ranks 2 and 9 cover 97.9 %
    assert median_interval(list(range(1, 21))) == (6, 15)
    assert median_interval([5.0, 1.0, 3.0]) == (1.0, 5.0)  # too few for 95 %: the whole range


def test_speedup_pairs_rounds_and_flags_a_wide_interval() -> None:
    base = Rounds(1.0, [[10.0, 10.0]] * 10)
    steady = Rounds(1.0, [[5.0]] * 10)
    ratio = speedup(base, steady)
    assert ratio is not None and (ratio.value, ratio.low, ratio.high, ratio.rounds) == (2.0, 2.0, 2.0, 10)
    assert not ratio.uncertain
    erratic = Rounds(1.0, [[5.0], [2.5], [10.0], [5.0], [2.0], [9.0], [5.0], [3.0], [8.0], [5.0]])
    wide = speedup(base, erratic)
    assert wide is not None and wide.value == 2.0 and wide.uncertain


def test_round_plan_spreads_a_suites_totals() -> None:
    plan = RoundPlan.spread(rounds=10, warmup=3, min_iters=25, min_seconds=2.0, max_seconds=6.0)
    assert (plan.rounds, plan.warmup, plan.min_calls) == (10, 3, 3) and plan.seconds == pytest.approx(0.2)
    assert plan.max_seconds == 6.0


def test_a_timing_process_that_cannot_load_its_file_says_why(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    process = TimerProcess.command(serve_command("onnxruntime", missing, [WIDTH], 1), TaskDir(tmp_path / "t"), 60)
    with pytest.raises(TimerError, match="timing process it exited"):
        process.ready()
    process.stop()


def test_rounds_alternate_and_each_artifact_keeps_its_calls(tmp_path: Path) -> None:
    small, large = mlp_file(tmp_path / "small.onnx", 1, 0), mlp_file(tmp_path / "large.onnx", 6, 1)
    timers = {"small": timer(tmp_path, "small", small), "large": timer(tmp_path, "large", large)}
    try:
        rounds = run_rounds(timers, 8, RoundPlan(rounds=6, warmup=2, seconds=0.02, min_calls=3))
    finally:
        for process in timers.values():
            process.stop()
    assert {name: len(r.samples_ms) for name, r in rounds.items()} == {"small": 6, "large": 6}
    assert all(len(calls) >= 3 for r in rounds.values() for calls in r.samples_ms)
    ratio = speedup(rounds["large"], rounds["small"])
    assert ratio is not None and ratio.value > 1.5  # six layers against one


def test_an_artifact_past_its_time_cap_sits_out_once_it_has_an_interval(tmp_path: Path) -> None:
    """``max_seconds`` caps an engine's timed seconds, but never below the rounds an interval needs (here every
    engine is past a cap of a microsecond at once); the speedup is the median of the rounds they share."""
    small, large = mlp_file(tmp_path / "small.onnx", 1, 0), mlp_file(tmp_path / "large.onnx", 12, 1)
    timers = {"small": timer(tmp_path, "small", small), "large": timer(tmp_path, "large", large)}
    plan = RoundPlan(rounds=10, warmup=1, seconds=0.02, min_calls=2, max_seconds=1e-6)
    try:
        rounds = run_rounds(timers, 8, plan)
    finally:
        for process in timers.values():
            process.stop()
    assert {name: len(r.samples_ms) for name, r in rounds.items()} == {"small": 6, "large": 6}
    uncapped = RoundPlan(rounds=10, warmup=1, seconds=0.02, min_calls=2)
    assert not uncapped.done(rounds["large"]) and plan.done(rounds["large"])
    ratio = speedup(rounds["large"], rounds["small"])
    assert ratio is not None and ratio.rounds == 6 and ratio.value > 1.5


class SpellAfter:
    """A real timing process whose ``at``-th round starts CPU burners (:data:`SPELL_BURNERS`): a slow spell mid-way."""

    def __init__(self, inner: TimerProcess, at: int, burners: list[subprocess.Popen]) -> None:
        self.inner, self.at, self.burners, self.rounds = inner, at, burners, 0

    def warm(self, batch: int, calls: int) -> float:
        return self.inner.warm(batch, calls)

    def round(self, batch: int, seconds: float, min_calls: int, warmup: int) -> list[float]:
        self.rounds += 1
        if self.rounds == self.at and not self.burners:
            burn = "while True: pass"
            start = [sys.executable, "-c", burn]
            self.burners += [subprocess.Popen(start, start_new_session=True) for _ in range(SPELL_BURNERS)]
        return self.inner.round(batch, seconds, min_calls, warmup)


@pytest.mark.serial
def test_a_slow_spell_moves_a_back_to_back_ratio_but_not_an_interleaved_one(tmp_path: Path) -> None:
    small, large = mlp_file(tmp_path / "small.onnx", 4, 0), mlp_file(tmp_path / "large.onnx", 12, 1)
    timers = {"small": timer(tmp_path, "small", small), "large": timer(tmp_path, "large", large)}
    plan = RoundPlan(rounds=12, warmup=2, seconds=0.2, min_calls=3)
    burners: list[subprocess.Popen] = []

    def ratio(rounds: dict[str, Rounds]) -> float:
        return float(np.median(rounds["large"].round_p50s) / np.median(rounds["small"].round_p50s))

    try:
        quiet = speedup(*(lambda r: (r["large"], r["small"]))(run_rounds(timers, SPELL_BATCH, plan)))
        # back to back: the small model's rounds all quiet, the large one's all in the spell
        spell = {"small": timers["small"], "large": SpellAfter(timers["large"], 1, burners)}
        back_to_back = ratio(run_rounds(spell, SPELL_BATCH, plan, interleave=False))
        for burner in burners:
            burner.kill()
        burners.clear()
        # interleaved: the spell starts at the large model's 7th round and lasts to the end
        spell = {"small": timers["small"], "large": SpellAfter(timers["large"], 7, burners)}
        interleaved = speedup(*(lambda r: (r["large"], r["small"]))(run_rounds(spell, SPELL_BATCH, plan)))
    finally:
        for burner in burners:
            burner.kill()
        for process in timers.values():
            process.stop()
    assert quiet is not None and interleaved is not None
    moved = back_to_back / quiet.value
    print(f"quiet {quiet.value:.3f}, back to back in the spell {back_to_back:.3f}, interleaved {interleaved.value:.3f}")
    assert abs(moved - 1) > 0.10, f"the spell did not move the back-to-back ratio ({moved:.2f}x)"
    assert abs(interleaved.value / quiet.value - 1) <= 0.10, (quiet, interleaved, moved)

"""Time every engine artifact of a run again, alone, in fresh processes, and compare with its row.

For each ``ok`` row whose artifact runs on another engine than torch (ONNX Runtime: ``onnx``, ``int8``;
OpenVINO: ``openvino``, ``openvino-int8``), the artifact file is timed ``--repeats`` times, each in a fresh
process that imports neither torch nor the harness's model code (:mod:`vidbench.measure.alone`), with the
row's batch size and thread count and, unless overridden, the run's own plan (warm-up, ``min_iters`` and
``min_seconds`` from its ``suite.json``). Prints one line per row: the row's p50, the median and the range of
the fresh p50s, the ratio of the row to that median (issue 18 asks 0.95-1.05) and the spread of the fresh
p50s among themselves ((max - min) / median): the same file timed the same way, minutes apart, which is this
machine's own noise floor for the comparison.

Run: ``python benchmarks/retime_artifacts.py results/<suite>/<run_id> [--repeats 3] [--min-seconds 10]``
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from vidbench.measure.alone import time_alone
from vidbench.measure.latency import LatencyPlan
from vidbench.results import ResultStore
from vidbench.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per artifact")
    parser.add_argument("--min-iters", type=int, help="default: the run's measure.min_iters")
    parser.add_argument("--min-seconds", type=float, help="default: the run's measure.min_seconds")
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    measure = run.read_suite().get("measure") or {}
    rows = ResultStore(run.results).frame()
    rows = rows[(rows["status"] == "ok") & rows["engine_file"].notna()] if "engine_file" in rows else rows.iloc[0:0]
    if rows.empty:
        print(f"{args.run_dir}: no ok rows with an engine artifact (onnx, int8, openvino...) to time")
        return
    min_seconds = measure.get("min_seconds", LatencyPlan.min_seconds) if args.min_seconds is None else args.min_seconds
    plan = LatencyPlan(
        warmup=measure.get("warmup", LatencyPlan.warmup),
        min_iters=args.min_iters or measure.get("min_iters", LatencyPlan.min_iters),
        min_seconds=min_seconds,
        max_seconds=measure.get("max_seconds", LatencyPlan.max_seconds),
    )
    print(f"plan: {plan.warmup} warm-up calls, then >= {plan.min_iters} calls and >= {plan.min_seconds:g} s a process")
    header = ("model", "optimization", "batch", "row p50 ms", "alone p50 ms", "alone range ms", "ratio", "spread")
    print("{:12} {:14} {:>5} {:>10} {:>12} {:>15} {:>6} {:>7}".format(*header))
    ratios, spreads = [], []
    for row in rows.itertuples():
        shape = (int(row.batch_size), 3, int(row.frames), int(row.crop), int(row.crop))
        file = run.root / row.engine_file
        p50s = [time_alone(row.engine, file, shape, int(row.threads), plan).p50_ms for _ in range(args.repeats)]
        median = statistics.median(p50s)
        ratio, spread = row.latency_ms_p50 / median, (max(p50s) - min(p50s)) / median
        ratios.append(ratio)
        spreads.append(spread)
        print(f"{row.model:12} {row.optimization:14} {row.batch_size:5d} {row.latency_ms_p50:10.3f} {median:12.3f} "
              f"{min(p50s):7.3f}-{max(p50s):<7.3f} {ratio:6.3f} {spread:6.1%}")  # fmt: skip
    within = sum(0.95 <= r <= 1.05 for r in ratios)
    print(f"{within} of {len(ratios)} rows within 5 % of the median alone p50; ratio median "
          f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}; the fresh processes' own "
          f"spread: median {statistics.median(spreads):.1%}, max {max(spreads):.1%}")  # fmt: skip


if __name__ == "__main__":
    main()

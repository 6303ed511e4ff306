"""Time every engine artifact of a run again, alone, in a fresh process, and compare with its row.

For each ``ok`` row whose artifact runs on another engine than torch (ONNX Runtime: ``onnx``, ``int8``),
the artifact file is timed with the engine's own API in a process that imports neither torch nor the
harness's model code (:mod:`vidbench.measure.alone`), with the row's batch size, thread count and a
fixed plan. Prints one line per row: the row's p50, the fresh p50 and their ratio (issue 18 asks 0.95-1.05).

Run: ``python benchmarks/retime_artifacts.py results/<suite>/<run_id> [--min-seconds 2]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidbench.measure.alone import time_alone
from vidbench.measure.latency import LatencyPlan
from vidbench.results import ResultStore
from vidbench.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--min-iters", type=int, default=100)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    rows = ResultStore(run.results).frame()
    rows = rows[(rows["status"] == "ok") & rows["engine_file"].notna()] if "engine_file" in rows else rows.iloc[0:0]
    if rows.empty:
        print(f"{args.run_dir}: no ok rows with an engine artifact (onnx, int8) to time")
        return
    plan = LatencyPlan(warmup=5, min_iters=args.min_iters, min_seconds=args.min_seconds)
    header = ("model", "preset", "optimization", "batch", "row p50 ms", "alone p50 ms", "ratio")
    print("{:12} {:8} {:14} {:>5} {:>11} {:>13} {:>6}".format(*header))
    for row in rows.itertuples():
        shape = (int(row.batch_size), 3, int(row.frames), int(row.crop), int(row.crop))
        stats = time_alone(row.engine, run.root / row.engine_file, shape, int(row.threads), plan)
        ratio = row.latency_ms_p50 / stats.p50_ms
        print(f"{row.model:12} {row.preset:8} {row.optimization:14} {row.batch_size:5d} "
              f"{row.latency_ms_p50:11.3f} {stats.p50_ms:13.3f} {ratio:6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Why an engine's clips/s grows, or not, with the batch (issue 18): one model job of a run, every engine artifact
timed alone in a fresh process at batch 1 and at a large batch under varied engine settings, against the eager
model timed the same way, and an ONNX Runtime profile of the large batch by operator type.

Run: ``python benchmarks/batch_scaling.py results/compare_all/<run_id> --model r2plus1d [--batch 16]``

Prints one table (clips/s per setting and batch, and the ratio to eager at the same batch) and, per ONNX
artifact, the share of the run time each operator type takes. Ratios are measured in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

SETTINGS = {
    "onnxruntime": [
        ("default (all graph optimizations)", {}),
        ("graph optimizations: basic", {"graph_optimization": "basic"}),
        ("1 intra-op thread", {"threads": 1}),
    ],
    "openvino": [
        ("latency hint", {}),
        ("throughput hint", {"hint": "THROUGHPUT"}),
        ("1 thread", {"threads": 1}),
    ],
}


def _timed(call: Callable[[], object]) -> float:
    """Calls per second: 3 warm-up calls, then at least 10 calls and 2 s."""
    for _ in range(3):
        call()
    calls, start = 0, time.perf_counter()
    while calls < 10 or time.perf_counter() - start < 2.0:
        call()
        calls += 1
    return calls / (time.perf_counter() - start)


def _engine_child(engine: str, path: str, shape: tuple[int, ...], threads: int, options: dict) -> dict:
    """In the fresh process: open ``path`` with ``engine``'s own API under ``options`` and time it."""
    threads = options.get("threads", threads)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    if engine == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        if options.get("graph_optimization") == "basic":
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        if options.get("profile"):
            so.enable_profiling, so.profile_file_prefix = True, options["profile"]
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        out = {"calls_per_s": _timed(lambda: sess.run(None, feed))}
        return {**out, "profile": sess.end_profiling()} if options.get("profile") else out
    import openvino as ov

    hint = options.get("hint", "LATENCY")
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(path, "CPU", config)
    return {"calls_per_s": _timed(lambda: compiled(x))}


def _eager_child(run_dir: str, slug: str, shape: tuple[int, ...], threads: int) -> dict:
    """In the fresh process: the trained PyTorch model, rebuilt as a cell rebuilds it, timed."""
    import torch

    from vidbench.job.context import Context
    from vidbench.rundir import RunDir

    torch.set_num_threads(threads)
    model = Context.for_job(RunDir(run_dir), slug).trained_model().eval()
    x = torch.randn(*shape)
    with torch.inference_mode():
        return {"calls_per_s": _timed(lambda: model(x))}


def _in_child(kind: str, *args: object) -> dict:
    """Run ``kind`` (``engine`` or ``eager``) in a fresh Python process; its JSON answer."""
    command = [sys.executable, __file__, "--child", kind, json.dumps(args)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_engine(engine: str, path: Path, shape: tuple[int, ...], threads: int, options: dict) -> dict:
    """Calls per second of ``path`` under ``engine`` in a fresh process (and the profile file when asked)."""
    return _in_child("engine", engine, str(path), shape, threads, options)


def time_eager(run_dir: Path, slug: str, shape: tuple[int, ...], threads: int) -> float:
    """Calls per second of the job's trained PyTorch model in a fresh process."""
    return _in_child("eager", str(run_dir), slug, shape, threads)["calls_per_s"]


def op_shares(profile: Path) -> pd.Series:
    """Share of the model's run time per ONNX operator type, from an ONNX Runtime profile."""
    events = json.loads(profile.read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    frame = pd.DataFrame({"op": [e["args"].get("op_name", "?") for e in nodes], "us": [e["dur"] for e in nodes]})
    shares = frame.groupby("op")["us"].sum().sort_values(ascending=False)
    return (shares / shares.sum() * 100).round(1)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        kind, args = sys.argv[2], json.loads(sys.argv[3])
        args = [tuple(a) if isinstance(a, list) else a for a in args]
        print(json.dumps((_engine_child if kind == "engine" else _eager_child)(*args)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--model", required=True, help="model name of the job (e.g. r2plus1d)")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    rows = pd.read_json(args.run_dir / "results.jsonl", lines=True)
    rows = rows[(rows["model"] == args.model) & (rows["status"] == "ok")]
    if rows.empty:
        sys.exit(f"{args.run_dir}: no ok row of model {args.model!r}")
    first = rows.iloc[0]
    slug, threads = first["job"], int(first["threads"])
    clip = (3, int(first["frames"]), int(first["crop"]), int(first["crop"]))
    batches = (1, args.batch)
    eager = {b: time_eager(args.run_dir, slug, (b, *clip), threads) for b in batches}
    table = [("eager", "torch", *(eager[b] * b for b in batches), 1.0, 1.0)]
    engines = rows[rows["engine_file"].notna()].drop_duplicates("optimization")
    for row in engines.itertuples():
        path = args.run_dir / row.engine_file
        for label, options in SETTINGS[row.engine]:
            speed = {b: time_engine(row.engine, path, (b, *clip), threads, options)["calls_per_s"] for b in batches}
            ratios = [speed[b] / eager[b] for b in batches]
            table.append((row.optimization, label, *(speed[b] * b for b in batches), *ratios))
    frame = pd.DataFrame(table, columns=["artifact", "setting", "clips/s b1", f"clips/s b{args.batch}",
                                         "x eager b1", f"x eager b{args.batch}"])  # fmt: skip
    print(f"{args.model} ({slug}), {threads} threads, clip {clip}")
    print(frame.round(2).to_string(index=False))
    for row in engines[engines["engine"] == "onnxruntime"].itertuples():
        prefix = str(Path("/tmp") / f"ort-profile-{row.optimization}")
        out = time_engine(
            "onnxruntime", args.run_dir / row.engine_file, (args.batch, *clip), threads, {"profile": prefix}
        )
        print(f"\n{row.optimization} at batch {args.batch}: % of kernel time by operator")
        print(op_shares(Path(out["profile"])).head(8).to_string())


if __name__ == "__main__":
    main()

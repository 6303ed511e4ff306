"""Timing an artifact the way it is deployed: in a fresh process that loads only its engine and its file.

In the harness's own process torch has run, and its thread pool competes with another engine's for the
same cores (ONNX Runtime measured 1.4x slower there than alone). :func:`time_alone` runs
``python -m vidbench.measure.alone ENGINE FILE ...`` instead: that process imports numpy, the engine and
the timer (``import vidbench`` does not import torch), feeds random input of the clip's shape, times it
with the suite's plan and prints the samples as JSON. With ``--serve`` it stays up as one artifact's warm
process of interleaved timing instead: commands on stdin, replies on stdout
(:func:`vidbench.measure.latency.serve_rounds`); the input's batch size comes with each command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vidbench.measure.latency import LatencyPlan, LatencyStats, StdioChannel, measure_latency, serve_rounds
from vidbench.measure.operators import ENGINE_PROFILERS

ENGINES = ("onnxruntime", "openvino")


class AloneError(RuntimeError):
    """The standalone timing process failed; the message carries its last output line."""


def time_alone(engine: str, file: Path, shape: Sequence[int], threads: int, plan: LatencyPlan) -> LatencyStats:
    """Time ``file`` under ``engine`` in a fresh process on input of ``shape`` with ``threads`` threads."""
    if engine not in ENGINES:
        raise ValueError(f"no standalone timer for engine {engine!r}; known: {', '.join(ENGINES)}")
    command = [sys.executable, "-m", "vidbench.measure.alone", engine, str(file), "--threads", str(threads)]
    command += ["--shape", ",".join(map(str, shape)), "--warmup", str(plan.warmup), "--min-iters", str(plan.min_iters)]
    command += ["--min-seconds", str(plan.min_seconds), "--max-seconds", str(plan.max_seconds)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=plan.max_seconds * 4 + 120)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise AloneError(f"standalone {engine} timing failed: {lines[-1] if lines else proc.returncode}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    if data.get("torch_imported"):
        raise AloneError("the standalone timing process imported torch")
    return LatencyStats(**{**data["stats"], "samples_ms": tuple(data["samples_ms"])})


Loaded = Callable[[Sequence[int]], Callable[[], object]]
"""An engine's file, loaded once: input shape -> the call on random input of that shape."""


def _onnxruntime(file: Path, threads: int, precision: str = "fp32") -> Loaded:
    """ONNX Runtime runs the precision its graph holds (``precision`` is for the record)."""
    from vidbench.kit.ort_session import ort_session

    session = ort_session(file, threads)  # the session the harness runs the artifact in
    name = session.get_inputs()[0].name

    def call_for(shape: Sequence[int]) -> Callable[[], object]:
        feed = {name: _random_input(shape)}
        return lambda: session.run(None, feed)

    return call_for


def _openvino(file: Path, threads: int, precision: str = "fp32") -> Loaded:
    from vidbench.kit.openvino_tools import ov_compile

    compiled = ov_compile(file, threads, precision)  # the settings the harness compiled the artifact with

    def call_for(shape: Sequence[int]) -> Callable[[], object]:
        array = _random_input(shape)
        return lambda: compiled(array)

    return call_for


def _random_input(shape: Sequence[int]) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(tuple(shape), dtype=np.float32)


LOADERS: dict[str, Callable[[Path, int, str], Loaded]] = {"onnxruntime": _onnxruntime, "openvino": _openvino}
"""Each engine's loader: ``(file, threads, precision)``; OpenVINO compiles its floating-point layers for the
precision."""


def serve_command(
    engine: str, file: Path, clip_shape: Sequence[int], threads: int, precision: str = "fp32"
) -> list[str]:
    """The command of ``file``'s warm timing process (``clip_shape``: one clip, C,T,H,W)."""
    if engine not in ENGINES:
        raise ValueError(f"no standalone timer for engine {engine!r}; known: {', '.join(ENGINES)}")
    shape = ",".join(map(str, clip_shape))
    return [sys.executable, "-m", "vidbench.measure.alone", engine, str(file), "--threads", str(threads),
            "--serve", "--shape", shape, "--precision", precision]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time one artifact file alone under its engine.")
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("file", type=Path)
    parser.add_argument("--shape", required=True, help="input shape, comma separated (B,C,T,H,W; C,T,H,W to --serve)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-iters", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--serve", action="store_true", help="stay up as a warm process of interleaved timing")
    parser.add_argument("--precision", default="fp32", help="the artifact's precision (OpenVINO compiles for it)")
    args = parser.parse_args(argv)
    shape = [int(x) for x in args.shape.split(",")]
    if args.serve:
        channel = StdioChannel()
        serving = LOADERS[args.engine](args.file, args.threads, args.precision)
        if "torch" in sys.modules:
            raise SystemExit("the standalone timing process imported torch")
        profiler = ENGINE_PROFILERS[args.engine]

        def profile_for(batch: int, calls: int, _call: object) -> object:
            array = _random_input([batch, *shape])
            return profiler(args.file, args.threads, args.precision, array, batch, calls)

        serve_rounds(lambda batch: serving([batch, *shape]), channel, profile_for)
        return
    call = LOADERS[args.engine](args.file, args.threads, args.precision)(shape)
    stats = measure_latency(call, LatencyPlan(args.warmup, args.min_iters, args.min_seconds, args.max_seconds))
    print(
        json.dumps(
            {"stats": stats.as_dict(), "samples_ms": list(stats.samples_ms), "torch_imported": "torch" in sys.modules}
        )
    )


if __name__ == "__main__":
    main()

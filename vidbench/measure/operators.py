"""Where an artifact's time goes: a per-operator profile from its engine's own profiler.

Each engine profiles the artifact as it is timed, in its warm timing process, once its timing rounds are done:

- PyTorch: ``torch.profiler`` (CPU activities); each operator's *self* time (its children's time excluded).
- ONNX Runtime: the session's own profiling (``enable_profiling``) on a second session built with the same
  settings; each node's ``kernel_time`` event, and each call's ``model_run``.
- OpenVINO: the CPU plugin's performance counters (``PERF_COUNT``) on a second compiled model with the same
  settings; each executed node's ``real_time`` and its kernel (``exec_type``, e.g. ``brgconv_avx2_f32``).

The profile itself (:class:`vidbench.profiles.OperatorProfile`: operators, their groups, the time outside them)
is a shared record the report reads. This module imports no torch at import time: the engines' timing
processes have none.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vidbench.profiles import OperatorProfile, OpTime


def profile_calls(p50_ms: float, seconds: float, most: int = 50) -> int:
    """How many calls a profile takes: ``seconds`` worth at the artifact's p50, at least 3, at most ``most``."""
    return max(3, min(most, int(seconds * 1e3 / max(p50_ms, 1e-3))))


def _timed(call: Callable[[], object], calls: int) -> float:
    """Mean wall ms of ``calls`` calls."""
    began = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - began) * 1e3 / calls


def profile_torch(call: Callable[[], object], batch: int, calls: int) -> OperatorProfile:
    """``call`` (a warm artifact that runs in torch) under ``torch.profiler`` on the CPU: each operator type's
    self time per call, with the precision of its first input (read from one more call, profiled with input
    types: recording them on every call would slow the profiled calls further). Calls into an engine from
    torch (ONNX Runtime, TensorRT) show as time outside operators."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as typed:
            call()  # also keeps the profiler's own first-call setup out of the timed profile
        precisions = {e.key: _torch_precision(e.key, e.input_dtypes) for e in typed.events()}
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            wall_ms = _timed(call, calls)
    ops = [
        OpTime(event.key, event.key, event.self_cpu_time_total / 1e3 / calls, precisions.get(event.key, ""))
        for event in prof.key_averages()
        if event.self_cpu_time_total > 0
    ]
    return OperatorProfile("torch", f"torch.profiler {torch.__version__}", batch, calls, wall_ms, _sorted(ops))


TORCH_TYPES = {"float": "fp32", "c10::BFloat16": "bf16", "c10::Half": "fp16", "c10::quint8": "int8",
               "c10::qint8": "int8", "unsigned char": "int8", "signed char": "int8"}  # fmt: skip
"""The element type of an operator's first input, as torch.profiler names it, -> the row's precision names."""


def _torch_precision(key: str, dtypes: Sequence[str] | None) -> str:
    """A quantized kernel is int8 (a dynamic one takes float input); any other, its first input's type."""
    if key.startswith("quantized::") or "_int_mm" in key:
        return "int8"
    return TORCH_TYPES.get(dtypes[0], "") if dtypes else ""


def profile_onnxruntime(
    path: Path, threads: int, precision: str, array: Any, batch: int, calls: int
) -> OperatorProfile:
    """``path`` in a second ONNX Runtime session built as the timed one, with the session's profiling on: each
    node's kernel time over the last ``calls`` of its runs (the first runs warm it and are dropped). ONNX
    Runtime runs the precision its graph holds (``precision`` is for the record)."""
    import onnxruntime

    from vidbench.kit.ort_session import ort_session

    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        session = ort_session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        feed = {session.get_inputs()[0].name: array}
        warmup = 3
        wall_ms = 0.0
        for index in range(warmup + calls):
            began = time.perf_counter()
            session.run(None, feed)
            wall_ms += (time.perf_counter() - began) * 1e3 if index >= warmup else 0.0
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][-calls:]
    if not runs:
        raise RuntimeError("ONNX Runtime's profile has no model_run event")
    windows = [(run["ts"], run["ts"] + run["dur"]) for run in runs]
    totals: dict[tuple[str, str], float] = defaultdict(float)
    kinds: dict[str, str] = {}
    for event in events:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if not any(start <= event["ts"] <= end for start, end in windows):
            continue
        args = event.get("args", {})
        name = event["name"].removesuffix("_kernel_time")
        totals[(name, args.get("op_name", "?"))] += event["dur"] / 1e3 / len(runs)
        kinds[name] = _ort_precision(args)
    ops = [OpTime(name, op_type, ms, kinds.get(name, "")) for (name, op_type), ms in totals.items()]
    profiler = f"ONNX Runtime {onnxruntime.__version__} session profiling"
    return OperatorProfile("onnxruntime", profiler, batch, len(runs), wall_ms / calls, _sorted(ops))


ORT_TYPES = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "uint8": "int8", "int8": "int8"}


def _ort_precision(args: dict[str, Any]) -> str:
    """A node's precision: its first input's element type (a QLinearConv's is uint8, a Conv's float)."""
    shapes = args.get("input_type_shape") or []
    first = next(iter(shapes[0]), "") if shapes and isinstance(shapes[0], dict) else ""
    return ORT_TYPES.get(first, "")


def profile_openvino(path: Path, threads: int, precision: str, array: Any, batch: int, calls: int) -> OperatorProfile:
    """``path`` compiled again as the timed model is, with the CPU plugin's performance counters on: each
    executed node's real time per call and its kernel."""
    import openvino

    from vidbench.kit.openvino_tools import ov_compile

    request = ov_compile(path, threads, precision, perf_count=True).create_infer_request()
    for _ in range(3):
        request.infer({0: array})
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    wall_ms = 0.0
    for _ in range(calls):
        began = time.perf_counter()
        request.infer({0: array})
        wall_ms += (time.perf_counter() - began) * 1e3
        for node in request.profiling_info:
            if str(node.status).endswith("EXECUTED"):
                totals[(node.node_name, node.node_type, node.exec_type)] += node.real_time.total_seconds() * 1e3 / calls
    ops = [
        OpTime(name, op_type, ms, _kernel_precision(kernel), kernel) for (name, op_type, kernel), ms in totals.items()
    ]
    profiler = f"OpenVINO {openvino.get_version()} performance counters"
    return OperatorProfile("openvino", profiler, batch, calls, wall_ms / calls, _sorted(ops))


ENGINE_PROFILERS: dict[str, Callable[[Path, int, str, Any, int, int], OperatorProfile]] = {
    "onnxruntime": profile_onnxruntime,
    "openvino": profile_openvino,
}
"""An engine file's profiler: ``(file, threads, precision, input array, batch, calls)``."""


KERNEL_TYPES = {"f32": "fp32", "fp32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8"}


def _kernel_precision(kernel: str) -> str:
    """The precision at the end of an OpenVINO kernel's name (``brgconv_avx2_f32``, ``jit_avx512_I8``)."""
    match = re.search(r"_([a-z0-9]+)$", kernel.lower())
    return KERNEL_TYPES.get(match.group(1), "") if match else ""


def _sorted(ops: Sequence[OpTime]) -> list[OpTime]:
    return sorted(ops, key=lambda op: -op.ms)

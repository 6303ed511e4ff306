"""This machine's measured matmul rates, one per precision: the ceilings of the roofline column.

A row's roofline divides its achieved rate by the peak of the precision its artifact runs
(:attr:`vidbench.specs.Artifact.precision`): an INT8 artifact against an INT8 matmul, never against fp32's. Each
peak is the best of the engines that offer that precision's matmul here, through their own kernels, and says
which one it was: fp32 and bf16 through torch (oneDNN / its BLAS), int8 through ``torch._int_mm`` and through
ONNX Runtime's ``MatMulInteger`` (its MLAS kernels: VNNI, AMX where the CPU has them).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from vidbench.measure.latency import synchronizer

SIZE = 1024
"""The side of the square products timed on the CPU (4096 on CUDA)."""
PROBE_SIZE = 256
"""A kernel is first timed on products this size; one that takes longer than :data:`SLOW_CALL_S` a call there
(a reference path: no fast kernel for that precision on this CPU) is rated from them, without the seconds a
full-size product would take."""
SLOW_CALL_S = 0.01


@dataclass(frozen=True)
class Peak:
    """One precision's best matmul rate here and the kernel that gave it."""

    gmacs_per_s: float
    method: str


def best_rate(
    call: Callable[[], object], macs: float, seconds: float, sync: Callable[[], None] = lambda: None
) -> float:
    """Best-of-runs rate of ``call`` (``macs`` multiply-adds a call) in GMAC/s over about ``seconds``."""
    for _ in range(3):
        call()
    sync()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        sync()
        best = min(best, time.perf_counter() - start)
    return macs / best / 1e9


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside, as they were after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _torch_peak(dtype: torch.dtype, threads: int, size: int, seconds: float, device: str) -> float:
    size = max(size, 4096) if device.startswith("cuda") else size
    with _torch_threads(threads):
        a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
        return best_rate(lambda: torch.mm(a, b), size**3, seconds, synchronizer(device))


def _torch_int8_peak(threads: int, size: int, seconds: float) -> float:
    with _torch_threads(threads):
        a = torch.randint(-128, 127, (size, size), dtype=torch.int8)
        b = torch.randint(-128, 127, (size, size), dtype=torch.int8)
        return best_rate(lambda: torch._int_mm(a, b), size**3, seconds)


def _onnxruntime_int8_peak(threads: int, size: int, seconds: float) -> float:
    """``MatMulInteger`` (uint8 x int8 -> int32), the op a dynamically quantized ONNX model runs."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "int8_peak",
        [
            helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size]),
            helper.make_tensor_value_info("b", TensorProto.INT8, [size, size]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "int8_peak.onnx"
        onnx.save(model, path)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "a": rng.integers(0, 255, (size, size), dtype=np.uint8),
        "b": rng.integers(-128, 127, (size, size), dtype=np.int8),
    }
    return best_rate(lambda: session.run(None, feeds), size**3, seconds)


def matmul_peaks(threads: int, device: str = "cpu", seconds: float = 0.25) -> dict[str, Peak]:
    """This machine's peak per precision (``fp32``, ``bf16``, ``int8`` on a CPU; ``fp32``, ``fp16``, ``bf16`` on
    CUDA), each the best of the kernels tried, named in its ``method``. A kernel that cannot run here is left out
    of its precision; a precision no kernel runs is left out."""
    if device.startswith("cuda"):
        floats = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        return {
            name: Peak(_torch_peak(dtype, threads, SIZE, seconds, device), f"torch.mm {name}, 4096-square, CUDA")
            for name, dtype in floats.items()
        }
    candidates: dict[str, list[tuple[str, Callable[[int, float], float]]]] = {
        "fp32": [("torch.mm fp32 (oneDNN / BLAS)", lambda n, s: _torch_peak(torch.float32, threads, n, s, device))],
        "bf16": [("torch.mm bf16 (oneDNN)", lambda n, s: _torch_peak(torch.bfloat16, threads, n, s, device))],
        "int8": [
            ("torch._int_mm int8", lambda n, s: _torch_int8_peak(threads, n, s)),
            ("ONNX Runtime MatMulInteger u8 x s8", lambda n, s: _onnxruntime_int8_peak(threads, n, s)),
        ],
    }
    peaks: dict[str, Peak] = {}
    for precision, kernels in candidates.items():
        for method, measure in kernels:
            try:
                rate, size = _sized(measure, seconds)
            except Exception:  # a kernel this build or CPU lacks leaves the others to say
                continue
            if precision not in peaks or rate > peaks[precision].gmacs_per_s:
                peaks[precision] = Peak(rate, f"{method}, {size}-square, {threads} thread(s)")
    return peaks


def _sized(measure: Callable[[int, float], float], seconds: float) -> tuple[float, int]:
    """A kernel's rate and the product size it was timed at (see :data:`PROBE_SIZE`)."""
    probe = measure(PROBE_SIZE, seconds / 4)
    if PROBE_SIZE**3 / probe / 1e9 > SLOW_CALL_S:
        return probe, PROBE_SIZE
    return measure(SIZE, seconds), SIZE

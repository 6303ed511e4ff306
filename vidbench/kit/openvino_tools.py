"""OpenVINO for the optimizations that run through it: convert, save as IR, compile for the CPU, run.

No torch at import: :mod:`vidbench.measure.alone` times an IR with this module in a process without torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any


def openvino_missing() -> str:
    """Why OpenVINO cannot be used here (``""`` when it can)."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"the openvino package does not import ({exc}): pip install openvino"
    return ""


def openvino_supported(device: str) -> tuple[bool, str]:
    """A ``supported`` check for an OpenVINO optimization: the CPU device, when the package imports."""
    if device != "cpu":
        return False, f"this plugin compiles for OpenVINO's CPU device; the suite measures on {device!r}"
    missing = openvino_missing()
    return not missing, missing


def convert_via_onnx(model: Any, example: Any, workdir: Path) -> Any:
    """The model as an ``openvino.Model``, converted from the job's shared ONNX export (the one the ``onnx``
    and ``int8`` cells use: exported once per job). Raises :class:`~vidbench.specs.Unsupported`."""
    import openvino as ov

    from vidbench.kit.onnx_tools import export_onnx
    from vidbench.specs import Unsupported

    onnx_file = workdir / "build" / "model.onnx"
    export_onnx(model, example, onnx_file, cache_dir=workdir.parent / ".onnx-export")
    try:
        return ov.convert_model(str(onnx_file))
    except Exception as exc:
        raise Unsupported(f"OpenVINO conversion failed: {str(exc).strip().splitlines()[0]}") from exc


OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
"""An artifact's precision -> OpenVINO's ``INFERENCE_PRECISION_HINT`` for its floating-point layers."""


def ov_config(threads: int, precision: str = "fp32") -> dict[str, Any]:
    """CPU compile settings: a fixed thread count, the latency hint, and the floating-point layers' arithmetic,
    always stated (on a CPU with native bf16 OpenVINO would otherwise run an fp32 model's layers in bf16, which
    the parity gate would see and no row would say). An INT8 artifact's quantized layers run int8 either way."""
    hint = OV_PRECISIONS.get(precision, "f32")
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}


def ov_compile(path: Path, threads: int, precision: str = "fp32", perf_count: bool = False) -> Any:
    """An IR (``.xml`` beside its ``.bin``) compiled for the CPU with :func:`ov_config`; ``perf_count``: with
    the CPU plugin's per-node performance counters on (an operator profile)."""
    import openvino as ov

    config = ov_config(threads, precision) | ({"PERF_COUNT": True} if perf_count else {})
    return ov.Core().compile_model(str(path), "CPU", config)


@functools.cache
def ov_cpu_capabilities() -> list[str]:
    """What OpenVINO's CPU plugin says this CPU can run fast (``FP32``, ``BF16``, ``INT8``, ...)."""
    import openvino as ov

    return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def bf16_missing(capabilities: list[str]) -> str:
    """Why OpenVINO would not run bf16 natively on a CPU with ``capabilities`` (``""`` when it would)."""
    if "BF16" in capabilities:
        return ""
    return (
        f"this CPU has no native bf16 for OpenVINO (its CPU capabilities: {', '.join(capabilities) or 'none'}); "
        "bf16 needs AVX512-BF16 or AMX"
    )


def save_ir(model: Any, xml: Path) -> list[Path]:
    """Save an ``openvino.Model`` as ``xml`` + ``.bin`` (weights kept fp32); both files are the artifact's size."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml, xml.with_suffix(".bin")]


def ov_callable(path: Path, threads: int, precision: str = "fp32") -> Callable[[Any], Any]:
    """A callable clip tensor -> logits tensor over the compiled IR (the conversions are part of the cost)."""
    import numpy as np
    import torch

    compiled = ov_compile(path, threads, precision)
    output = compiled.output(0)

    def run(clip: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.asarray(compiled(array)[output]))

    return run

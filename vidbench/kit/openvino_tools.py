"""OpenVINO for the optimizations that run through it: convert, save as IR, compile for the CPU, run.

No torch at import: :mod:`vidbench.measure.alone` times an IR with this module in a process without torch.
"""

from __future__ import annotations

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


def ov_config(threads: int) -> dict[str, Any]:
    """CPU compile settings: a fixed thread count, the latency hint, and fp32 arithmetic (on a CPU with
    AMX-BF16 OpenVINO would otherwise run fp32 layers in bf16, which the parity gate would see)."""
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def ov_compile(path: Path, threads: int) -> Any:
    """An IR (``.xml`` beside its ``.bin``) compiled for the CPU with :func:`ov_config`."""
    import openvino as ov

    return ov.Core().compile_model(str(path), "CPU", ov_config(threads))


def save_ir(model: Any, xml: Path) -> list[Path]:
    """Save an ``openvino.Model`` as ``xml`` + ``.bin`` (weights kept fp32); both files are the artifact's size."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return [xml, xml.with_suffix(".bin")]


def ov_callable(path: Path, threads: int) -> Callable[[Any], Any]:
    """A callable clip tensor -> logits tensor over the compiled IR (the conversions are part of the cost)."""
    import numpy as np
    import torch

    compiled = ov_compile(path, threads)
    output = compiled.output(0)

    def run(clip: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(np.asarray(compiled(array)[output]))

    return run

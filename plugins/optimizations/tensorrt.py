"""``tensorrt`` (FP16) and ``tensorrt-int8``: torch-tensorrt (the optional ``gpu`` extra).

Both need a CUDA device and the torch_tensorrt package; anywhere else ``supported`` says which one is
missing and the rows are ``unsupported``. Untested here: this machine has no GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.specs import Artifact, OptimizationSpec, Unsupported


def supported(device: str) -> tuple[bool, str]:
    """CUDA and torch_tensorrt, or the reason which is missing."""
    if not device.startswith("cuda"):
        return False, f"TensorRT needs a CUDA device; this suite measures on {device!r}"
    if not torch.cuda.is_available():
        return False, "TensorRT needs CUDA: torch.cuda.is_available() is False on this machine"
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError:
        return False, "torch_tensorrt is not installed (pip install 'vidbench[gpu]')"
    return True, ""


def _compile(
    model: nn.Module,
    example: torch.Tensor,
    workdir: Path,
    precision: torch.dtype,
    calibration: Iterable[torch.Tensor] | None,
) -> Artifact:
    import torch_tensorrt

    if precision == torch.int8:
        if calibration is None:
            raise Unsupported("TensorRT INT8 needs calibration clips")
        raise Unsupported("TensorRT INT8 post-training calibration is not wired to torch-tensorrt's dynamo path yet")
    engine = torch_tensorrt.compile(
        model.eval().cuda(), ir="dynamo", inputs=[example.cuda()], enabled_precisions={precision}
    )
    path = workdir / "model.ts.ep"
    torch_tensorrt.save(engine, str(path), inputs=[example.cuda()])

    @torch.inference_mode()
    def run(clip: torch.Tensor) -> torch.Tensor:
        return engine(clip.cuda()).float().cpu()

    named = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(precision, "fp32")
    return Artifact(run=run, files=[path], notes=f"torch-tensorrt dynamo, {precision}", precision=named)


def prepare_fp16(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    return _compile(model, example, workdir, torch.half, calibration)


def prepare_int8(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    return _compile(model, example, workdir, torch.int8, calibration)


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            "tensorrt", prepare_fp16, supported, "TensorRT FP16 via torch-tensorrt (CUDA only)", lossy=True
        ),
        OptimizationSpec(
            "tensorrt-int8", prepare_int8, supported, "TensorRT INT8 via torch-tensorrt (CUDA only)", lossy=True
        ),
    ]

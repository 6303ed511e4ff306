"""``openvino-bf16``: the ``openvino`` IR compiled with bf16 arithmetic, on a CPU that runs bf16 natively.

On a CPU with AMX or AVX512-BF16, bf16 is what OpenVINO runs an fp32 model in by default; the ``openvino`` row
pins fp32 so that "fp32" means fp32, and this row shows what the default gives. Where the CPU lacks native
bf16 (OpenVINO's CPU capabilities say so) it is ``unsupported`` with that reason, never an emulated bf16.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.kit import bf16_missing, convert_via_onnx, openvino_supported, ov_callable, ov_cpu_capabilities, save_ir
from vidbench.specs import Artifact, OptimizationSpec, Unsupported


def supported(device: str) -> tuple[bool, str]:
    """OpenVINO's CPU device, on a CPU whose capabilities OpenVINO lists as including BF16."""
    ok, why = openvino_supported(device)
    if not ok:
        return ok, why
    missing = bf16_missing(ov_cpu_capabilities())
    return not missing, missing


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """ONNX export -> OpenVINO IR (fp32 weights) -> compiled with ``INFERENCE_PRECISION_HINT bf16``."""
    missing = bf16_missing(ov_cpu_capabilities())
    if missing:
        raise Unsupported(missing)
    xml = workdir / "model.xml"
    files = save_ir(convert_via_onnx(model, example, workdir), xml)
    run = ov_callable(xml, torch.get_num_threads(), "bf16")
    notes = "OpenVINO CPU, bf16 (INFERENCE_PRECISION_HINT bf16; weights stored fp32), latency hint"
    return Artifact(run=run, files=files, notes=notes, engine="openvino", engine_file=xml, precision="bf16")


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="openvino-bf16",
            prepare=prepare,
            supported=supported,
            description="OpenVINO runtime on the CPU in bf16, where the CPU runs bf16 natively (AMX, AVX512-BF16)",
            lossy=True,
        )
    ]

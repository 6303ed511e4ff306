"""``openvino``: the shared ONNX export converted to OpenVINO IR (fp32 weights) and compiled for the CPU."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.kit import convert_via_onnx, openvino_supported, ov_callable, save_ir
from vidbench.specs import Artifact, OptimizationSpec


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """ONNX export -> ``openvino.convert_model`` -> ``model.xml`` + ``model.bin`` -> compiled for the CPU."""
    xml = workdir / "model.xml"
    files = save_ir(convert_via_onnx(model, example, workdir), xml)
    run = ov_callable(xml, torch.get_num_threads())
    notes = "OpenVINO CPU, fp32 (INFERENCE_PRECISION_HINT f32), latency hint"
    return Artifact(run=run, files=files, notes=notes, engine="openvino", engine_file=xml)


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="openvino",
            prepare=prepare,
            supported=openvino_supported,
            description="OpenVINO runtime on the CPU, IR converted from the ONNX export, fp32",
        )
    ]

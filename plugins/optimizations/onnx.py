"""``onnx``: export with ``torch.onnx.export(dynamo=True)`` and run with ONNX Runtime on the CPU."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.kit import export_onnx, ort_callable
from vidbench.specs import Artifact, OptimizationSpec, cpu_only


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """Export to ``model.onnx`` (+ ``model.onnx.data``) and wrap an ORT session as the artifact."""
    path = workdir / "model.onnx"
    files = export_onnx(model, example, path, cache_dir=workdir.parent / ".onnx-export")
    return Artifact(
        run=ort_callable(path, torch.get_num_threads()),
        files=files,
        notes="ONNX Runtime CPU, ORT_ENABLE_ALL",
        engine="onnxruntime",
        engine_file=path,
    )


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="onnx",
            prepare=prepare,
            supported=cpu_only("ONNX Runtime's CPUExecutionProvider"),
            description="ONNX (dynamo exporter) on ONNX Runtime CPU, all graph optimizations",
        )
    ]

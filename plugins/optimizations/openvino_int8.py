"""``openvino-int8``: NNCF post-training quantization of the OpenVINO IR, calibrated on training clips."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidbench import hookimpl
from vidbench.kit import convert_via_onnx, openvino_supported, ov_callable, save_ir
from vidbench.specs import Artifact, OptimizationSpec, Unsupported


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """ONNX export -> OpenVINO model -> ``nncf.quantize`` (MinMax statistics over every calibration clip,
    the default performance preset: symmetric int8 weights and activations) -> IR -> compiled for the CPU."""
    import nncf

    if calibration is None:
        raise Unsupported("NNCF post-training quantization needs calibration clips and none were given")
    clips = [np.ascontiguousarray(c.detach().cpu().numpy(), dtype=np.float32) for c in calibration]
    if not clips:
        raise Unsupported("NNCF post-training quantization needs calibration clips and none were given")
    try:
        quantized = nncf.quantize(
            convert_via_onnx(model, example, workdir), nncf.Dataset(clips), subset_size=len(clips)
        )
    except Unsupported:
        raise
    except Exception as exc:
        raise Unsupported(f"NNCF quantization failed: {str(exc).strip().splitlines()[0]}") from exc
    xml = workdir / "model.int8.xml"
    files = save_ir(quantized, xml)
    run = ov_callable(xml, torch.get_num_threads())
    notes = f"OpenVINO CPU, NNCF post-training INT8 (MinMax, performance preset) on {len(clips)} training clips"
    return Artifact(run=run, files=files, notes=notes, engine="openvino", engine_file=xml)


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="openvino-int8",
            prepare=prepare,
            supported=openvino_supported,
            lossy=True,
            description="OpenVINO runtime on the CPU, NNCF post-training static INT8",
        )
    ]

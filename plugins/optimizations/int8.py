"""``int8``: ONNX Runtime static quantization (QDQ, per-channel int8 weights, uint8 activations),
calibrated on a stated number of training clips, after ``quant_pre_process``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidbench import hookimpl
from vidbench.kit import export_onnx, ort_callable
from vidbench.specs import Artifact, OptimizationSpec, Unsupported, cpu_only


class ClipReader:
    """onnxruntime's CalibrationDataReader over the calibration clips (one batch of 1 at a time)."""

    def __init__(self, clips: Iterable[torch.Tensor], input_name: str) -> None:
        self._clips: Iterator[torch.Tensor] = iter(clips)
        self.input_name = input_name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        clip = next(self._clips, None)
        if clip is None:
            return None
        self.count += 1
        return {self.input_name: np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32)}


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """fp32 export -> quant_pre_process -> quantize_static (QDQ, per-channel, MinMax calibration)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None:
        raise Unsupported("static INT8 needs calibration clips and none were given")
    build = workdir / "build"
    build.mkdir(parents=True, exist_ok=True)
    fp32 = build / "model.onnx"  # the onnx cell's name: the job's shared export serves both
    export_onnx(model, example, fp32, cache_dir=workdir.parent / ".onnx-export")
    # quant_pre_process copies the model to a temp folder without its external data file, so the
    # fp32 graph is first folded into one self-contained file (the tiny and base presets are < 2 GB).
    single = build / "fp32-single.onnx"
    onnx.save(onnx.load(str(fp32)), str(single), save_as_external_data=False)
    pre = build / "pre.onnx"
    quant_pre_process(str(single), str(pre), skip_symbolic_shape=True)
    reader = ClipReader(calibration, "clip")
    out = workdir / "model.int8.onnx"
    try:
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    except Exception as exc:
        raise Unsupported(f"ONNX Runtime static quantization failed: {str(exc).splitlines()[0]}") from exc
    files = sorted(p for p in workdir.iterdir() if p.is_file() and p.name.startswith(out.name))
    notes = f"ORT static INT8, QDQ, per-channel weights, U8 activations, MinMax on {reader.count} training clips"
    run = ort_callable(out, torch.get_num_threads())
    return Artifact(run=run, files=files, notes=notes, engine="onnxruntime", engine_file=out)


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="int8",
            prepare=prepare,
            supported=cpu_only("ONNX Runtime's CPUExecutionProvider (INT8 QDQ)"),
            lossy=True,
            description="ONNX Runtime static INT8 (QDQ, per-channel), calibrated on training clips",
        )
    ]

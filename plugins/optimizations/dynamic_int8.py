"""``dynamic-int8``: PyTorch dynamic quantization of ``nn.Linear`` and ``nn.LSTM`` (int8 weights,
activations quantized on the fly): the cheap win for Linear/LSTM-heavy models such as CNN-LSTM and
TimeSformer. Convolutions stay fp32."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.specs import Artifact, OptimizationSpec, Unsupported, cpu_only

QUANTIZED = (nn.Linear, nn.LSTM)


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """``torch.ao.quantization.quantize_dynamic`` on Linear and LSTM layers; the saved module is the artifact."""
    from torch.ao.quantization import quantize_dynamic

    counts = {cls.__name__: sum(isinstance(m, cls) for m in model.modules()) for cls in QUANTIZED}
    if not any(counts.values()):
        raise Unsupported("dynamic INT8 quantizes nn.Linear / nn.LSTM and this model has none")
    quantized = quantize_dynamic(model.eval(), set(QUANTIZED), dtype=torch.qint8)
    path = workdir / "model.dynamic-int8.pt"
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)
    path.write_bytes(buffer.getvalue())

    @torch.inference_mode()
    def run(clip: torch.Tensor) -> torch.Tensor:
        return quantized(clip)

    layers = ", ".join(f"{n} {c}" for n, c in counts.items() if c)
    notes = f"torch dynamic INT8 on {layers}; convolutions fp32"
    return Artifact(run=run, files=[path], notes=notes, precision="int8")


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="dynamic-int8",
            prepare=prepare,
            supported=cpu_only("torch quantize_dynamic (fbgemm/x86 kernels)"),
            lossy=True,
            description="PyTorch dynamic INT8 of Linear/LSTM layers (quantize_dynamic)",
        )
    ]

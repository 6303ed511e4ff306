"""``amp``: autocast inference, bf16 on the CPU and fp16 on CUDA. It reports its real speed, even
when slower: without AVX512-BF16 or AMX the CPU emulates bf16 and fp32 is faster."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.specs import Artifact, OptimizationSpec


def cpu_bf16_support() -> str:
    """Which native bf16 instructions this CPU has, from /proc/cpuinfo."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return ", ".join(native) if native else "none (bf16 is emulated: expect it slower than fp32)"


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """Keep fp32 weights, run the forward under ``torch.autocast``."""
    device = example.device.type
    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    weights = workdir / "model.pt"
    torch.save(model.state_dict(), weights)
    model.eval()

    @torch.inference_mode()
    def run(clip: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device, dtype=dtype):
            return model(clip).float()

    notes = f"autocast {str(dtype).removeprefix('torch.')} on {device}"
    if device == "cpu":
        notes += f"; native bf16 on this CPU: {cpu_bf16_support()}"
    precision = "fp16" if dtype == torch.float16 else "bf16"
    return Artifact(run=run, files=[weights], notes=notes, precision=precision)


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="amp", prepare=prepare, lossy=True, description="torch.autocast: bf16 on CPU, fp16 on CUDA"
        )
    ]

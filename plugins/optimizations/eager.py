"""``eager``: the model as trained, in inference mode; the baseline every other optimization is checked against."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.specs import Artifact, OptimizationSpec


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """Save the fp32 state dict (its size is the artifact's size) and run the module as is."""
    weights = workdir / "model.pt"
    torch.save(model.state_dict(), weights)
    model.eval()

    @torch.inference_mode()
    def run(clip: torch.Tensor) -> torch.Tensor:
        return model(clip)

    return Artifact(run=run, files=[weights], notes="PyTorch eager, fp32")


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(name="eager", prepare=prepare, baseline=True, description="PyTorch eager fp32 (the baseline)")
    ]

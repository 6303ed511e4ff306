"""``early-exit``: an early-exit network's heads trained jointly (BranchyNet, Teerapittayanon et al. 2016).

The model gives every exit's logits then the final ones when called with ``all_exits=True`` (``r2plus1d``'s
``tiny-exit`` preset: a pooled linear head after stage 2). Each step minimises the final head's cross-entropy
plus ``exit_weight`` times the mean of the exits' (so the trunk learns features an exit can answer from, without
the exits pulling the final head down); validation and every artifact use the final head (a plain forward). The
suite's ``early_exits`` then measures exiting when confident: docs/production-levers.md.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from pydantic import Field

from vidbench import hookimpl
from vidbench.specs import Fitted, TrainerOptions, TrainerSpec, TrainingSession


class EarlyExitOptions(TrainerOptions):
    """Options of ``early-exit``."""

    exit_weight: float = Field(0.5, ge=0)
    """Weight of the exits' mean cross-entropy beside the final head's."""


def _exits(module: torch.nn.Module, clips: torch.Tensor) -> list[torch.Tensor]:
    outputs = module(clips, all_exits=True)
    if not isinstance(outputs, list) or len(outputs) < 2:
        raise ValueError("early-exit: the model has no early exit (a preset with exits, e.g. r2plus1d/tiny-exit)")
    return outputs


def fit(session: TrainingSession) -> Fitted:
    """Train the final head and the exits together, early-stopping on the final head's validation top-1."""
    options: EarlyExitOptions = session.options  # type: ignore[assignment]
    smoothing, weight = session.settings.label_smoothing, options.exit_weight

    def objective(module: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if labels.dim() > 1:
            raise ValueError("early-exit: single-label datasets only (a softmax over the classes)")
        *exits, final = _exits(module, clips)
        loss = F.cross_entropy(final.float(), labels, label_smoothing=smoothing)
        loss = (
            loss
            + weight
            * torch.stack([F.cross_entropy(e.float(), labels, label_smoothing=smoothing) for e in exits]).mean()
        )
        return loss, final, labels

    fitted = session.run_phase(
        "main", session.model, objective, session.loader("train", train=True), val_loader=session.loader("val")
    )
    return replace(fitted, notes={"exit_weight": weight})


@hookimpl
def vidbench_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(
            name="early-exit",
            fit=fit,
            options=EarlyExitOptions,
            description="an early-exit network's exits and final head trained jointly (r2plus1d/tiny-exit)",
        )
    ]

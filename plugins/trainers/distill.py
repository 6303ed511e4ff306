"""``distill``: knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

The student (the job's model) learns from the teacher's softened class probabilities and from the labels:
``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)`` with temperature ``T``. The
teacher is another job of the same suite (``teacher: model/preset``), trained first; it sees exactly the
student's augmented clips. The production use: a fast model learns from a strong one.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from pydantic import Field

from vidbench import hookimpl
from vidbench.specs import Fitted, TrainerOptions, TrainerSpec, TrainingSession


class DistillOptions(TrainerOptions):
    """Options of ``distill``."""

    teacher: str = Field(pattern=r"^[^/\s]+/[^/\s]+$")
    """The teacher's ``model/preset`` in the same suite (trained without a teacher of its own)."""
    temperature: float = Field(4.0, gt=0)
    """Softens both distributions; the soft loss is scaled by its square so its gradients keep their size."""
    alpha: float = Field(0.7, ge=0, le=1)
    """Weight of the soft (teacher) loss; ``1 - alpha`` weighs the labels' cross-entropy."""


def fit(session: TrainingSession) -> Fitted:
    """Train the student on the teacher's soft targets and the labels, early-stopping like ``supervised``."""
    options: DistillOptions = session.options  # type: ignore[assignment]
    teacher = session.teacher()
    temperature, alpha = options.temperature, options.alpha
    smoothing = session.settings.label_smoothing

    def objective(student: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if labels.dim() > 1:
            raise ValueError("distill: single-label datasets only (a softmax over the classes)")
        logits = student(clips)
        with torch.no_grad():
            soft = teacher(clips).float()
        if soft.shape != logits.shape:
            raise ValueError(f"distill: teacher gives {tuple(soft.shape)} logits, the student {tuple(logits.shape)}")
        kd = F.kl_div(
            F.log_softmax(logits.float() / temperature, dim=1),
            F.log_softmax(soft / temperature, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        hard = F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)
        return alpha * temperature**2 * kd + (1 - alpha) * hard, logits, labels

    fitted = session.run_phase(
        "main", session.model, objective, session.loader("train", train=True), val_loader=session.loader("val")
    )
    return replace(fitted, notes={"teacher": options.teacher, "temperature": temperature, "alpha": alpha})


@hookimpl
def vidbench_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(
            name="distill",
            fit=fit,
            options=DistillOptions,
            description="knowledge distillation from a teacher job of the suite (soft targets + labels)",
            teacher=lambda options: options.teacher,
        )
    ]

"""``ssl``: self-supervised pre-training on every training clip, without labels, then supervised fine-tuning.

The pretext is the prediction of motion statistics (after Wang et al., CVPR 2019, "Self-supervised
Spatio-temporal Representation Learning for Videos by Predicting Motion and Appearance Statistics", whose targets
come from optical flow): from the clip alone, each pair of consecutive frames gives where the change is (the
centroid of the absolute frame difference), how far it spreads, and how strong it is. A small head on the model's
pooled features (``embed``) regresses these ``5 x (frames - 1)`` numbers, so the backbone has to track what moves,
where and how fast: the motion that video classes are made of. The head is dropped after pre-training; the
fine-tuning phase is ``supervised``'s, on ``train.label_fraction`` of the labels when set.

Works for any model with ``embed`` (every built-in one). Pre-training keeps its own state under
``phases/pretrain/`` and resumes there after a kill; a finished pre-training is not repeated.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from vidbench import hookimpl
from vidbench.specs import Fitted, TrainerOptions, TrainerSpec, TrainingSession

STATISTICS = 5
"""Per frame pair: centroid x, centroid y, spread x, spread y, log energy of the absolute difference."""


class SSLOptions(TrainerOptions):
    """Options of ``ssl``."""

    pretrain_epochs: int = Field(15, ge=1)
    """Epochs of pre-training over every training clip (labels unused)."""
    pretrain_lr: float | None = Field(None, gt=0)
    """The pre-training lr (unset: the job's own lr)."""
    head_width: int = Field(256, ge=8)
    """Hidden width of the pretext head (dropped after pre-training)."""


def motion_statistics(clips: torch.Tensor) -> torch.Tensor:
    """``B x 5(T-1)`` targets of clips ``B x C x T x H x W``: per consecutive frame pair, the centroid and the
    spread (in [-1, 1] image coordinates) of the absolute frame difference, and its log mean."""
    diff = (clips[:, :, 1:] - clips[:, :, :-1]).abs().mean(1)  # B, T-1, H, W
    height, width = diff.shape[-2:]
    weights = diff / diff.sum((-2, -1), keepdim=True).clamp_min(1e-6)
    ys = torch.linspace(-1, 1, height, device=clips.device)
    xs = torch.linspace(-1, 1, width, device=clips.device)
    along_x, along_y = weights.sum(-2), weights.sum(-1)  # B, T-1, W and B, T-1, H
    cx, cy = (along_x * xs).sum(-1), (along_y * ys).sum(-1)
    sx = ((along_x * (xs - cx.unsqueeze(-1)) ** 2).sum(-1)).clamp_min(0).sqrt()
    sy = ((along_y * (ys - cy.unsqueeze(-1)) ** 2).sum(-1)).clamp_min(0).sqrt()
    energy = diff.mean((-2, -1)).clamp_min(1e-4).log() / 4  # about unit scale, like the coordinates
    return torch.cat([cx, cy, sx, sy, energy], dim=1)


class PretextNet(nn.Module):
    """The backbone's pooled features, then a two-layer head regressing the motion statistics."""

    def __init__(self, backbone: nn.Module, features: int, outputs: int, width: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(features, width), nn.ReLU(inplace=True), nn.Linear(width, outputs))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.embed(clips))


def _pretext_objective(net: nn.Module, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    predicted = net(clips)
    target = motion_statistics(clips.float())
    return F.smooth_l1_loss(predicted.float(), target, beta=0.1), predicted, None


def fit(session: TrainingSession) -> Fitted:
    """Pre-train on motion statistics (all training clips, no labels), then fine-tune on the labels."""
    options: SSLOptions = session.options  # type: ignore[assignment]
    model = session.model
    channels, frames, height, width = session.clip_shape
    with torch.no_grad():
        was_training = model.training
        features = model.eval().embed(torch.zeros(2, channels, frames, height, width)).shape[1]
        model.train(was_training)
    net = PretextNet(model, features, STATISTICS * (frames - 1), options.head_width)
    unlabelled = session.loader("train", train=True, labelled=False)
    overrides = {"until": "epochs", "epochs": options.pretrain_epochs, "early_stop_patience": None,
                 "ema_decay": None, "min_epochs": 0, "schedule": "cosine"}  # fmt: skip
    if options.pretrain_lr is not None:
        overrides["lr"] = options.pretrain_lr
    session.say(f"ssl: pre-training on motion statistics for {options.pretrain_epochs} epochs")
    pretrained = session.run_phase("pretrain", net, _pretext_objective, unlabelled, **overrides)
    session.say("ssl: fine-tuning on the labels")
    tuned = session.run_phase(
        "main", model, None, session.loader("train", train=True), val_loader=session.loader("val")
    )
    notes = {"pretext": "motion statistics", "pretrain_epochs": pretrained.epochs_done,
             "pretrain_s": round(pretrained.train_s, 1)}  # fmt: skip
    return replace(
        tuned,
        train_s=tuned.train_s + pretrained.train_s,
        train_clips=tuned.train_clips + pretrained.train_clips,
        notes=notes,
    )


@hookimpl
def vidbench_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(
            name="ssl",
            fit=fit,
            options=SSLOptions,
            description="self-supervised pre-training (motion statistics), then supervised fine-tuning",
        )
    ]

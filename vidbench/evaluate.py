"""Evaluation shared by every model: logits over a split, accuracy metrics, parity between two outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader


@torch.inference_mode()
def collect_logits(
    predict: Callable[[torch.Tensor], torch.Tensor], loader: DataLoader
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``predict`` over every batch: ``(logits N x K float32, labels N int64)``; skipped clips are absent."""
    logits, labels = [], []
    for batch in loader:
        if batch is None:  # every clip of the batch was skipped as undecodable
            continue
        clips, target = batch
        logits.append(torch.as_tensor(predict(clips)).float().cpu().numpy())
        labels.append(np.asarray(target))
    return np.concatenate(logits), np.concatenate(labels)


@dataclass(frozen=True)
class Accuracy:
    """Top-1, top-5 and mean per-class accuracy, as fractions in [0, 1]."""

    top1: float
    top5: float
    mean_class_acc: float


def accuracy(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    """Accuracy metrics of ``logits`` against integer ``labels``."""
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1)[:, :k]
    top1_hits = topk[:, 0] == labels
    top5_hits = (topk == labels[:, None]).any(axis=1)
    per_class = [top1_hits[labels == c].mean() for c in np.unique(labels)]
    return Accuracy(float(top1_hits.mean()), float(top5_hits.mean()), float(np.mean(per_class)))


@dataclass(frozen=True)
class Parity:
    """How closely an artifact's logits follow eager's on the same clips."""

    agreement_top1: float
    max_abs_logit_diff: float


def parity(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    """Share of clips whose top-1 class is the same, and the largest absolute logit difference."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {candidate.shape}")
    agree = float((reference.argmax(1) == candidate.argmax(1)).mean())
    return Parity(agree, float(np.abs(reference - candidate).max()))

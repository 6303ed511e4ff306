"""What a trained video model learned: per-class accuracy, confusion, calibration, temporal probes,
embedding retrieval and error analysis. Pure functions of logits, labels and features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confusion_matrix(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``K x K`` counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, logits.argmax(axis=1)), 1)
    return matrix


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Top-1 accuracy of each class (NaN for a class with no clips)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the clip-weighted gap between confidence and accuracy over ``bins`` confidence bins."""
    probs = softmax(logits)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro mAP over the classes that have at least one positive (multi-label ``targets`` in {0, 1})."""
    from sklearn.metrics import average_precision_score

    present = targets.sum(axis=0) > 0
    return float(average_precision_score(targets[:, present], scores[:, present], average="macro"))


def most_confused_pairs(confusion: np.ndarray, class_names: Sequence[str], top: int = 10) -> list[dict]:
    """The largest off-diagonal cells: true class, predicted class, count, share of the true class."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None)[:top]
    pairs = []
    for flat in order:
        true, pred = np.unravel_index(flat, off.shape)
        if off[true, pred] == 0:
            break
        total = confusion[true].sum()
        pairs.append(
            {
                "true": class_names[true],
                "predicted": class_names[pred],
                "count": int(off[true, pred]),
                "share": float(off[true, pred] / total),
            }
        )
    return pairs


def worst_clips(
    logits: np.ndarray, labels: np.ndarray, ids: Sequence[str], class_names: Sequence[str], top: int = 20
) -> list[dict]:
    """The clips whose true class got the lowest probability, with what the model predicted instead."""
    probs = softmax(logits)
    true_prob = probs[np.arange(len(labels)), labels]
    order = np.argsort(true_prob)[:top]
    return [
        {
            "clip": str(ids[i]),
            "true": class_names[labels[i]],
            "predicted": class_names[int(probs[i].argmax())],
            "p_true": float(true_prob[i]),
            "p_predicted": float(probs[i].max()),
        }
        for i in order
    ]


def knn_retrieval(features: np.ndarray, labels: np.ndarray, k: int = 5) -> dict[str, float]:
    """Leave-one-out cosine retrieval on embeddings: kNN top-1 (majority of k) and recall@k (a
    neighbour of the same class among the k nearest)."""
    normed = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = normed @ normed.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(k, len(labels) - 1)
    neighbours = np.argsort(-similarity, axis=1)[:, :k]
    neighbour_labels = labels[neighbours]
    votes = np.array([np.bincount(row, minlength=labels.max() + 1).argmax() for row in neighbour_labels])
    return {
        "knn_top1": float((votes == labels).mean()),
        f"recall_at_{k}": float((neighbour_labels == labels[:, None]).any(axis=1).mean()),
    }


def _reverse(clip: torch.Tensor) -> torch.Tensor:
    return clip.flip(2)


def _shuffle(clip: torch.Tensor) -> torch.Tensor:
    frames = clip.shape[2]
    generator = torch.Generator().manual_seed(frames)
    order = torch.randperm(frames, generator=generator)
    if frames > 1 and torch.equal(order, torch.arange(frames)):
        order = order.roll(1)
    return clip[:, :, order]


def _frame_drop(clip: torch.Tensor) -> torch.Tensor:
    # Every other frame dropped, each kept frame shown twice: same T, half the motion information.
    return clip[:, :, ::2].repeat_interleave(2, dim=2)[:, :, : clip.shape[2]]


def _frozen(clip: torch.Tensor) -> torch.Tensor:
    middle = clip.shape[2] // 2
    return clip[:, :, middle : middle + 1].expand_as(clip).contiguous()


TEMPORAL_PROBES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "reversed": _reverse,
    "shuffled": _shuffle,
    "frame_drop": _frame_drop,
    "frozen": _frozen,
}
"""Clip edits that remove what time carries; a model that uses order loses accuracy on them."""

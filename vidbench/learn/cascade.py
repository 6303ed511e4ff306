"""A cascade's decisions from two models' logits: which clips the fast model answers, which it escalates to the
slow one, and the threshold that decides, chosen on the validation split only.

The fast model answers a clip when its softmax confidence (the top class's probability) is at least the
threshold; below it the slow model runs and its answer counts. Every function here takes the arrays of one
split, so the threshold (:func:`choose_threshold`) can only ever see the validation split's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from vidbench.stats import wilson_interval

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(i * 0.02, 2) for i in range(51))
"""Confidences tried when the suite names none: 0 (the fast model answers all) to 1 (nearly all escalate)."""


def confidence(logits: np.ndarray) -> np.ndarray:
    """Each row's softmax probability of its top class (``[clips, classes]`` logits -> ``[clips]``)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    return probabilities.max(axis=1) / probabilities.sum(axis=1)


@dataclass(frozen=True)
class CascadePoint:
    """The cascade at one threshold on one split: its top-1 and how many clips it escalated."""

    threshold: float
    top1: float
    escalations: int
    clips: int

    @property
    def escalated(self) -> float:
        """The fraction of clips the slow model ran on."""
        return self.escalations / self.clips if self.clips else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "escalated": self.escalated}


def escalate(fast_logits: np.ndarray, threshold: float) -> np.ndarray:
    """Which clips go to the slow model: the fast model's confidence below ``threshold``."""
    return confidence(fast_logits) < threshold


def cascade_point(fast: np.ndarray, slow: np.ndarray, labels: np.ndarray, threshold: float) -> CascadePoint:
    """The cascade's top-1 and escalations at ``threshold`` on one split's logits and labels."""
    up = escalate(fast, threshold)
    predictions = np.where(up, slow.argmax(axis=1), fast.argmax(axis=1))
    top1 = float((predictions == labels).mean()) if len(labels) else 0.0
    return CascadePoint(float(threshold), top1, int(up.sum()), len(labels))


def choose_threshold(
    fast: np.ndarray,
    slow: np.ndarray,
    labels: np.ndarray,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    max_drop: float | None = None,
) -> tuple[CascadePoint, list[CascadePoint], tuple[float, float]]:
    """On the validation split: the cheapest threshold (fewest escalations, then the lowest) whose top-1 is at
    least the floor, every threshold's point, and the slow model's 95 % interval. The floor is the bottom of that
    interval (a tie with the slow model), or with ``max_drop`` the slow model's top-1 less that many points.
    When no threshold reaches it, the most accurate point."""
    slow_top1 = float((slow.argmax(axis=1) == labels).mean()) if len(labels) else 0.0
    interval = wilson_interval(slow_top1, len(labels))
    floor = interval[0] if max_drop is None else slow_top1 - max_drop / 100
    points = [cascade_point(fast, slow, labels, t) for t in sorted(set(thresholds))]
    inside = [p for p in points if p.top1 >= floor - 1e-12]
    chosen = min(inside, key=lambda p: (p.escalations, p.threshold)) if inside else max(points, key=lambda p: p.top1)
    return chosen, points, interval

"""Top-1 agreement between a model and its quantized artifact, for plugins that fall back to fp32 layers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any


def top1(run: Callable[[Any], Any], clips: Iterable[Any]) -> list[int]:
    """The top-1 class ``run`` gives each batch-1 clip (``run`` returns a ``1 x classes`` tensor)."""
    return [int(run(clip).argmax(dim=1)[0]) for clip in clips]


def agreement(predicted: Sequence[int], reference: Sequence[int]) -> float:
    """The share of clips whose top-1 in ``predicted`` is the one in ``reference``."""
    hits = [p == r for p, r in zip(predicted, reference, strict=True)]
    return sum(hits) / len(hits)


def named(names: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, and how many more there are (for a row's notes)."""
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")

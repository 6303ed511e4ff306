"""Statistics every layer shares: the uncertainty of a rate measured on a finite test split."""

from __future__ import annotations

import math


def wilson_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % for ``z`` = 1.96) of a proportion measured as ``rate`` on ``n`` trials.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 % or 100 %; on a test split of
    240 clips, 90 % top-1 is 85.6-93.2 %."""
    if n <= 0:
        return 0.0, 1.0
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)

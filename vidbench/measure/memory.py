"""Memory of the measuring process."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

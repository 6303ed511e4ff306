"""Where a cell's time goes: each phase's wall time, printed to the cell's log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psutil


@contextlib.contextmanager
def logged_phase(what: str) -> Iterator[None]:
    """Print ``what in N.N s`` to the cell's log when the block ends."""
    start = time.perf_counter()
    yield
    print(f"{what} in {time.perf_counter() - start:.1f} s", flush=True)


def process_age_s() -> float:
    """Seconds since this process started (a forked cell's whole wall time so far, imports included)."""
    return time.time() - psutil.Process().create_time()

"""Imports of third-party modules that warn about themselves at import time, with exactly that warning off."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fvcore_jit_warning_off() -> Iterator[None]:
    """Around an import that reaches ``fvcore.nn`` (fvcore itself, pytorchvideo's models): fvcore scripts its
    focal loss with ``torch.jit.script`` at import, which torch 2.14 deprecates with a FutureWarning in every
    process that imports it. Not ours to fix and not about our code; only that message is silenced, only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        yield

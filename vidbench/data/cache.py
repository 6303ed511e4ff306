"""An on-disk cache of decoded clips (uint8, before transforms), for repeated epochs and cells.

A key is the file's fingerprint plus everything that decides the decoded pixels: the frame indices,
upright and square-pixel flags. Entries are written to a temp name and renamed, so a reader never
sees half a file, and two workers writing the same entry both succeed. An entry that does not load (empty
or cut short by a crash before its data reached the disk) is a miss, and is removed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidbench.hashing import file_sha256


def file_fingerprint(path: str | Path, chunk: int = 1 << 16) -> str:
    """SHA-256 of a file's size and its first and last 64 KiB: cheap, and changes when the file does."""
    return file_sha256(path, sample_bytes=chunk)[:24]


class ClipCache:
    """``root/<2 hex>/<key>.npy`` files of decoded frames."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(fingerprint: str, indices: Sequence[int], upright: bool, square_pixels: bool, policy: str = "exact") -> str:
        """The entry of these frames of this file, decoded under ``policy`` (``DecodePolicy.key``; an inexact or
        scaled one decodes other pixels)."""
        text = f"{fingerprint}|{','.join(map(str, indices))}|{int(upright)}{int(square_pixels)}"
        text += "" if policy == "exact" else f"|{policy}"  # the keys of exact entries hold
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            frames = np.load(path)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError, EOFError):  # a corrupt entry: decode again, and write it anew
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return frames

    def put(self, key: str, frames: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(frames, dtype=np.uint8))
            fh.flush()
            os.fsync(fh.fileno())  # renamed only once on disk: a crash leaves no empty entry behind
        os.replace(tmp, path)

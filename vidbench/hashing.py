"""Content digests shared by every layer: one file hasher and one hasher of JSON-able data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

BLOCK = 1 << 20


def file_sha256(path: str | Path, sample_bytes: int | None = None) -> str:
    """SHA-256 (hex) of a file's bytes.

    With ``sample_bytes`` only the file's size, its first and its last ``sample_bytes`` bytes are hashed:
    cheap for large videos, and still changes when the file does (the decoded-clip cache keys on it).
    """
    path = Path(path)
    if sample_bytes is None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(BLOCK), b""):
                digest.update(block)
        return digest.hexdigest()
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(sample_bytes))
        if size > sample_bytes:
            fh.seek(max(size - sample_bytes, sample_bytes))
            digest.update(fh.read(sample_bytes))
    return digest.hexdigest()


def json_digest(data: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``data`` as sorted-key JSON (keys, cache names)."""
    payload = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:length]

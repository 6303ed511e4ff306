"""Decode + transform throughput per backend and decode policy, with pytorchvideo's ``EncodedVideo`` as the
reference, timed in interleaved passes over the same files.

Each backend reads the same files with the same clip spec (T frames spread uniformly over the whole
video) and the same ``transforms.v2`` pipeline; time is split into decode (open, probe, seek, decode,
rotate) and transform, plus ``default_collate`` per batch.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from vidbench.data.decode import DecodeError, DecodePolicy, open_video, policy_from_label, resolve_backend
from vidbench.data.sampling import uniform_indices
from vidbench.data.transforms import clip_transform, frames_to_clip, resize_size

REFERENCE = "pytorchvideo"


@dataclass(frozen=True)
class DecodeBench:
    """One backend's figures over the bench files."""

    backend: str
    clips: int
    failed: int
    decode_s: float
    transform_s: float
    collate_s: float
    frames: int

    @property
    def total_s(self) -> float:
        return self.decode_s + self.transform_s + self.collate_s

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.total_s if self.total_s else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.clips_per_s * self.frames


def _ours(backend: str, policy: DecodePolicy | None = None) -> Callable[[Path, int], np.ndarray]:
    def decode(path: Path, frames: int) -> np.ndarray:
        reader = open_video(path, backend, policy=policy)  # type: ignore[arg-type]
        return reader.read(uniform_indices(reader.meta.frames, frames))

    return decode


def _pytorchvideo(path: Path, frames: int) -> np.ndarray:
    """The usual pytorchvideo recipe: decode the whole clip span, then subsample T frames."""
    from pytorchvideo.data.encoded_video import EncodedVideo

    video = EncodedVideo.from_path(str(path), decoder="pyav", decode_audio=False)
    data = video.get_clip(0, float(video.duration))["video"]
    video.close()
    if data is None:
        raise DecodeError(f"{path}: pytorchvideo decoded no frames")
    index = torch.linspace(0, data.shape[1] - 1, frames).long()
    return data[:, index].permute(1, 2, 3, 0).clamp(0, 255).to(torch.uint8).numpy()


DEFAULT_POLICIES = ("sequential", "seek", "nonref", "keyframes", "exact+scaled", "keyframes+scaled")
"""The decode policies ``vidbench data bench`` times beside each backend's exact reader."""


def decoders(
    policies: Sequence[str] = DEFAULT_POLICIES, threads: int = 1, crop: int = 112
) -> dict[str, Callable[[Path, int], np.ndarray]]:
    """Every backend's exact reader (decord where it is installed), then each decode policy (its label; scaled
    to the short side ``crop``'s eval transforms resize to), all with ``threads`` decoder threads, and the
    reference last."""
    ours = ("decord", "pyav") if resolve_backend("auto") == "decord" else ("pyav",)
    found = {name: _ours(name, DecodePolicy(threads=threads)) for name in ours}
    for label in policies:
        policy = policy_from_label(label, threads, resize_size(crop))
        found[f"pyav {policy.label}"] = _ours("pyav", policy)
    return {**found, REFERENCE: _pytorchvideo}


@dataclass
class _Tally:
    """One backend's running totals."""

    decode_s: float = 0.0
    transform_s: float = 0.0
    collate_s: float = 0.0
    clips: int = 0
    failed: int = 0


def _one_pass(
    decode: Callable[[Path, int], np.ndarray], files: Sequence[Path], frames: int, transform: Any, batch_size: int,
    tally: _Tally,
) -> None:  # fmt: skip
    """Decode and transform every file once, collating every ``batch_size`` clips, into ``tally``."""
    batch = []
    for path in files:
        t0 = time.perf_counter()
        try:
            raw = decode(path, frames)
        except Exception:
            tally.failed += 1
            continue
        t1 = time.perf_counter()
        batch.append((frames_to_clip(raw, transform), 0))
        t2 = time.perf_counter()
        tally.decode_s += t1 - t0
        tally.transform_s += t2 - t1
        tally.clips += 1
        if len(batch) == batch_size:
            t3 = time.perf_counter()
            default_collate(batch)
            tally.collate_s += time.perf_counter() - t3
            batch = []


def bench_backends(
    chosen: dict[str, Callable[[Path, int], np.ndarray]],
    files: Sequence[Path],
    frames: int,
    crop: int,
    batch_size: int = 8,
    rounds: int = 1,
) -> list[DecodeBench]:
    """Every backend over every file, ``rounds`` times, in interleaved passes (A B C ... A B C ...), so a slow
    spell of the machine hits every backend alike; after one untimed warm-up file each."""
    transform = clip_transform(crop, train=False)
    for decode in chosen.values():
        with contextlib.suppress(Exception):  # a file this backend cannot read counts as failed when timed
            decode(files[0], frames)
    tallies = {name: _Tally() for name in chosen}
    for _ in range(rounds):
        for name, decode in chosen.items():
            _one_pass(decode, files, frames, transform, batch_size, tallies[name])
    return [
        DecodeBench(name, t.clips, t.failed, t.decode_s, t.transform_s, t.collate_s, frames)
        for name, t in tallies.items()
    ]

"""A ``Dataset`` of clips decoded from files, and the ``DataLoader`` that serves it.

A file that cannot be decoded is skipped: the sample comes back as ``None``, the collate function
drops it, and the file and the reason are appended to ``skip_log`` (one CSV line each).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from vidbench.data.cache import ClipCache, file_fingerprint
from vidbench.data.decode import Backend, DecodeError, VideoMeta, open_video, probe
from vidbench.data.sampling import PAD, ClipSpec, is_short, sample_indices
from vidbench.data.transforms import Augment, LabelAwareFlip, clip_transform, frames_to_clip
from vidbench.specs import VideoSample

Item = tuple[torch.Tensor, int | torch.Tensor]


@dataclass
class StageTimes:
    """Seconds spent per stage by this process (decode includes probing and cache reads)."""

    decode_s: float = 0.0
    transform_s: float = 0.0
    clips: int = 0
    short_videos: int = 0


class ClipDataset(Dataset):
    """Decodes one clip per sample: sampled indices -> frames -> (flip) -> transforms -> ``C x T x H x W``."""

    def __init__(
        self,
        samples: Sequence[VideoSample],
        clip: ClipSpec,
        crop: int,
        train: bool,
        backend: Backend = "decord",
        augment: Augment | None = None,
        mirror: Mapping[int, int | None] | None = None,
        square_pixels: bool = False,
        cache: ClipCache | None = None,
        skip_log: Path | None = None,
        multilabel_classes: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.clip = clip
        self.train = train
        self.backend = backend
        self.square_pixels = square_pixels
        self.transform = clip_transform(crop, train, augment)
        augment = augment or Augment()
        self.flip = LabelAwareFlip(mirror or {}) if train and augment.flip else None
        self.cache = cache
        self.skip_log = skip_log
        self.multilabel_classes = multilabel_classes
        self.times = StageTimes()
        self._meta: dict[str, VideoMeta] = {}
        self._fingerprints: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def meta(self, path: Path) -> VideoMeta:
        """The file's metadata, probed once per process."""
        key = str(path)
        if key not in self._meta:
            self._meta[key] = probe(path)
        return self._meta[key]

    def decode(self, sample: VideoSample, rng: np.random.Generator | None) -> np.ndarray:
        """The clip's frames as ``T x H x W x 3`` uint8 (pad positions black)."""
        meta = self.meta(sample.path)
        indices = sample_indices(meta.frames, self.clip, rng, meta.timestamps_s if meta.vfr else None)
        self.times.short_videos += is_short(meta.frames, self.clip)
        key = None
        # Only deterministic clips are cached: random training windows would fill the disk with
        # entries that are rarely read again.
        if self.cache is not None and rng is None:
            path = str(sample.path)
            if path not in self._fingerprints:
                self._fingerprints[path] = file_fingerprint(path)
            key = ClipCache.key(self._fingerprints[path], indices, True, self.square_pixels)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        real = [i for i in indices if i != PAD]
        reader = open_video(sample.path, self.backend, square_pixels=self.square_pixels, meta=meta)
        frames = reader.read(real)
        if len(real) < len(indices):
            full = np.zeros((len(indices), *frames.shape[1:]), dtype=np.uint8)
            full[[i for i, idx in enumerate(indices) if idx != PAD]] = frames
            frames = full
        if key is not None:
            self.cache.put(key, frames)
        return frames

    def __getitem__(self, index: int) -> Item | None:
        sample = self.samples[index]
        # torch's RNG is seeded per worker and per epoch by the DataLoader, so draws repeat per run.
        rng = np.random.default_rng(int(torch.randint(2**31, ()))) if self.train else None
        start = time.perf_counter()
        try:
            frames = self.decode(sample, rng)
        except (DecodeError, IndexError) as exc:
            self.record_skip(sample.path, str(exc))
            return None
        label = sample.label
        if self.flip is not None and rng is not None and self.multilabel_classes is None:
            frames, label = self.flip(frames, label, rng)
        decoded = time.perf_counter()
        clip = frames_to_clip(frames, self.transform)
        self.times.decode_s += decoded - start
        self.times.transform_s += time.perf_counter() - decoded
        self.times.clips += 1
        if self.multilabel_classes is not None:
            target = torch.zeros(self.multilabel_classes)
            target[list(label)] = 1.0
            return clip, target
        return clip, label

    def record_skip(self, path: Path, reason: str) -> None:
        """Warn on stderr and append ``path,reason`` to the skip log."""
        import sys

        print(f"warning: skipped {path}: {reason}", file=sys.stderr, flush=True)
        if self.skip_log is None:
            return
        line = io.StringIO()
        csv.writer(line).writerow([str(path), reason.replace("\n", " ")])
        self.skip_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.skip_log, "a") as fh:  # one short append per line: atomic across workers
            fh.write(line.getvalue())


def collate_skipping_none(batch: list[Item | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``default_collate`` over the samples that decoded; ``None`` when none did."""
    kept = [item for item in batch if item is not None]
    return default_collate(kept) if kept else None


def make_loader(
    dataset: ClipDataset, batch_size: int, workers: int, shuffle: bool, seed: int = 0, sampler: Sampler | None = None
) -> DataLoader:
    """A ``DataLoader`` with persistent workers and pinned memory on GPU; shuffling is seeded. A ``sampler``
    (a rank's shard under DDP) replaces the loader's own order."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        collate_fn=collate_skipping_none,
        drop_last=False,
    )


def read_skip_log(path: Path) -> list[tuple[str, str]]:
    """Unique ``(path, reason)`` pairs of a skip log, first reason per file."""
    if not path.exists():
        return []
    seen: dict[str, str] = {}
    with open(path, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) == 2 and row[0] not in seen and row != ["path", "reason"]:
                seen[row[0]] = row[1]
    return list(seen.items())

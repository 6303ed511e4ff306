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
from vidbench.data.decode import (
    Backend,
    DecodeError,
    DecodeLimits,
    DecodePolicy,
    VideoMeta,
    VideoReader,
    open_video,
    probe,
    reader_backend,
)
from vidbench.data.sampling import PAD, ClipSpec, is_short, sample_indices, temporal_views
from vidbench.data.transforms import (
    Augment,
    LabelAwareFlip,
    as_video,
    clip_transform,
    frames_to_clip,
    normalized,
    three_crops,
)
from vidbench.specs import VideoSample

Item = tuple[torch.Tensor, int | torch.Tensor]


@dataclass
class StageTimes:
    """Seconds spent per stage by this process (decode includes probing and cache reads)."""

    decode_s: float = 0.0
    transform_s: float = 0.0
    clips: int = 0
    short_videos: int = 0


def _padded(frames: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """``frames`` (one per non-``PAD`` index, in order) with a black frame at each ``PAD`` position."""
    if PAD not in indices:
        return frames
    out = np.zeros((len(indices), *frames.shape[1:]), dtype=np.uint8)
    out[[n for n, i in enumerate(indices) if i != PAD]] = frames
    return out


class ClipDataset(Dataset):
    """Decodes one clip per sample: sampled indices -> frames -> (flip) -> transforms -> ``C x T x H x W``."""

    def __init__(
        self,
        samples: Sequence[VideoSample],
        clip: ClipSpec,
        crop: int,
        train: bool,
        backend: Backend = "decord",
        policy: DecodePolicy | None = None,
        augment: Augment | None = None,
        mirror: Mapping[int, int | None] | None = None,
        square_pixels: bool = False,
        cache: ClipCache | None = None,
        skip_log: Path | None = None,
        multilabel_classes: int | None = None,
        whole_video_mb: float = 0.0,
    ) -> None:
        self.samples = list(samples)
        self.clip = clip
        self.train = train
        self.backend = backend
        self.policy = policy or DecodePolicy()
        self.square_pixels = square_pixels
        self.transform = clip_transform(crop, train, augment)
        augment = augment or Augment()
        self.flip = LabelAwareFlip(mirror or {}) if train and augment.flip else None
        self.cache = cache
        self.skip_log = skip_log
        self.multilabel_classes = multilabel_classes
        self.whole_video_mb = whole_video_mb
        self.times = StageTimes()
        self.limits: DecodeLimits | None = None
        """Limits checked from each file's metadata before decoding it (the server sets them)."""
        self._meta: dict[str, VideoMeta] = {}
        self._fingerprints: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def meta(self, path: Path) -> VideoMeta:
        """The file's metadata, probed once per process."""
        key = str(path)
        if key not in self._meta:
            self._meta[key] = probe(path, self.limits)
        return self._meta[key]

    def decode(self, sample: VideoSample, rng: np.random.Generator | None) -> np.ndarray:
        """The clip's frames as ``T x H x W x 3`` uint8 (pad positions black)."""
        meta = self.meta(sample.path)
        indices = sample_indices(meta.frames, self.clip, rng, meta.timestamps_s if meta.vfr else None)
        self.times.short_videos += is_short(meta.frames, self.clip)
        if self.cache is None:
            return self._read(sample, meta, indices)
        # A deterministic clip is cached as such. Random training draws would fill the disk with entries
        # rarely read again, so a short video is cached whole instead and each draw indexes it.
        whole = rng is not None and self.fits_whole(meta)
        if rng is not None and not whole:
            return self._read(sample, meta, indices)
        wanted = list(range(meta.frames)) if whole else indices
        key = ClipCache.key(self.fingerprint(sample.path), wanted, True, self.square_pixels, self.policy.key)
        frames = self.cache.get(key)
        if frames is None:
            try:
                frames = self._read(sample, meta, wanted)
            except (DecodeError, IndexError):
                if not whole:
                    raise
                return self._read(sample, meta, indices)  # the container over-counted its frames
            self.cache.put(key, frames)
        return _padded(frames[[i for i in indices if i != PAD]], indices) if whole else frames

    def fits_whole(self, meta: VideoMeta) -> bool:
        """Whether the whole decoded video (an upper bound: square pixels may widen it) is within
        ``whole_video_mb``."""
        width, height = meta.display_size
        return meta.frames * max(width, height) ** 2 * 3 <= self.whole_video_mb * 2**20

    def fingerprint(self, path: Path) -> str:
        key = str(path)
        if key not in self._fingerprints:
            self._fingerprints[key] = file_fingerprint(key)
        return self._fingerprints[key]

    def _read(self, sample: VideoSample, meta: VideoMeta, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` from the file; PAD positions come back black."""
        real = [i for i in indices if i != PAD]
        try:
            reader = self._open(sample.path, self.backend, meta)
            return _padded(reader.read(real), indices)
        except DecodeError:
            if reader_backend(self.backend, self.policy) == "pyav":
                raise
        # decord cannot open or seek some files FFmpeg reads (or over-trusts a container's frame count):
        # PyAV reads them, forward when seeking fails
        reader = self._open(sample.path, "pyav", meta)
        return _padded(reader.read(real), indices)

    def _open(self, path: Path, backend: Backend, meta: VideoMeta) -> VideoReader:
        return open_video(path, backend, square_pixels=self.square_pixels, meta=meta, policy=self.policy)

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


class MultiViewClipDataset(ClipDataset):
    """Evaluation clips as several views per video (mmaction2's clips x crops): ``temporal`` windows spread over
    the video (:func:`~vidbench.data.sampling.temporal_views`) times ``spatial`` crops (1: the centre crop after
    the usual resize; 3: left / centre / right, or top / centre / bottom, after resizing the short side to the
    crop). An item is ``V x C x T x H x W`` with ``V = temporal x spatial``."""

    def __init__(
        self, samples: Sequence[VideoSample], clip: ClipSpec, crop: int, temporal: int, spatial: int, **kwargs: object
    ) -> None:
        super().__init__(samples, clip, crop, False, **kwargs)  # type: ignore[arg-type]
        if temporal < 1 or spatial not in (1, 3):
            raise ValueError(f"views: temporal >= 1 and spatial 1 or 3, got {temporal} x {spatial}")
        self.crop, self.temporal, self.spatial = crop, temporal, spatial

    def __getitem__(self, index: int) -> Item | None:
        sample = self.samples[index]
        try:
            meta = self.meta(sample.path)
            windows = temporal_views(meta.frames, self.clip, self.temporal)
            decoded = [self._read(sample, meta, indices) for indices in windows]
        except (DecodeError, IndexError) as exc:
            self.record_skip(sample.path, str(exc))
            return None
        views = []
        for frames in decoded:
            if self.spatial == 1:
                views.append(frames_to_clip(frames, self.transform))
                continue
            for crop in three_crops(as_video(frames), self.crop):
                views.append(normalized(crop).permute(1, 0, 2, 3).contiguous())
        return torch.stack(views), sample.label


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

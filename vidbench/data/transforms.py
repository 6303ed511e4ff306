"""Clip transforms built on ``torchvision.transforms.v2``; a clip leaves as ``C x T x H x W`` float.

Every frame of a clip gets the same random parameters (v2 treats a ``tv_tensors.Video`` as one
sample). The horizontal flip is not here: it can change the label, so :class:`LabelAwareFlip` does it
with the dataset's mirror map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

# Kinetics-400 statistics, as torchvision's video models use them.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class Augment:
    """Training augmentation; the defaults are mild, for small synthetic clips."""

    random_resized_crop: tuple[float, float] | None = None
    """Area scale range of a random resized crop; ``None`` keeps resize + random crop."""
    color_jitter: float = 0.0
    flip: bool = False


def resize_size(crop: int) -> int:
    """Short side to resize to before a ``crop`` crop (the usual 128 -> 112 ratio)."""
    return max(crop, round(crop * 128 / 112))


def _to_float() -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(KINETICS_MEAN, KINETICS_STD)]


def clip_transform(crop: int, train: bool, augment: Augment | None = None) -> v2.Transform:
    """Resize the short side and crop (random when training, centre otherwise), scale, normalize."""
    augment = augment or Augment()
    if not train:
        return v2.Compose([v2.Resize(resize_size(crop), antialias=True), v2.CenterCrop(crop), *_to_float()])
    steps: list[v2.Transform] = []
    if augment.random_resized_crop:
        steps.append(v2.RandomResizedCrop(crop, scale=augment.random_resized_crop, antialias=True))
    else:
        steps += [v2.Resize(resize_size(crop), antialias=True), v2.RandomCrop(crop)]
    if augment.color_jitter:
        j = augment.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 4, 0.5)))
    return v2.Compose([*steps, *_to_float()])


def three_crops(frames: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """Left/centre/right (or top/centre/bottom) ``crop`` crops of ``T x C x H x W`` after resizing
    the short side to ``crop`` (the usual multi-view test)."""
    resized = F.resize(frames, crop, antialias=True)
    height, width = resized.shape[-2:]
    if width >= height:
        offsets = [(0, 0), (0, (width - crop) // 2), (0, width - crop)]
    else:
        offsets = [(0, 0), ((height - crop) // 2, 0), (height - crop, 0)]
    return [F.crop(resized, top, left, crop, crop) for top, left in offsets]


def normalized(frames: torch.Tensor) -> torch.Tensor:
    """``T x C x H x W`` uint8 frames scaled to [0, 1] and normalised like every clip (plain tensor)."""
    return v2.Compose(_to_float())(frames).as_subclass(torch.Tensor)


def as_video(frames: np.ndarray) -> tv_tensors.Video:
    """``T x H x W x 3`` uint8 frames as a ``T x C x H x W`` video tensor."""
    return tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))


def frames_to_clip(frames: np.ndarray, transform: v2.Transform) -> torch.Tensor:
    """``T x H x W x 3`` uint8 frames -> transformed ``C x T x H x W`` float clip."""
    out = transform(as_video(frames))
    return out.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


@dataclass(frozen=True)
class LabelAwareFlip:
    """Mirror a clip and map its label through the dataset's mirror map.

    ``mirror[label]`` is the label of the mirrored clip: the same label for a mirror-invariant class,
    the partner for a pair that swaps (``slide-right`` <-> ``slide-left``), and ``None`` for a class
    whose mirror image is no class at all; such clips are never flipped. Labels missing from the
    map are taken as invariant.
    """

    mirror: Mapping[int, int | None]
    p: float = 0.5

    def __call__(self, frames: np.ndarray, label: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        target = self.mirror.get(label, label)
        if target is None or rng.random() >= self.p:
            return frames, label
        return np.ascontiguousarray(frames[:, :, ::-1]), target

"""C3D (Tran et al., ICCV 2015): eight 3x3x3 convolutions, five poolings, two 4096-d layers.

The ``classic`` preset is VMZ's: 16 x 112 x 112 input and no padding in the last pooling, so fc6
sees 512 x 1 x 3 x 3 = 4608 features (64.9M parameters with 400 classes, as VMZ's model zoo lists).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vidbench import hookimpl
from vidbench.specs import InputSpec, ModelSpec, Preset, PublishedFigures


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True))


class C3D(nn.Module):
    """conv1 pool1(1x2x2) conv2 pool2 conv3a/b pool3 conv4a/b pool4 conv5a/b pool5, fc6 fc7 fc8."""

    def __init__(
        self, num_classes: int, widths: Sequence[int], hidden: int, frames: int, crop: int, dropout: float = 0.5
    ) -> None:
        super().__init__()
        w1, w2, w3, w4, w5 = widths
        self.features = nn.Sequential(
            _conv(3, w1),
            nn.MaxPool3d((1, 2, 2)),
            _conv(w1, w2),
            nn.MaxPool3d(2),
            _conv(w2, w3),
            _conv(w3, w3),
            nn.MaxPool3d(2),
            _conv(w3, w4),
            _conv(w4, w4),
            nn.MaxPool3d(2),
            _conv(w4, w5),
            _conv(w5, w5),
            nn.MaxPool3d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, 3, frames, crop, crop)).numel()
        self.fc6 = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.fc8 = nn.Linear(hidden, num_classes)
        self.embed_dim = hidden

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        """fc7 activations, the classic C3D video descriptor."""
        return self.fc7(self.fc6(self.features(clip).flatten(1)))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.embed(clip))


PRESETS = {
    "tiny": Preset(
        name="tiny",
        input=InputSpec(frames=16, crop=32),
        arch={"widths": (16, 32, 64, 64, 64), "hidden": 128},
        description="C3D layout at 1/4 width, 128-d fc layers",
    ),
    "classic": Preset(
        name="classic",
        input=InputSpec(frames=16, crop=112),
        arch={"widths": (64, 128, 256, 512, 512), "hidden": 4096},
        published=PublishedFigures(
            source="facebookresearch VMZ tutorials/model_zoo.md (C3D, trained from scratch)",
            params=64_900_000,
            gflops=38.5,
            top1=66.6,
            input="16 x 112 x 112",
        ),
    ),
}


def build(preset: Preset, num_classes: int) -> C3D:
    """A C3D for ``preset``; fc6's input size follows the preset's clip size."""
    return C3D(num_classes, frames=preset.input.frames, crop=preset.input.crop, **preset.arch)


@hookimpl
def vidbench_models() -> list[ModelSpec]:
    return [ModelSpec(name="c3d", presets=PRESETS, build=build, head="fc8", description="C3D (Tran et al., 2015)")]

"""Small building blocks that several model plugins share (plain layers, no architecture)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_bn_relu_2d(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 conv (no bias), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def small_cnn(widths: Sequence[int], in_channels: int = 3) -> nn.Sequential:
    """A plain per-frame 2D CNN: one strided 3x3 conv per width, then global average pooling.

    Output: ``N x widths[-1]`` for ``N x in_channels x H x W`` images.
    """
    layers, channels = [], in_channels
    for width in widths:
        layers.append(conv_bn_relu_2d(channels, width, 2))
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))

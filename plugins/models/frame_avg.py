"""``frame_avg``: a 2D CNN applied to each frame, features averaged over time.

The order-blind control: it sees the same frames whatever their order, so on a dataset whose
classes differ only by the direction of time it cannot beat chance between partner classes.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from vidbench import hookimpl
from vidbench.kit import small_cnn
from vidbench.specs import InputSpec, ModelSpec, Preset, Recipe


class FrameAverage(nn.Module):
    """Per-frame 2D features, averaged over T, then a linear head."""

    def __init__(self, backbone: nn.Module, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim
        self.fc = nn.Linear(embed_dim, num_classes)

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        """Mean over time of the per-frame features, ``B x embed_dim``."""
        b, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
        return self.backbone(frames).reshape(b, t, -1).mean(dim=1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(clip))


TINY_RECIPE = Recipe(
    {"lr": 0.005, "lr_batch": 32, "warmup_epochs": 1, "epochs": 40, "until": "plateau", "schedule": "plateau",
     "early_stop_patience": 4, "min_epochs": 10, "ema_decay": 0.99, "augment": {"flip": True}},
    "the order-blind control trains as r2plus1d tiny does (its tuned recipe, set on synthetic-motion small, "
    "2026-12-02): a model that cannot see order is capped at 50% top-1 there by design",
)  # fmt: skip

PRESETS = {
    "tiny": Preset(
        name="tiny",
        input=InputSpec(frames=8, crop=32),
        arch={"widths": (16, 32, 64, 128)},
        description="four strided 3x3 conv layers per frame, the width of r2plus1d tiny",
        recipe=TINY_RECIPE,
    ),
    "r18": Preset(
        name="r18",
        input=InputSpec(frames=16, crop=112),
        arch={"timm": "resnet18"},
        description="timm resnet18 per frame (random init; no download)",
    ),
}


def build(preset: Preset, num_classes: int) -> FrameAverage:
    """A frame-average network for ``preset``: a timm backbone by name, or the small CNN by widths."""
    if "timm" in preset.arch:
        backbone = timm.create_model(preset.arch["timm"], pretrained=False, num_classes=0)
        return FrameAverage(backbone, backbone.num_features, num_classes)
    widths = preset.arch["widths"]
    return FrameAverage(small_cnn(widths), widths[-1], num_classes)


@hookimpl
def vidbench_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="frame_avg",
            presets=PRESETS,
            build=build,
            description="2D CNN per frame, features averaged over time (the order-blind control)",
        )
    ]

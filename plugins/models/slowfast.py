"""SlowFast R50 (Feichtenhofer et al., ICCV 2019) from pytorchvideo's ``create_slowfast``.

The network takes one ``B x C x T x H x W`` clip like every vidbench model: the fast pathway sees all
T frames, the slow pathway T / alpha of them, picked as pytorchvideo's ``PackPathway`` does. Module
names are pytorchvideo's, so its state dicts load unchanged.
"""

from __future__ import annotations

import torch

from vidbench import hookimpl
from vidbench.kit import fvcore_jit_warning_off
from vidbench.specs import InputSpec, ModelSpec, Preset, PublishedFigures

with fvcore_jit_warning_off():  # pytorchvideo's models import fvcore.nn
    from pytorchvideo.models.net import Net
    from pytorchvideo.models.slowfast import create_slowfast

ALPHA = 4  # fast / slow frame-rate ratio of the 8x8 R50 configuration


def pathways(clip: torch.Tensor, alpha: int = ALPHA) -> list[torch.Tensor]:
    """``[slow, fast]``: the slow pathway takes T / alpha evenly spaced frames."""
    frames = clip.shape[2]
    index = torch.linspace(0, frames - 1, frames // alpha).long().to(clip.device)
    return [torch.index_select(clip, 2, index), clip]


class SlowFast(Net):
    """pytorchvideo's SlowFast ``Net`` taking a single clip, with ``embed`` (the pooled 2304-d features)."""

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        x = pathways(clip)
        for block in self.blocks[:-1]:
            x = block(x)
        return x.flatten(1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(pathways(clip))


PRESETS = {
    "r50": Preset(
        name="r50",
        input=InputSpec(frames=32, crop=256, stride=2),
        published=PublishedFigures(
            source="PyTorchVideo model zoo (docs/source/model_zoo.md), SlowFast R50 8x8",
            params=34_570_000,
            gflops=65.71,
            top1=76.94,
            input="slow 8 / fast 32 frames x 256 x 256 (the 256 test crop; training crop is 224)",
        ),
        description="SlowFast 8x8 R50: the clip's 32 frames feed the fast pathway, every 4th the slow one",
    )
}


def build(preset: Preset, num_classes: int) -> SlowFast:
    """A SlowFast R50 whose head pools over exactly the preset's T x crop x crop input."""
    t, crop = preset.input.frames, preset.input.crop
    net = create_slowfast(
        model_num_class=num_classes,
        model_depth=50,
        head_pool_kernel_sizes=((t // ALPHA, crop // 32, crop // 32), (t, crop // 32, crop // 32)),
    )
    net.__class__ = SlowFast
    return net


@hookimpl
def vidbench_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="slowfast",
            presets=PRESETS,
            build=build,
            head="blocks.6.proj",
            onnx_exportable="not verified: no tiny preset, and the full-size export was not run on this CPU",
            description="SlowFast R50 8x8 (Feichtenhofer et al., 2019), pytorchvideo builder",
        )
    ]

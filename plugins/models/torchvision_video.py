"""Video models built by torchvision's builders: S3D, MViT v2-S, Swin3D-T, R3D-18 and MC3-18.

Each network is torchvision's own, built by its builder with no weights, and given an ``embed``
method (the pooled features before the classifier); module names are torchvision's, so a torchvision
state dict loads with ``strict=True`` and gives identical logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import video as tvv
from torchvision.models.video.mvit import _unsqueeze

from vidbench import hookimpl
from vidbench.specs import InputSpec, ModelSpec, Preset, PublishedFigures


class S3D(tvv.S3D):
    """torchvision S3D; the 1x1x1 conv classifier is linear, so it commutes with the final mean."""

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.features(clip)).mean(dim=(2, 3, 4))


class MViT(tvv.MViT):
    """torchvision MViT; the class token after the final norm is the embedding."""

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        x = _unsqueeze(clip, 5, 2)[0]
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = self.pos_encoding(x)
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for block in self.blocks:
            x, thw = block(x, thw)
        return self.norm(x)[:, 0]


class Swin3D(tvv.SwinTransformer3d):
    """torchvision Swin3D; the global average of the final feature map is the embedding."""

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.features(self.pos_drop(self.patch_embed(clip))))
        return torch.flatten(self.avgpool(x.permute(0, 4, 1, 2, 3)), 1)


class VideoResNet(tvv.VideoResNet):
    """torchvision VideoResNet (R3D, MC3)."""

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(clip)))))
        return self.avgpool(x).flatten(1)


def _tv(source: str, params: int, gflops: float, top1: float, input_text: str) -> PublishedFigures:
    return PublishedFigures(
        source=f"torchvision {source} meta", params=params, gflops=gflops, top1=top1, input=input_text
    )


# name -> (builder, subclass, presets). The published GFLOPs are torchvision's, counted at the
# preset's input; S3D's and Swin3D-T's inputs are the ones their weight transforms use.
UNVERIFIED = "not verified: no tiny preset, and the full-size export was not run on this CPU"
HEADS = {"s3d": "classifier", "mvit_v2_s": "head", "swin3d_t": "head", "r3d": "fc", "mc3": "fc"}
MODELS: dict[str, tuple[Callable[..., nn.Module], type[nn.Module], dict[str, Preset]]] = {
    "s3d": (
        tvv.s3d,
        S3D,
        {
            "default": Preset(
                "default",
                InputSpec(frames=16, crop=224),
                published=_tv("S3D_Weights.KINETICS400_V1", 8_320_048, 17.979, 68.368, "16 x 224 x 224"),
            )
        },
    ),
    "mvit_v2_s": (
        tvv.mvit_v2_s,
        MViT,
        {
            "default": Preset(
                "default",
                InputSpec(frames=16, crop=224),
                published=_tv("MViT_V2_S_Weights.KINETICS400_V1", 34_537_744, 64.224, 80.757, "16 x 224 x 224"),
            )
        },
    ),
    "swin3d_t": (
        tvv.swin3d_t,
        Swin3D,
        {
            "default": Preset(
                "default",
                InputSpec(frames=16, crop=224),
                published=_tv("Swin3D_T_Weights.KINETICS400_V1", 28_158_070, 43.882, 77.715, "16 x 224 x 224"),
            )
        },
    ),
    "r3d": (
        tvv.r3d_18,
        VideoResNet,
        {
            "r18": Preset(
                "r18",
                InputSpec(frames=16, crop=112),
                published=_tv("R3D_18_Weights.KINETICS400_V1", 33_371_472, 40.697, 63.2, "16 x 112 x 112"),
            )
        },
    ),
    "mc3": (
        tvv.mc3_18,
        VideoResNet,
        {
            "r18": Preset(
                "r18",
                InputSpec(frames=16, crop=112),
                published=_tv("MC3_18_Weights.KINETICS400_V1", 11_695_440, 43.343, 63.96, "16 x 112 x 112"),
            )
        },
    ),
}


def _builder(name: str) -> Callable[[Preset, int], nn.Module]:
    factory, cls, _ = MODELS[name]

    def build(preset: Preset, num_classes: int) -> nn.Module:
        model = factory(weights=None, num_classes=num_classes)
        model.__class__ = cls  # same modules and keys as torchvision's, plus embed()
        return model

    return build


@hookimpl
def vidbench_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            name=name,
            presets=presets,
            build=_builder(name),
            head=HEADS[name],
            onnx_exportable=UNVERIFIED,
            description=f"torchvision {factory.__name__}",
        )
        for name, (factory, _, presets) in MODELS.items()
    ]

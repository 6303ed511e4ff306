"""Model complexity: parameters and fvcore GFLOPs per clip (an artifact's size on disk is ``Artifact.size_bytes``)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from vidbench.kit import fvcore_jit_warning_off


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def _attention_flops(inputs: list, outputs: list) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: Q K^T and A V, one multiply-add each."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = 1
    for size in q[:-2]:
        batch *= size
    n, d, m, dv = q[-2], q[-1], k[-2], v[-1]
    return batch * n * m * (d + dv)


def gflops_per_clip(model: nn.Module, clip: torch.Tensor) -> float:
    """fvcore FLOPs of one forward pass on one clip, in GFLOPs.

    fvcore counts one fused multiply-add as one FLOP, the convention of the published video-model
    figures. ``clip`` must have batch size 1 and the suite's real ``T x H x W``.
    """
    with fvcore_jit_warning_off():
        from fvcore.nn import FlopCountAnalysis

    if clip.shape[0] != 1:
        raise ValueError("count FLOPs on a batch of one clip")
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model.eval(), clip)
    analysis.set_op_handle("aten::scaled_dot_product_attention", _attention_flops)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        return analysis.total() / 1e9

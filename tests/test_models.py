"""Model plugins: shapes, embeddings, and R(2+1)D r18 against torchvision's r2plus1d_18."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.video import r2plus1d_18

from vidbench.measure.complexity import count_params, gflops_per_clip
from vidbench.plugins import load_plugins

REGISTRY = load_plugins()


@pytest.mark.parametrize("name", ["r2plus1d", "frame_avg"])
def test_tiny_forward_backward_and_embed(name: str) -> None:
    spec = REGISTRY.model(name)
    model = spec.build(spec.presets["tiny"], num_classes=7)
    clip = torch.randn(2, 3, 8, 32, 32, requires_grad=False)
    logits = model(clip)
    assert logits.shape == (2, 7)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    features = model.embed(clip)
    assert features.shape == (2, model.embed_dim)
    assert torch.allclose(model.fc(features), model(clip), atol=1e-5)


def test_r2plus1d_r18_equals_torchvision() -> None:
    spec = REGISTRY.model("r2plus1d")
    preset = spec.presets["r18"]
    ours = spec.build(preset, num_classes=400).eval()
    reference = r2plus1d_18(num_classes=400).eval()
    assert count_params(ours) == count_params(reference) == preset.published.params == 31_505_325
    ours.load_state_dict(reference.state_dict(), strict=True)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.inference_mode():
        assert torch.equal(ours(clip), reference(clip))


def test_r18_gflops_match_published_within_5_percent() -> None:
    spec = REGISTRY.model("r2plus1d")
    preset = spec.presets["r18"]
    model = spec.build(preset, num_classes=400)
    clip = torch.randn(1, 3, preset.input.frames, preset.input.crop, preset.input.crop)
    assert gflops_per_clip(model, clip) == pytest.approx(preset.published.gflops, rel=0.05)


def test_frame_avg_is_blind_to_frame_order() -> None:
    spec = REGISTRY.model("frame_avg")
    model = spec.build(spec.presets["tiny"], num_classes=5).eval()
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(clip), model(clip.flip(2)), atol=1e-5)


def test_timesformer_attention_is_scaled_dot_product_attention() -> None:
    """TimeSformer's attention, written as plain matmuls for the CPU's small sequences, is exactly SDPA's."""
    from vidbench_plugins.models.timesformer import Attention

    torch.manual_seed(0)
    attention = Attention(dim=96, heads=4).eval()
    tokens = torch.randn(6, 16, 96)
    b, n, d = tokens.shape
    q, k, v = attention.qkv(tokens).reshape(b, n, 3, 4, d // 4).permute(2, 0, 3, 1, 4).unbind(0)
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    reference = attention.proj(fused.transpose(1, 2).reshape(b, n, d))
    with torch.no_grad():
        assert torch.allclose(attention(tokens), reference, atol=1e-5)

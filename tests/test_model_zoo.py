"""Every architecture plugin: published figures, torchvision equivalence, training step, embeddings,
ONNX parity, variable-length CNN-LSTM, pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import video as tvv

from vidbench.learn.evaluate import parity
from vidbench.learn.weights import WeightsError, load_pretrained
from vidbench.measure.complexity import count_params, gflops_per_clip
from vidbench.plugins import load_plugins

REGISTRY = load_plugins()
BUILTIN = [
    "r2plus1d",
    "timesformer",
    "cnn_lstm",
    "x3d",
    "frame_avg",
    "slowfast",
    "c3d",
    "s3d",
    "mvit_v2_s",
    "swin3d_t",
    "r3d",
    "mc3",
]
PUBLISHED = [
    (name, preset)
    for name in BUILTIN
    for preset, spec in REGISTRY.model(name).presets.items()
    if spec.published is not None
]


def _clip(preset, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, 3, preset.input.frames, preset.input.crop, preset.input.crop)


def test_the_published_list_covers_the_issue() -> None:
    names = {f"{n}/{p}" for n, p in PUBLISHED}
    for wanted in (
        "r2plus1d/r18",
        "r2plus1d/r34",
        "timesformer/base",
        "x3d/xs",
        "x3d/s",
        "x3d/m",
        "slowfast/r50",
        "mvit_v2_s/default",
        "swin3d_t/default",
        "s3d/default",
        "c3d/classic",
    ):
        assert wanted in names


@pytest.mark.parametrize(("name", "preset_name"), PUBLISHED, ids=[f"{n}-{p}" for n, p in PUBLISHED])
def test_params_within_1_percent_and_gflops_within_5_percent_of_published(name: str, preset_name: str) -> None:
    spec = REGISTRY.model(name)
    preset = spec.presets[preset_name]
    published = preset.published
    assert published.source and published.input
    model = spec.build(preset, published.num_classes)
    assert count_params(model) == pytest.approx(published.params, rel=0.01)
    if published.gflops is not None:
        assert gflops_per_clip(model, _clip(preset)) == pytest.approx(published.gflops, rel=0.05)


TORCHVISION = [
    ("r2plus1d", "r18", tvv.r2plus1d_18, (8, 56)),
    ("r3d", "r18", tvv.r3d_18, (8, 56)),
    ("mc3", "r18", tvv.mc3_18, (8, 56)),
    ("s3d", "default", tvv.s3d, (16, 224)),
    ("swin3d_t", "default", tvv.swin3d_t, (8, 112)),
    ("mvit_v2_s", "default", tvv.mvit_v2_s, (16, 224)),
]


@pytest.mark.parametrize(("name", "preset", "factory", "size"), TORCHVISION, ids=[t[0] for t in TORCHVISION])
def test_torchvision_state_dicts_load_strict_and_give_identical_logits(name, preset, factory, size) -> None:
    spec = REGISTRY.model(name)
    ours = spec.build(spec.presets[preset], 400).eval()
    reference = factory(weights=None, num_classes=400).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    clip = torch.randn(1, 3, size[0], size[1], size[1])
    with torch.inference_mode():
        assert torch.equal(ours(clip), reference(clip))


def _smallest_preset(name: str):
    presets = REGISTRY.model(name).presets
    return presets.get("tiny") or next(iter(presets.values()))


@pytest.mark.parametrize("name", BUILTIN)
def test_forward_backward_and_embed(name: str) -> None:
    spec = REGISTRY.model(name)
    preset = _smallest_preset(name)
    model = spec.build(preset, num_classes=5)
    batch = 2 if "tiny" in spec.presets else 1
    clip = _clip(preset, batch)
    logits = model(clip)
    assert logits.shape == (batch, 5)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:3]) and any(float(g.abs().sum()) > 0 for g in grads)
    model.eval()
    with torch.inference_mode():
        features = model.embed(clip)
    assert features.ndim == 2 and features.shape[0] == batch and features.shape[1] >= 8


TINY = [n for n in BUILTIN if "tiny" in REGISTRY.model(n).presets]


@pytest.mark.parametrize("name", TINY)
def test_onnx_export_matches_eager(name: str, tmp_path: Path) -> None:
    spec = REGISTRY.model(name)
    assert spec.onnx_exportable is True
    preset = spec.presets["tiny"]
    model = spec.build(preset, 20).eval()
    clip = _clip(preset, 3)
    artifact = REGISTRY.optimization("onnx").prepare(model, clip[:2], None, tmp_path)
    with torch.inference_mode():
        reference = model(clip).numpy()
    match = parity(reference, artifact(clip).numpy())
    assert match.agreement_top1 == 1.0 and match.max_abs_logit_diff <= 1e-3


def test_cnn_lstm_padded_masked_clip_equals_the_clip_alone() -> None:
    spec = REGISTRY.model("cnn_lstm")
    model = spec.build(spec.presets["tiny"], 7).eval()
    torch.manual_seed(1)
    short = torch.randn(1, 3, 5, 32, 32)
    padded = torch.cat([short, torch.randn(1, 3, 3, 32, 32)], dim=2)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    other = torch.randn(1, 3, 8, 32, 32)
    with torch.inference_mode():
        alone = model(short)
        batch = model(torch.cat([padded, other]), torch.cat([mask, torch.ones(1, 8, dtype=torch.bool)]))
        assert torch.allclose(batch[0:1], alone, atol=1e-5)
        assert torch.allclose(batch[1:2], model(other), atol=1e-5)
        assert not torch.allclose(model(padded), alone, atol=1e-3), "without the mask the padding counts"


def test_pretrained_weights_load_from_a_local_file(tmp_path: Path) -> None:
    spec = REGISTRY.model("r2plus1d")
    preset = spec.presets["tiny"]
    source = spec.build(preset, 400).eval()
    path = tmp_path / "k400.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    same = spec.build(preset, 400).eval()
    assert load_pretrained(same, path, spec.head) == []
    clip = _clip(preset)
    with torch.inference_mode():
        assert torch.equal(same(clip), source(clip))
    finetune = spec.build(preset, 20)
    assert load_pretrained(finetune, path, spec.head) == ["fc.weight", "fc.bias"]
    assert torch.equal(finetune.stem[0].weight, source.stem[0].weight)
    broken = dict(source.state_dict())
    broken["stem.0.weight"] = torch.zeros(3, 3, 1, 7, 7)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match=r"shape mismatch at 'stem\.0\.weight'"):
        load_pretrained(spec.build(preset, 400), tmp_path / "broken.pt", spec.head)
    bigger = spec.build(spec.presets["r18"], 400)
    with pytest.raises(WeightsError, match=r"model key '.*' is missing from the file"):
        load_pretrained(bigger, path, spec.head)
    with pytest.raises(WeightsError, match="not found"):
        load_pretrained(same, tmp_path / "absent.pt", spec.head)
    x3d = REGISTRY.model("x3d")
    with pytest.raises(WeightsError, match="is not in the model"):
        load_pretrained(x3d.build(x3d.presets["tiny"], 400), path, x3d.head)

"""Optimization plugins on a tiny real model: the artifact runs, agrees with eager, and has a real size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidbench.evaluate import parity
from vidbench.plugins import load_plugins

REGISTRY = load_plugins()


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    spec = REGISTRY.model("r2plus1d")
    return spec.build(spec.presets["tiny"], num_classes=20).eval()


@pytest.mark.parametrize("name", ["eager", "onnx"])
def test_artifact_matches_eager_and_has_a_size(name: str, tmp_path: Path) -> None:
    model = _tiny_model()
    example = torch.randn(2, 3, 8, 32, 32)
    artifact = REGISTRY.optimization(name).prepare(model, example, None, tmp_path)
    clips = torch.randn(5, 3, 8, 32, 32)
    with torch.inference_mode():
        reference = model(clips).numpy()
    out = np.asarray(artifact(clips))
    match = parity(reference, out)
    assert match.agreement_top1 == 1.0
    assert match.max_abs_logit_diff <= 1e-3
    assert np.asarray(artifact(clips[:1])).shape == (1, 20)
    assert artifact.size_bytes == sum(f.stat().st_size for f in tmp_path.iterdir())
    assert artifact.size_bytes > 4 * sum(p.numel() for p in model.parameters()) * 0.9


def test_onnx_size_counts_the_external_data_file(tmp_path: Path) -> None:
    artifact = REGISTRY.optimization("onnx").prepare(_tiny_model(), torch.randn(2, 3, 8, 32, 32), None, tmp_path)
    names = {f.name for f in artifact.files}
    assert "model.onnx" in names and "model.onnx.data" in names
    data = tmp_path / "model.onnx.data"
    assert data.stat().st_size > (tmp_path / "model.onnx").stat().st_size
    assert artifact.size_bytes == data.stat().st_size + (tmp_path / "model.onnx").stat().st_size

"""Optimization plugins on a tiny real model: the artifact runs, agrees with eager, and has a real size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vidbench.learn.evaluate import parity
from vidbench.measure.dispatch import dispatched
from vidbench.measure.env import cpu_features
from vidbench.plugins import load_plugins

REGISTRY = load_plugins()


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    spec = REGISTRY.model("r2plus1d")
    return spec.build(spec.presets["tiny"], num_classes=20).eval()


def _calibration() -> list[torch.Tensor]:
    torch.manual_seed(1)
    return [torch.randn(1, 3, 8, 32, 32) for _ in range(4)]


@pytest.mark.parametrize("name", ["eager", "onnx", "compile", "openvino"])
def test_artifact_matches_eager_and_has_a_size(name: str, tmp_path: Path) -> None:
    model = _tiny_model()
    example = torch.randn(2, 3, 8, 32, 32)
    artifact = REGISTRY.optimization(name).prepare(model, example, iter(_calibration()), tmp_path)
    clips = torch.randn(5, 3, 8, 32, 32)
    with torch.inference_mode():
        reference = model(clips).numpy()
    out = np.asarray(artifact(clips))
    match = parity(reference, out)
    assert match.agreement_top1 == 1.0
    assert match.max_abs_logit_diff <= 1e-3
    assert np.asarray(artifact(clips[:1])).shape == (1, 20)
    assert artifact.size_bytes == sum(f.stat().st_size for f in tmp_path.iterdir() if f.is_file())
    assert artifact.size_bytes > 4 * sum(p.numel() for p in model.parameters()) * 0.9


def test_onnx_size_counts_the_external_data_file(tmp_path: Path) -> None:
    artifact = REGISTRY.optimization("onnx").prepare(_tiny_model(), torch.randn(2, 3, 8, 32, 32), None, tmp_path)
    names = {f.name for f in artifact.files}
    assert "model.onnx" in names and "model.onnx.data" in names
    data = tmp_path / "model.onnx.data"
    assert data.stat().st_size > (tmp_path / "model.onnx").stat().st_size
    assert artifact.size_bytes == data.stat().st_size + (tmp_path / "model.onnx").stat().st_size


def test_onnx_and_int8_cells_share_one_export_per_weights(tmp_path: Path) -> None:
    """The onnx and int8 cells of a job start from the same fp32 export: it is made once, in the job's
    ``.onnx-export`` folder, and copied; other weights make another export."""
    job = tmp_path / "job"
    example = torch.randn(2, 3, 8, 32, 32)
    REGISTRY.optimization("onnx").prepare(_tiny_model(), example, None, job / "onnx")
    REGISTRY.optimization("int8").prepare(_tiny_model(), example, iter(_calibration()), job / "int8")
    exports = [p for p in (job / ".onnx-export").iterdir() if not p.name.startswith(".")]
    assert len(exports) == 1
    for name in ("model.onnx", "model.onnx.data"):
        assert (job / "onnx" / name).read_bytes() == (job / "int8" / "build" / name).read_bytes()
    other = _tiny_model()
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    REGISTRY.optimization("onnx").prepare(other, example, None, job / "onnx-other")
    assert len([p for p in (job / ".onnx-export").iterdir() if not p.name.startswith(".")]) == 2


@pytest.mark.parametrize(
    ("name", "model_name"),
    [("int8", "r2plus1d"), ("openvino-int8", "r2plus1d"), ("dynamic-int8", "cnn_lstm"), ("amp", "r2plus1d")],
)
def test_lossy_artifacts_run_close_to_eager_and_are_smaller_or_equal(
    name: str, model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain quantized artifact (no node kept in fp32: the agreement target is set to 0 here)."""
    for module in ("int8", "openvino_int8"):
        monkeypatch.setattr(f"vidbench_plugins.optimizations.{module}.TARGET_AGREEMENT", 0.0)
    spec = REGISTRY.model(model_name)
    torch.manual_seed(0)
    model = spec.build(spec.presets["tiny"], num_classes=20).eval()
    optimization = REGISTRY.optimization(name)
    assert optimization.lossy
    artifact = optimization.prepare(model, torch.randn(2, 3, 8, 32, 32), iter(_calibration()), tmp_path)
    clips = torch.randn(6, 3, 8, 32, 32)
    with torch.inference_mode():
        reference = model(clips).numpy()
    out = np.asarray(artifact(clips), dtype=np.float32)
    assert out.shape == reference.shape and np.isfinite(out).all()
    match = parity(reference, out)
    assert match.max_abs_logit_diff < 0.5 * np.abs(reference).max() + 1e-3
    fp32_bytes = 4 * sum(p.numel() for p in model.parameters())
    assert 0 < artifact.size_bytes <= fp32_bytes * 1.1
    assert artifact.precision == ("bf16" if name == "amp" else "int8")
    if name in ("int8", "openvino-int8"):
        assert artifact.size_bytes < fp32_bytes / 3
        assert "4 training clips" in artifact.notes
        assert not [f for f in artifact.files if f.parent != tmp_path], "only the int8 model counts"
    if name == "openvino-int8":
        assert {f.suffix for f in artifact.files} == {".xml", ".bin"} and artifact.engine == "openvino"
        # what OpenVINO dispatched: some compute layers in an 8-bit type, on kernels of this CPU's ISA
        said = dispatched(artifact.engine, artifact.engine_file, 1, artifact.precision)
        assert re.search(r"compute layers run .*\b[iu]8 x\d", said), said
        assert ("avx512" in said) == ("avx512f" in cpu_features()) and "kernels" in said, said


def _untrained_timesformer() -> torch.nn.Module:
    torch.manual_seed(0)
    spec = REGISTRY.model("timesformer")
    return spec.build(spec.presets["tiny"], num_classes=20).eval()


def test_int8_sensitivity_ranks_real_nodes_of_the_graph(tmp_path: Path) -> None:
    import onnx
    from vidbench_plugins.optimizations.int8 import sensitive_nodes

    REGISTRY.optimization("int8").prepare(
        _untrained_timesformer(), torch.randn(2, 3, 8, 32, 32), iter(_calibration()), tmp_path
    )
    pre, qdq = tmp_path / "build" / "pre.onnx", tmp_path / "model.int8.onnx"
    order = sensitive_nodes(pre, qdq, _calibration()[:2], tmp_path / "build")
    names = {node.name for node in onnx.load(str(pre), load_external_data=False).graph.node}
    assert len(order) > 10 and len(set(order)) == len(order) and set(order) <= names


class OutlierModel(torch.nn.Module):
    """Logits from 63 small hidden features beside one huge unused one: per-tensor INT8 of the hidden layer rounds
    the small ones away, so every clip's top-1 changes unless that layer stays in floating point."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pool = torch.nn.AvgPool3d((4, 8, 8))
        self.fc1 = torch.nn.Linear(96, 64)
        self.fc2 = torch.nn.Linear(64, 20)
        with torch.no_grad():
            self.fc1.weight[0].mul_(2000.0)
            self.fc1.bias[0] = 1000.0
            self.fc2.weight[:, 0] = 0.0

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(self.pool(clip).flatten(1))))


def _outlier_case(name: str, tmp_path: Path) -> tuple[object, float]:
    """The ``name`` artifact of :class:`OutlierModel` and its top-1 agreement with it on its calibration clips."""
    model = OutlierModel().eval()
    torch.manual_seed(1)
    calibration = [torch.randn(1, 3, 8, 32, 32) for _ in range(16)]
    artifact = REGISTRY.optimization(name).prepare(model, torch.randn(2, 3, 8, 32, 32), iter(calibration), tmp_path)
    clips = torch.cat(calibration)
    with torch.inference_mode():
        reference = model(clips).numpy()
    return artifact, parity(reference, np.asarray(artifact(clips))).agreement_top1


def test_int8_keeps_the_sensitive_nodes_in_fp32_until_the_calibration_clips_agree(tmp_path: Path) -> None:
    artifact, agreement = _outlier_case("int8", tmp_path)
    notes = artifact.notes
    assert "all-INT8 agreed with fp32 on 0.0% of them" in notes and "most sensitive nodes stay fp32" in notes
    assert "node_linear" in notes and "MB all-INT8" in notes, notes
    kept_mb, all_int8_mb = (float(x) for x in re.findall(r"([\d.]+) MB", notes))
    assert kept_mb > all_int8_mb and agreement >= 0.98


def test_openvino_int8_runs_accuracy_control_when_the_clips_disagree(tmp_path: Path) -> None:
    artifact, agreement = _outlier_case("openvino-int8", tmp_path)
    assert "agreed with fp32 on 0.0% of them, so NNCF accuracy control" in artifact.notes
    assert re.search(r"kept [1-9]\d* operations fp32 \(node_linear", artifact.notes), artifact.notes
    assert agreement >= 0.98


def test_dynamic_int8_says_why_it_does_not_apply(tmp_path: Path) -> None:
    from vidbench.specs import Unsupported

    conv_only = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3), torch.nn.Flatten())
    with pytest.raises(Unsupported, match=r"nn\.Linear / nn\.LSTM"):
        REGISTRY.optimization("dynamic-int8").prepare(conv_only, torch.randn(1, 3, 4, 8, 8), None, tmp_path)


def test_openvino_says_why_it_does_not_apply_off_the_cpu() -> None:
    for name in ("openvino", "openvino-int8"):
        assert REGISTRY.optimization(name).supported("cpu") == (True, "")
        ok, reason = REGISTRY.optimization(name).supported("cuda")
        assert not ok and "CPU" in reason


def test_tensorrt_is_unsupported_without_cuda() -> None:
    for name in ("tensorrt", "tensorrt-int8"):
        ok, reason = REGISTRY.optimization(name).supported("cpu")
        assert not ok and "CUDA" in reason


def test_openvino_int8_keeps_whole_operation_types_fp32_by_sensitivity(tmp_path: Path) -> None:
    """The last fallback (after accuracy control passed an IR that still disagrees once compiled)."""
    from vidbench_plugins.optimizations.openvino_int8 import types_kept_fp32

    model = OutlierModel().eval()
    torch.manual_seed(1)
    calibration = [torch.randn(1, 3, 8, 32, 32) for _ in range(16)]
    with torch.inference_mode():
        reference = [int(model(clip).argmax()) for clip in calibration]
    clips = [clip.numpy() for clip in calibration]
    files, run, kept, agreed = types_kept_fp32(model, torch.randn(2, 3, 8, 32, 32), tmp_path, clips, reference)
    assert kept == ["MatMul"] and agreed >= 0.98
    assert [f.name for f in files] == ["model.int8.xml", "model.int8.bin"] and all(f.exists() for f in files)
    assert [int(np.argmax(run(clip))) for clip in calibration] == reference


def test_openvino_bf16_runs_where_the_cpu_has_bf16_and_says_why_not_elsewhere(tmp_path: Path) -> None:
    """The reason names the CPU's capabilities where bf16 is missing (forced here with a capability list
    without it); where OpenVINO lists BF16 (AVX512-BF16, AMX), the artifact runs bf16, says so, and stays close
    to eager; elsewhere its ``supported`` and ``prepare`` both say why not."""
    from vidbench.kit import bf16_missing, ov_cpu_capabilities
    from vidbench.specs import Unsupported

    assert bf16_missing(["FP32", "BF16", "INT8"]) == ""
    reason = bf16_missing(["FP32", "INT8", "BIN"])
    assert "no native bf16" in reason and "FP32, INT8, BIN" in reason
    optimization = REGISTRY.optimization("openvino-bf16")
    assert optimization.lossy and not optimization.supported("cuda")[0]
    here, why = optimization.supported("cpu")
    model, example = _tiny_model(), torch.randn(2, 3, 8, 32, 32)
    if not here:
        assert why == bf16_missing(ov_cpu_capabilities())
        with pytest.raises(Unsupported, match="no native bf16"):
            optimization.prepare(model, example, None, tmp_path)
        return
    artifact = optimization.prepare(model, example, None, tmp_path)
    assert (artifact.precision, artifact.engine) == ("bf16", "openvino") and "bf16" in artifact.notes
    clips = torch.randn(5, 3, 8, 32, 32)
    with torch.inference_mode():
        reference = model(clips).numpy()
    out = np.asarray(artifact(clips), dtype=np.float32)
    assert out.shape == reference.shape and np.isfinite(out).all()
    assert parity(reference, out).max_abs_logit_diff < 0.1 * np.abs(reference).max() + 1e-2


def test_each_artifact_names_the_precision_its_roofline_is_held_to(tmp_path: Path) -> None:
    """fp32 engines say fp32 and autocast on the CPU bf16 (the INT8 ones say int8: the lossy test above)."""
    model, example = _tiny_model(), torch.randn(2, 3, 8, 32, 32)
    for name, precision in (("eager", "fp32"), ("openvino", "fp32"), ("amp", "bf16")):
        workdir = tmp_path / name
        workdir.mkdir()
        artifact = REGISTRY.optimization(name).prepare(model, example, iter(_calibration()), workdir)
        assert artifact.precision == precision, name
        said = dispatched(artifact.engine, artifact.engine_file, 1, artifact.precision)
        if name == "openvino":  # an fp32 row's compute layers all run f32, whatever the CPU offers
            assert re.search(r"compute layers run f32 x\d+; kernels ", said), said
        else:
            assert said.startswith("PyTorch: ATen ") and torch.backends.cpu.get_cpu_capability() in said, said

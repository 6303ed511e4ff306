"""Operator profiles ("where the time goes"): each engine's own profiler on real tiny models, the groups, the
precisions an INT8 artifact kept, and the profile command of a real warm timing process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from torch import nn

from tests.test_interleave import WIDTH, mlp_file, timer
from vidbench.measure.operators import profile_calls, profile_onnxruntime, profile_openvino, profile_torch
from vidbench.profiles import OUTSIDE, OperatorProfile, op_group, top_groups


@pytest.mark.parametrize(
    ("op_type", "group"),
    [
        ("aten::mkldnn_convolution", "convolution"),
        ("aten::slow_conv3d_forward", "convolution"),
        ("QLinearConv", "convolution"),
        ("FusedConv", "convolution"),
        ("GroupConvolution", "convolution"),
        ("Convert", "layout & copy"),  # OpenVINO's type conversion, not a convolution
        ("aten::addmm", "matmul / linear"),
        ("aten::mm", "matmul / linear"),
        ("quantized::linear_dynamic", "matmul / linear"),
        ("FullyConnected", "matmul / linear"),
        ("MatMulInteger", "matmul / linear"),
        ("DequantizeLinear", "quantize / dequantize"),
        ("aten::native_batch_norm", "normalization"),
        ("MVN", "normalization"),
        ("aten::clamp_min_", "activation"),
        ("aten::add_", "elementwise"),
        ("Eltwise", "elementwise"),
        ("aten::t", "layout & copy"),
        ("Reorder", "layout & copy"),
        ("ReduceMean", "pooling / reduction"),
        ("aten::_softmax", "attention / softmax"),
        ("## Call CompiledFxGraph fjqxrrcb6vqt ##", "compiled (fused) code"),
        ("TorchDynamo Cache Lookup", "torch.compile guards & wrappers"),
        ("aten::resize_", "layout & copy"),
        ("SomethingNew", "other"),
    ],
)
def test_operators_of_every_engine_fall_into_one_group(op_type: str, group: str) -> None:
    assert op_group(op_type) == group


class Net(nn.Module):
    """A real tiny video classifier: a 3D convolution, pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 16, 3, padding=1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def _adds_up(profile: OperatorProfile) -> None:
    """The groups (with the time outside operators) add up to the profiled call, and so do the top groups."""
    groups = profile.groups()
    assert sum(groups.values()) == pytest.approx(max(profile.wall_ms, profile.ops_ms), rel=1e-6)
    assert sum(ms for _, ms in top_groups(profile, 2)) == pytest.approx(sum(groups.values()), rel=1e-6)
    assert OperatorProfile.from_dict(profile.as_dict()) == profile
    assert profile.attributed() == profile.groups()  # no unprofiled time: nothing to attribute to
    profile.unprofiled_ms = profile.wall_ms / 2
    assert sum(profile.attributed().values()) == pytest.approx(profile.wall_ms / 2, rel=1e-6)
    assert profile.overhead == pytest.approx(2.0)


def test_torch_profile_names_its_operators_and_what_dynamic_int8_left_in_float() -> None:
    model = torch.ao.quantization.quantize_dynamic(Net().eval(), {nn.Linear}, dtype=torch.qint8)
    clip = torch.randn(2, 3, 4, 16, 16)
    with torch.inference_mode():
        profile = profile_torch(lambda: model(clip), 2, 5)
    assert profile.engine == "torch" and profile.calls == 5 and profile.wall_ms > 0
    precisions = {op.name: op.precision for op in profile.ops}
    assert precisions["quantized::linear_dynamic"] == "int8"
    assert max(profile.groups(), key=profile.groups().get) == "convolution"
    slowest = profile.by_kind()[0][0]  # "aten::<a convolution kernel> fp32"
    assert op_group(slowest.split()[0]) == "convolution" and slowest.endswith(" fp32")
    assert profile.reports_precision
    left = profile.float_compute()
    assert left and {op.group for op in left} == {"convolution"}  # the convolution stayed fp32
    assert all(op.precision == "fp32" for op in left)
    _adds_up(profile)


class Calibration(CalibrationDataReader):
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.items = iter([{"x": rng.standard_normal((4, WIDTH), dtype=np.float32)} for _ in range(4)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def test_onnxruntime_profile_shows_the_layer_static_int8_kept_in_float(tmp_path: Path) -> None:
    fp32 = mlp_file(tmp_path / "fp32.onnx", 3, 0)
    int8 = tmp_path / "int8.onnx"
    quantize_static(
        str(fp32), str(int8), Calibration(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
        nodes_to_exclude=[_matmul_names(fp32)[-1]], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    array = np.random.default_rng(1).standard_normal((4, WIDTH), dtype=np.float32)
    plain = profile_onnxruntime(fp32, 1, "fp32", array, 4, 5)
    assert plain.engine == "onnxruntime" and plain.calls == 5
    assert [op.precision for op in plain.ops if op.group == "matmul / linear"] == ["fp32"] * 3
    _adds_up(plain)
    quantized = profile_onnxruntime(int8, 1, "int8", array, 4, 5)
    compute = [op for op in quantized.ops if op.group == "matmul / linear"]
    assert len(compute) == 3 and sorted(op.precision for op in compute) == ["fp32", "int8", "int8"]
    assert len(quantized.float_compute()) == 1
    _adds_up(quantized)


def _matmul_names(path: Path) -> list[str]:
    """The MatMul nodes' names, after naming every node of the file (quantization excludes nodes by name)."""
    import onnx

    model = onnx.load(str(path))
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type.lower()}_{index}"
    onnx.save(model, str(path))
    return [node.name for node in model.graph.node if node.op_type == "MatMul"]


def test_openvino_profile_reports_each_layers_kernel_and_precision(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    fp32 = mlp_file(tmp_path / "fp32.onnx", 2, 0)
    array = np.random.default_rng(1).standard_normal((4, WIDTH), dtype=np.float32)
    profile = profile_openvino(fp32, 1, "fp32", array, 4, 5)
    compute = [op for op in profile.ops if op.group == "matmul / linear"]
    assert len(compute) == 2 and all(op.precision == "fp32" and op.kernel for op in compute)
    _adds_up(profile)


def test_profile_length_follows_the_p50() -> None:
    assert profile_calls(100.0, 1.0) == 10
    assert profile_calls(1e4, 1.0) == 3  # a slow artifact still gets 3 calls
    assert profile_calls(0.01, 1.0) == 50  # a fast one at most 50


def test_a_timing_process_profiles_on_command_and_a_failed_profile_costs_no_timing(tmp_path: Path) -> None:
    file = mlp_file(tmp_path / "m.onnx", 2, 0)
    process = timer(tmp_path, "m", file)
    try:
        process.warm(4, 1)
        record = process.profile(4, 5)
        profile = OperatorProfile.from_dict(record)
        assert profile.batch == 4 and profile.unprofiled_ms and profile.unprofiled_ms > 0
        assert "matmul / linear" in profile.groups() and OUTSIDE in profile.groups()
        file.unlink()  # the profiler builds a second session from the file: it now fails
        (tmp_path / "m.onnx.data").unlink(missing_ok=True)
        with pytest.raises(Exception, match=r"m\.onnx"):
            process.profile(4, 5)
        assert len(process.round(4, 0.0, 3, 0)) == 3  # the timed session is untouched
    finally:
        process.stop()

"""What an artifact's engine dispatched to on this machine: the kernels' ISA and the arithmetic its layers run,
as the engine itself reports them (the row's ``dispatch``), so that an "fp32" row never silently runs bf16."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

COMPUTE_LAYERS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm")
"""OpenVINO runtime layer types that do the arithmetic (their kernels decide the speed)."""


def openvino_layers(compiled: Any) -> tuple[Counter[str], Counter[str]]:
    """Of a compiled OpenVINO model's compute layers: how many run in each precision (``runtimePrecision``) and
    how many with each kernel (``primitiveType``, e.g. ``brgconv_avx512_core_f32``: kernel family, ISA, type)."""
    precisions: Counter[str] = Counter()
    kernels: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        if layer not in COMPUTE_LAYERS:
            continue
        precisions[info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"] += 1
        kernels[info["primitiveType"].astype(str) if "primitiveType" in info else "?"] += 1
    return precisions, kernels


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in counts.most_common())


def dispatched(engine: str, engine_file: Path | None, threads: int, precision: str) -> str:
    """One line: the engine, the arithmetic its compute layers run and the ISA of their kernels, as far as the
    engine reports them (ONNX Runtime does not: its MLAS kernels are picked from cpuid at run time)."""
    if engine == "openvino" and engine_file is not None:
        from vidbench.kit.openvino_tools import ov_compile

        compiled = ov_compile(engine_file, threads, precision)
        precisions, kernels = openvino_layers(compiled)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        hint = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # an openvino.Type: "f32"
        layers = f"compute layers run {_counted(precisions)}; kernels {_counted(kernels)}"
        return f"OpenVINO CPU, precision hint {hint}; {layers}"
    from vidbench.measure.env import cpu_features, torch_isa

    if engine == "onnxruntime":
        import onnxruntime

        features = ", ".join(cpu_features()) or "none of the listed ISA features"
        return (
            f"ONNX Runtime {onnxruntime.__version__} CPU: MLAS kernels chosen by cpuid, not reported (CPU: {features})"
        )
    found = torch_isa()
    return (
        f"PyTorch: ATen {found['torch_cpu_capability']} kernels; oneDNN ISA {', '.join(found['torch_isa']) or 'none'}"
    )

"""The plugin author's kit: the helpers of vidbench meant for plugins, and the only ones besides the contract.

A plugin module imports the contract (``vidbench.hookimpl``, :mod:`vidbench.specs`), this kit and, for
datasets, :mod:`vidbench.data`; nothing else of vidbench (import-linter checks it).

- :func:`export_onnx`: ``torch.onnx.export(dynamo=True)`` with a dynamic batch, external weights, a shared
  export cache, and :class:`~vidbench.specs.Unsupported` naming the operator when a model does not export.
- :func:`ort_session` / :func:`ort_callable`: an ONNX Runtime CPU session with a fixed thread count, and a
  clip -> logits callable over it (the artifact's ``run``).
- :func:`convert_via_onnx` / :func:`save_ir` / :func:`ov_callable` / :func:`openvino_supported`: OpenVINO IR
  converted from the shared ONNX export, saved with fp32 weights, compiled for the CPU with a fixed thread
  count and the artifact's floating-point precision (fp32 unless asked); :func:`ov_cpu_capabilities` /
  :func:`bf16_missing`: what OpenVINO says the CPU runs natively, and why not bf16.
- :func:`top1` / :func:`agreement` / :func:`named`: top-1 agreement of an artifact with its model on
  calibration clips, and the list of names a row's notes give (the INT8 plugins' fp32 fallbacks).
- :func:`small_cnn` / :func:`conv_bn_relu_2d`: plain per-frame 2D layers several model plugins share.
- :func:`fvcore_jit_warning_off`: around an import of pytorchvideo's models or fvcore, silences the one
  deprecation warning fvcore raises at import.
"""

import importlib
from typing import Any

_WHERE = {
    "agreement": "vidbench.kit.top1_agreement",
    "named": "vidbench.kit.top1_agreement",
    "top1": "vidbench.kit.top1_agreement",
    "conv_bn_relu_2d": "vidbench.kit.layers",
    "small_cnn": "vidbench.kit.layers",
    "export_onnx": "vidbench.kit.onnx_tools",
    "ort_callable": "vidbench.kit.onnx_tools",
    "ort_session": "vidbench.kit.ort_session",
    "convert_via_onnx": "vidbench.kit.openvino_tools",
    "openvino_missing": "vidbench.kit.openvino_tools",
    "openvino_supported": "vidbench.kit.openvino_tools",
    "ov_callable": "vidbench.kit.openvino_tools",
    "ov_cpu_capabilities": "vidbench.kit.openvino_tools",
    "bf16_missing": "vidbench.kit.openvino_tools",
    "save_ir": "vidbench.kit.openvino_tools",
    "fvcore_jit_warning_off": "vidbench.kit.quiet_imports",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Each helper is imported from its module on first use: a process timing an engine alone
    (:mod:`vidbench.measure.alone`) reaches ``openvino_tools`` without importing torch."""
    if name not in _WHERE:
        raise AttributeError(f"module 'vidbench.kit' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)

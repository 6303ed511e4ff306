"""The plugin author's kit: the helpers of vidbench meant for plugins, and the only ones besides the contract.

A plugin module imports the contract (``vidbench.hookimpl``, :mod:`vidbench.specs`), this kit and, for
datasets, :mod:`vidbench.data`; nothing else of vidbench (import-linter checks it).

- :func:`export_onnx`: ``torch.onnx.export(dynamo=True)`` with a dynamic batch, external weights, a shared
  export cache, and :class:`~vidbench.specs.Unsupported` naming the operator when a model does not export.
- :func:`ort_session` / :func:`ort_callable`: an ONNX Runtime CPU session with a fixed thread count, and a
  clip -> logits callable over it (the artifact's ``run``).
- :func:`small_cnn` / :func:`conv_bn_relu_2d`: plain per-frame 2D layers several model plugins share.
"""

from vidbench.kit.layers import conv_bn_relu_2d, small_cnn
from vidbench.kit.onnx_tools import export_onnx, ort_callable, ort_session

__all__ = ["conv_bn_relu_2d", "export_onnx", "ort_callable", "ort_session", "small_cnn"]

"""Imported once by the fork server that starts every child of a run (:func:`vidbench.run.launch.launch`).

Each cell still runs in a fresh process of its own, forked from this idle, pre-imported one, so none
pays the several seconds of importing torch, torchvision and the installed plugins. Nothing here may
start a thread or touch a GPU: a fork copies only the calling thread, and CUDA does not survive it.
"""

from vidbench.plugins import load_plugins
from vidbench.run import worker  # noqa: F401  (torch, torchvision, the data pipeline, evaluation)

load_plugins()  # imports every installed plugin module (timm, pytorchvideo, onnx, onnxruntime, ...)

import matplotlib  # noqa: E402  (the training evaluation draws the t-SNE; Agg: no display, no GUI thread)

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402
import sklearn.manifold  # noqa: E402, F401

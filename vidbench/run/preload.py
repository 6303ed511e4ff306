"""Imported once by the fork server that starts every child of a run (:func:`vidbench.run.launch.launch`).

Each cell still runs in a fresh process of its own, forked from this idle, pre-imported one, so none
pays the several seconds of importing torch, torchvision and the installed plugins. Nothing here may
touch a GPU (CUDA does not survive a fork) or start a thread that holds locks: a fork copies only the
calling thread. The one thread here, the lifeline, only waits on a pidfd: the fork server exits when the
runner does, even while it is still importing.
"""

from vidbench.run.lifeline import follow_launcher

follow_launcher(group=False)  # the fork server shares the runner's process group: exit alone

from vidbench.plugins import load_plugins  # noqa: E402  (after the lifeline: imports take seconds)
from vidbench.run import worker  # noqa: E402, F401  (torch, torchvision, the data pipeline, evaluation)

load_plugins()  # imports every installed plugin module (timm, pytorchvideo, onnx, onnxruntime, ...)

import matplotlib  # noqa: E402  (the training evaluation draws the t-SNE; Agg: no display, no GUI thread)

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402
import sklearn.manifold  # noqa: E402, F401

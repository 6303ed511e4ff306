"""Descriptors that plugins hand to the core: models, datasets, optimizations.

The core builds nothing by name; it only calls what these descriptors carry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

Device = str
"""A torch device string such as ``"cpu"`` or ``"cuda"``."""


@dataclass(frozen=True)
class PublishedFigures:
    """Reference numbers published for a preset, with the input they were measured at."""

    source: str
    params: int | None = None
    gflops: float | None = None
    top1: float | None = None
    input: str = ""
    num_classes: int = 400


@dataclass(frozen=True)
class InputSpec:
    """What one clip looks like when it reaches the model."""

    frames: int
    crop: int
    stride: int = 1


@dataclass(frozen=True)
class Recipe:
    """How a preset trains by default: settings named as in a suite's ``train:`` block (optimizer, lr with the
    batch it was set for, weight decay, warm-up, schedule, epoch cap, label smoothing, augmentation, drop path,
    EMA), and where they come from (a paper, a reference config, or the experiment that set them).

    A suite's per-model ``train:`` overrides a recipe, and a recipe overrides the suite's ``train:`` block."""

    settings: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class Preset:
    """One named configuration of an architecture: the architecture's parameters as plain data."""

    name: str
    input: InputSpec
    arch: Mapping[str, Any] = field(default_factory=dict)
    published: PublishedFigures | None = None
    description: str = ""
    recipe: Recipe | None = None
    """The preset's default training recipe (none: the suite's ``train:`` block alone)."""


@dataclass(frozen=True)
class ModelSpec:
    """An architecture: its presets and how to build one preset for ``num_classes`` classes."""

    name: str
    presets: Mapping[str, Preset]
    build: Callable[[Preset, int], nn.Module]
    description: str = ""
    head: str = "fc"
    """Module name of the classifier head: a pretrained head for another class count is not loaded."""
    onnx_exportable: bool | str = True
    """``True``, or a string saying why the model does not export."""


@dataclass(frozen=True)
class VideoSample:
    """One video file and its label index (a tuple of indices for a multi-label dataset)."""

    path: Path
    label: int | tuple[int, ...]


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset on disk, ready to be read: class names and the samples of each split."""

    root: Path
    class_names: list[str]
    splits: Mapping[str, list[VideoSample]]
    labels_kind: Literal["single", "multi"] = "single"
    mirror: Mapping[int, int | None] | None = None
    """Label of each class's mirror image, for a label-aware horizontal flip (see LabelAwareFlip)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Files found but left out at preparation, with the reason."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class DatasetOptions(BaseModel):
    """Base for a dataset plugin's options; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its option schema and an idempotent ``prepare(root, options)``."""

    name: str
    prepare: Callable[[Path, Any], PreparedDataset]
    options: type[DatasetOptions] = DatasetOptions
    description: str = ""


@dataclass
class Artifact:
    """An optimized, callable form of a model, and the files that hold it on disk."""

    run: Callable[[torch.Tensor], torch.Tensor]
    files: list[Path]
    notes: str = ""
    engine: str = "torch"
    """What runs the artifact. Another engine (``onnxruntime``) is timed the way it is deployed: in a fresh
    process that loads only that engine and :attr:`engine_file` (``vidbench.measure.alone``)."""
    engine_file: Path | None = None

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self.run(clip)

    @property
    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files if path.exists())


class Unsupported(Exception):
    """Raised by ``prepare`` when an optimization cannot apply; the row becomes ``unsupported``."""


@dataclass(frozen=True)
class OptimizationSpec:
    """An optimization: whether it can run on a device, and how to turn a trained model into an Artifact."""

    name: str
    prepare: Callable[[nn.Module, torch.Tensor, Iterable[torch.Tensor] | None, Path], Artifact]
    supported: Callable[[Device], tuple[bool, str]] = lambda device: (True, "")
    description: str = ""
    lossy: bool = False
    """Changes the arithmetic (int8, reduced precision): the parity gate uses the lossy threshold."""
    baseline: bool = False
    """Declares this optimization the reference of a suite: speedups and deltas are measured against its rows,
    and it runs the temporal probes. A suite picks the one it lists that declares this (or names one itself)."""


def cpu_only(engine: str) -> Callable[[Device], tuple[bool, str]]:
    """A ``supported`` check for an optimization whose kernels run on the CPU alone."""

    def check(device: Device) -> tuple[bool, str]:
        if device == "cpu":
            return True, ""
        return False, f"{engine} runs on the CPU only; this suite measures on {device!r}"

    return check

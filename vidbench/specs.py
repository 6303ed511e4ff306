"""Descriptors that plugins hand to the core: models, datasets, optimizations, trainers.

The core builds nothing by name; it only calls what these descriptors carry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

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
    """What runs the artifact. Another engine (``onnxruntime``, ``openvino``) is timed the way it is deployed: in
    a warm process that loads only that engine and :attr:`engine_file` (``vidbench.measure.alone --serve``); a
    torch artifact is timed in a process that calls the optimization's ``prepare`` again."""
    engine_file: Path | None = None
    precision: str = "fp32"
    """The reduced arithmetic the artifact runs, if any (``fp32``, ``bf16``, ``fp16``, ``int8``): its roofline is
    taken against the higher of this precision's matmul peak and fp32's (it may run layers in either), so the
    figure is a floor on how close it runs to the machine's limit, never above it."""

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


class TrainerOptions(BaseModel):
    """Base for a trainer plugin's options (a suite's ``train.trainer_options``); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
"""One training step: ``objective(module, clips, labels) -> (loss, logits, targets)``; the logits are scored
against the targets (class indices, or multi-hot rows) for the epoch's training top-1: a pretext task returns its
own, or ``None`` when there is nothing to score (a regression)."""


@dataclass(frozen=True)
class Fitted:
    """What a training phase (or a whole trainer) gives back: the weights to evaluate and how training went."""

    model: nn.Module
    """In eval mode: the best validation epoch's weights with ``until: plateau``, else the last (EMA when on)."""
    epochs_done: int
    stopped: str
    """``plateau``, ``max_epochs`` or ``max_minutes``."""
    best_val_top1: float | None = None
    best_epoch: int | None = None
    train_s: float = 0.0
    train_clips: float = 0.0
    notes: Mapping[str, Any] = field(default_factory=dict)
    """What the trainer adds to the job's summary and rows (its teacher, its pre-training epochs...)."""


class TrainingSession(Protocol):
    """What the core hands a trainer's ``fit``: the job's model, data, settings, and the shared training loop.

    ``run_phase`` is that loop: checkpoint after every epoch and resume after a kill, TensorBoard and
    ``metrics.jsonl``, NaN stop, EMA, gradient clipping, the lr schedule, early stop on validation top-1 and the
    time budget. A trainer decides what is trained on what (the objective, the module, the loader); the loop
    stays the same for every trainer."""

    model: nn.Module
    """The job's model, built (and loaded from ``pretrained`` when the suite says so), on the CPU."""
    settings: Any
    """The job's resolved train settings (``vidbench.suite.schema.TrainSettings``: epochs, lr, until...)."""
    options: TrainerOptions
    """This trainer's options, validated."""
    num_classes: int
    clip_shape: tuple[int, int, int, int]
    """``C x T x H x W`` of one clip as the model receives it."""
    device: torch.device

    def loader(self, split: str, train: bool = False, labelled: bool = True) -> Any:
        """A DataLoader of ``(clips, labels)`` for ``split``; ``train`` shuffles and augments. The training split
        honours ``train.label_fraction`` unless ``labelled`` is false (every clip, labels to be ignored)."""

    def teacher(self) -> nn.Module:
        """The trained model of the job this trainer named as its teacher (eval mode, on ``device``)."""

    def run_phase(
        self,
        name: str,
        module: nn.Module,
        objective: Objective | None,
        loader: Any,
        val_loader: Any | None = None,
        **overrides: Any,
    ) -> Fitted:
        """Train ``module`` with ``objective`` (``None``: the loop's own cross-entropy on the labels, with the
        suite's label smoothing; BCE when multi-label) over ``loader`` under the job's settings (``overrides``
        replace some: ``epochs``, ``until``, ``lr``...), resuming a killed phase; ``val_loader`` gives the
        validation top-1 that early stopping watches. The phase named ``"main"`` writes the job's own training
        files (its curves in the report); any other its own folder under the job."""

    def say(self, text: str) -> None:
        """One progress line (shown live and kept in the task's log)."""


@dataclass(frozen=True)
class TrainerSpec:
    """A training method: its option schema and ``fit(session) -> Fitted``."""

    name: str
    fit: Callable[[TrainingSession], Fitted]
    options: type[TrainerOptions] = TrainerOptions
    description: str = ""
    teacher: Callable[[Any], str | None] = lambda options: None
    """The ``model/preset`` of another job of the suite that must be trained first and is handed to ``fit``
    (``session.teacher()``), read from the validated options; ``None``: no teacher."""
    default: bool = False
    """Declares this trainer the one a job uses when its suite names none (exactly one installed trainer may)."""

"""The whole plugin contract of vidbench, in one file.

A plugin is a module (or object) with functions named like the hooks below and marked with
``@vidbench.hookimpl``. It is found through the ``vidbench`` entry-point group of an installed
package, or named by path in a suite's ``plugins:`` list. Every hook returns descriptors
(see :mod:`vidbench.specs`); the core never imports or names a specific plugin.

Example, a model plugin in one module::

    from vidbench import hookimpl
    from vidbench.specs import ModelSpec

    @hookimpl
    def vidbench_models():
        return [ModelSpec(name="my_model", presets={...}, build=build)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # annotations only: ``import vidbench`` stays light (no torch) for a fast CLI start
    from vidbench.specs import DatasetSpec, ModelSpec, OptimizationSpec, TrainerSpec

PROJECT = "vidbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def vidbench_models() -> list[ModelSpec]:
    """Return the architectures this plugin adds.

    Each :class:`~vidbench.specs.ModelSpec` names its presets (plain data: depth, width, input
    frames and crop, published reference figures) and a ``build(preset, num_classes)`` that
    returns an ``nn.Module`` taking ``B x C x T x H x W`` clips and giving logits, with an
    ``embed(clip)`` method giving the pooled features before the head.
    """


@hookspec
def vidbench_datasets() -> list[DatasetSpec]:
    """Return the datasets this plugin adds.

    Each :class:`~vidbench.specs.DatasetSpec` carries a pydantic options model (validated when
    the suite is read) and ``prepare(root, options)``, which must be idempotent: it creates or
    finds the files under ``root`` and returns a :class:`~vidbench.specs.PreparedDataset`.
    """


@hookspec
def vidbench_optimizations() -> list[OptimizationSpec]:
    """Return the optimizations this plugin adds.

    Each :class:`~vidbench.specs.OptimizationSpec` says whether it can run on a device
    (``supported(device) -> (ok, reason)``) and turns a trained PyTorch model into an
    :class:`~vidbench.specs.Artifact` with ``prepare(model, example_input, calibration, workdir)``.
    ``prepare`` raises :class:`~vidbench.specs.Unsupported` when the model cannot take it. One that sets
    ``baseline=True`` offers itself as the reference that speedups and deltas are measured against.
    """


@hookspec
def vidbench_trainers() -> list[TrainerSpec]:
    """Return the training methods this plugin adds.

    Each :class:`~vidbench.specs.TrainerSpec` carries a pydantic options model (a suite's
    ``train.trainer_options``, validated when the suite is read) and ``fit(session)``, which trains
    ``session.model`` through ``session.run_phase`` (the shared loop: checkpoints and resume, logs, NaN stop,
    EMA, early stop, time budget) and returns a :class:`~vidbench.specs.Fitted`. A trainer that learns from
    another job of the suite names it with ``teacher(options)``; the runner trains that job first.
    """

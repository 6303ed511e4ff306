"""The core's side of a trainer plugin: the :class:`~vidbench.specs.TrainingSession` that ``fit`` receives.

It gives the trainer the job's model, loaders, settings and teacher, and runs each training phase through the
shared loop (:class:`vidbench.learn.train.Trainer`), so every trainer gets checkpoints and resume, logs, NaN stop,
EMA, early stop and the time budget without writing them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vidbench.job.context import Context
from vidbench.learn.train import Trainer, config_from_settings
from vidbench.rundir import JobDir
from vidbench.specs import Fitted, Objective, TrainerOptions

MAIN_PHASE = "main"
"""The phase whose files are the job's own (``train_state.pt``, ``metrics.jsonl``, TensorBoard, ``best.pt``)."""


class Session:
    """One job's training session (implements :class:`vidbench.specs.TrainingSession`)."""

    def __init__(self, ctx: Context, model: nn.Module, options: TrainerOptions) -> None:
        self.ctx, self.model, self.options = ctx, model, options
        self.settings = ctx.job.train_settings()
        self.num_classes = ctx.dataset.num_classes
        self.clip_shape = (3, ctx.job.frames, ctx.job.crop, ctx.job.crop)
        self.device = ctx.device
        self._teacher: nn.Module | None = None

    def loader(self, split: str, train: bool = False, labelled: bool = True) -> DataLoader:
        """``(clips, labels)`` batches of ``split``: the training batch size when ``train``, else the evaluation's."""
        size = self.settings.batch_size if train else self.ctx.suite.measure.eval_batch_size
        return self.ctx.loader(split, size, train_mode=train, labelled=labelled)

    def teacher(self) -> nn.Module:
        """The teacher job's trained model, frozen, in eval mode, on the session's device (loaded once)."""
        if self._teacher is None:
            named = self.ctx.task.get("teacher")
            if not named:
                raise RuntimeError(
                    f"{self.ctx.job.model}/{self.ctx.job.variant}: trainer {self.ctx.job.trainer_name!r} asked for a "
                    "teacher, but the suite has no job of the model/preset its options name"
                )
            model = Context.for_job(self.ctx.run, named["slug"]).trained_model()
            torch.set_num_threads(self.ctx.threads)  # for_job set the teacher's; the student's run goes on
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            self._teacher = model.to(self.device).eval()
        return self._teacher

    def phase_files(self, name: str) -> JobDir:
        """Where phase ``name`` keeps its state and logs: the job's folder for the main phase, else its own."""
        files = self.ctx.files
        return files if name == MAIN_PHASE else files.phase(name)

    def run_phase(
        self,
        name: str,
        module: nn.Module,
        objective: Objective | None,
        loader: Any,
        val_loader: Any | None = None,
        **overrides: Any,
    ) -> Fitted:
        """Train ``module`` through the shared loop, resuming the phase where a killed run left it."""
        settings = self.settings.model_validate({**self.settings.model_dump(), **overrides})
        config = config_from_settings(settings, self.ctx.dataset.labels_kind == "multi")
        trainer = Trainer(
            module, loader, config, self.phase_files(name), val_loader=val_loader, progress=self.say,
            device=str(self.device), objective=objective,
        )  # fmt: skip
        result = trainer.run(resume=True)
        history = trainer.history
        return Fitted(
            model=trainer.evaluated_model(),
            epochs_done=result.epochs_done,
            stopped=result.stopped,
            best_val_top1=result.best_val_top1,
            best_epoch=result.best_epoch,
            train_s=sum(h["epoch_s"] for h in history),
            train_clips=sum(h.get("clips", h["clips_per_s"] * h["epoch_s"]) for h in history),
        )

    def say(self, text: str) -> None:
        print(text, flush=True)

"""Training one job: train (or load) its model, save the weights, then evaluate it on the test split: the
reference logits every artifact's parity is checked against, the analysis files and the job summary."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from vidbench.hashing import file_sha256
from vidbench.job.context import Context, on_device
from vidbench.job.session import Session
from vidbench.learn import distributed
from vidbench.learn.analysis import TEMPORAL_PROBES
from vidbench.learn.evaluate import run_split, write_analysis
from vidbench.learn.train import atomic_save, seed_everything
from vidbench.learn.weights import load_pretrained, read_state_dict
from vidbench.rundir import write_json_atomic
from vidbench.suite.checks import trainer_name

SUMMARY_FIELDS = (
    "train_s", "epochs_run", "stopped_by", "best_val_top1", "processes", "best_epoch", "converged", "train_clips",
    "trainer", "trainer_notes", "teacher", "teacher_checkpoint_sha",
)  # fmt: skip

"""What ``train.json`` keeps of the training itself when a job is evaluated again."""


def run_train(ctx: Context) -> None:
    """Train (resuming from the saved training state when present) or load the given checkpoint, save the
    weights atomically, then evaluate the trained model on the test split: logits, probes, embeddings, analysis."""
    files = ctx.files
    files.root.mkdir(parents=True, exist_ok=True)
    settings = ctx.job.train_settings()
    seed_everything(settings.seed, settings.deterministic)  # before building: the initial weights repeat too
    model = ctx.build_model()
    info: dict[str, Any] = {"train_s": 0.0, "epochs_run": 0, "stopped_by": "loaded checkpoint", "converged": None}
    if ctx.job.pretrained:
        spec = ctx.registry.model(ctx.job.model)
        fresh = load_pretrained(model, ctx.job.pretrained, spec.head)
        print(f"loaded {ctx.job.pretrained}" + (f" (new head: {', '.join(fresh)})" if fresh else ""), flush=True)
    if settings.checkpoint:
        model.load_state_dict(read_state_dict(settings.checkpoint), strict=True)
    else:
        name = ctx.job.trainer_name or trainer_name(settings, ctx.registry)
        spec = ctx.registry.trainer(name)
        fitted = spec.fit(Session(ctx, model, spec.options.model_validate(settings.trainer_options)))
        if not distributed.is_main():
            return  # under DDP, rank 0 saves the weights and evaluates
        model = fitted.model
        info = {
            "train_s": fitted.train_s,
            "epochs_run": fitted.epochs_done,
            "stopped_by": fitted.stopped,
            "converged": fitted.stopped == "plateau",
            "best_val_top1": fitted.best_val_top1,
            "best_epoch": fitted.best_epoch,
            "train_clips": fitted.train_clips,
            "processes": distributed.world_size(),
            "trainer": name,
            "trainer_notes": dict(fitted.notes),
            **_teacher_fields(ctx.task.get("teacher")),
        }
    atomic_save(model.state_dict(), files.checkpoint)
    evaluate_job(ctx, model, info)


def _teacher_fields(teacher: dict[str, Any] | None) -> dict[str, Any]:
    """What a student's summary records of its teacher: the job, and the hash of the weights it learned from."""
    if not teacher:
        return {}
    return {"teacher": teacher["slug"], "teacher_checkpoint_sha": teacher.get("checkpoint_sha")}


def evaluate_job(ctx: Context, model: torch.nn.Module | None = None, info: dict[str, Any] | None = None) -> dict:
    """Evaluate a trained job's own model on the test split: the reference logits (every artifact's parity is
    checked against them), the analysis files, and the job summary (written last: it marks the job complete)."""
    files = ctx.files
    if model is None:
        model = ctx.trained_model()
    if info is None:
        previous = files.read_summary() or {}
        info = {k: v for k, v in previous.items() if k in SUMMARY_FIELDS}
    model.to(ctx.device).eval()
    test = ctx.loader("test", ctx.suite.measure.eval_batch_size)
    probes = list(TEMPORAL_PROBES) if ctx.suite.measure.probes != "none" else []
    outputs = run_split(on_device(model, ctx.device), test, embed=on_device(model.embed, ctx.device), probes=probes)
    tmp = files.scratch(files.reference_logits)
    with open(tmp, "wb") as fh:
        np.savez(fh, logits=outputs.logits, labels=outputs.labels)
    os.replace(tmp, files.reference_logits)
    samples = ctx.dataset.splits["test"]
    ids = [str(s.path) for s in samples] if len(samples) == len(outputs.labels) else []
    ids = ids or [f"clip{i}" for i in range(len(outputs.labels))]
    summary = write_analysis(files, outputs, ctx.dataset.class_names, ids)
    checkpoint_sha = file_sha256(files.checkpoint)[:16]
    record = {**info, "checkpoint_sha": checkpoint_sha, **summary, "test_clips": len(outputs.labels)}
    write_json_atomic(files.summary, record)
    print(f"test top-1 of the trained model {summary['top1']:.1%}", flush=True)
    return record

"""A cascade task, in its child: two trained jobs of the run, a fast and a slow one, run as a cascade.

Both models' logits over the validation and test splits (each model at its own input: the two may cut clips
differently); the threshold chosen on the validation split alone (:func:`vidbench.learn.cascade.choose_threshold`);
the cascade's top-1 and escalations on the test split; then the real sequence of calls timed clip by clip at batch
1 (:func:`vidbench.measure.latency.time_sequence`): the cascade (fast, then slow when unsure), the slow model
alone and the fast model alone, taking turns on each clip. The record goes to ``cascades/<name>.json``, the
logits beside the task's log, so every figure can be recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidbench.job.context import Context
from vidbench.learn.cascade import DEFAULT_THRESHOLDS, cascade_point, choose_threshold
from vidbench.measure.latency import synchronizer, time_sequence
from vidbench.rundir import write_json_atomic
from vidbench.stats import ratio_of_means_interval, wilson_interval
from vidbench.suite.cells import ModelJob
from vidbench.suite.schema import Suite


@dataclass(frozen=True)
class Lever:
    """A cascade or an early exit of the suite, as its task runs it: which job answers first (``fast``), which
    answers when it is unsure (``slow``; for an early exit both are the one model: its exit, then the rest)."""

    kind: str
    """``cascade`` or ``early-exit``."""
    fast: str
    slow: str
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    timed_clips: int | None = None
    max_drop: float | None = None

    def name(self, dataset: str) -> str:
        """The record's file name: ``<dataset>__<fast>__to__<slow>``, or ``<dataset>__<model>__early-exit``."""
        fast, slow = self.fast.replace("/", "-"), self.slow.replace("/", "-")
        return f"{dataset}__{fast}__early-exit" if self.kind == "early-exit" else f"{dataset}__{fast}__to__{slow}"

    def label(self, dataset: str) -> str:
        what = f"early exit of {self.fast}" if self.kind == "early-exit" else f"cascade {self.fast} -> {self.slow}"
        return f"{what} on {dataset}"

    def identity(self, dataset: str) -> dict[str, Any]:
        """The fields that name the lever in its record."""
        return {"name": self.name(dataset), "kind": self.kind, "dataset": dataset, "fast": self.fast, "slow": self.slow}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "thresholds": list(self.thresholds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lever:
        return cls(**{**data, "thresholds": tuple(data["thresholds"])})


def levers(suite: Suite) -> list[Lever]:
    """The suite's cascades, then its early exits."""
    found = [
        Lever("cascade", c.fast, c.slow, tuple(c.thresholds or DEFAULT_THRESHOLDS), c.timed_clips, c.max_drop)
        for c in suite.cascades
    ]
    return found + [
        Lever("early-exit", e.model, e.model, tuple(e.thresholds or DEFAULT_THRESHOLDS), e.timed_clips, e.max_drop)
        for e in suite.early_exits
    ]


def _outputs(
    ctx: Context, model: torch.nn.Module, split: str, keep: int = 0, exits: bool = False
) -> tuple[list[np.ndarray], np.ndarray, list[torch.Tensor]]:
    """The logits over ``split`` at the eval batch size (one array; with ``exits``, each early exit's, then the
    final head's), the labels, and the first ``keep`` clips as batches of one, on the device."""
    heads: list[list[np.ndarray]] = []
    labels, clips = [], []
    with torch.inference_mode():
        for batch, targets in ctx.loader(split, ctx.suite.measure.eval_batch_size):
            out = model(batch.to(ctx.device), all_exits=True) if exits else [model(batch.to(ctx.device))]
            heads = heads or [[] for _ in out]
            for store, logits in zip(heads, out, strict=True):
                store.append(logits.float().cpu().numpy())
            labels.append(targets.numpy())
            clips += [clip.unsqueeze(0).to(ctx.device) for clip in batch[: max(0, keep - len(clips))]]
    return [np.concatenate(h) for h in heads], np.concatenate(labels), clips


def _latency(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples)
    return {"mean_ms": float(ms.mean()), "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}


PerClip = Callable[[int], object]


def _timed(answer: Callable[[int], bool], slow: PerClip, fast: PerClip, clips: int, device: str) -> dict[str, Any]:
    """The real sequence of calls on each clip: the lever (``answer``: True when it escalated), the slow path
    alone and the fast one alone (each call waits for its device, as every timed call does)."""
    escalated: list[bool] = []
    sync = synchronizer(device)
    calls = {
        "cascade": lambda i: (escalated.append(answer(i)), sync()),
        "slow": lambda i: (slow(i), sync()),
        "fast": lambda i: (fast(i), sync()),
    }
    with torch.inference_mode():
        samples = time_sequence(calls, clips)
    ratio, low, high = ratio_of_means_interval(samples["cascade"], samples["slow"])
    return {
        "clips": clips,
        "escalations": int(sum(escalated[-clips:])),  # the warm-up clips' decisions are not counted
        **{name: _latency(values) for name, values in samples.items()},
        "cost_vs_slow": {"ratio": ratio, "ci95_low": low, "ci95_high": high},
    }


Timing = Callable[[float], dict[str, Any]]
"""A lever's timed run at a threshold (see :func:`_timed`)."""


def _cascade(ctx: Context, lever: Lever) -> tuple[dict[str, np.ndarray], Timing]:
    """Two jobs: the logits of both on both splits, and the timing at a threshold."""
    fast_ctx = Context({**ctx.task, "job": ctx.task["fast_job"]})
    fast, slow = fast_ctx.trained_model().to(ctx.device), ctx.trained_model().to(ctx.device)
    keep = lever.timed_clips or 10**9
    [val_fast], val_labels, _ = _outputs(fast_ctx, fast, "val")
    [val_slow], val_check, _ = _outputs(ctx, slow, "val")
    [test_fast], test_labels, fast_clips = _outputs(fast_ctx, fast, "test", keep)
    [test_slow], test_check, slow_clips = _outputs(ctx, slow, "test", keep)
    if not (np.array_equal(val_labels, val_check) and np.array_equal(test_labels, test_check)):
        raise RuntimeError("the fast and the slow job do not read the same clips (different datasets?)")

    def answer(i: int, threshold: float) -> bool:
        unsure = torch.softmax(fast(fast_clips[i]).float(), dim=1).max().item() < threshold
        if unsure:
            slow(slow_clips[i])
        return unsure

    def timing(threshold: float) -> dict[str, Any]:
        slow_alone, fast_alone = (lambda i: slow(slow_clips[i])), (lambda i: fast(fast_clips[i]))
        return _timed(lambda i: answer(i, threshold), slow_alone, fast_alone, len(fast_clips), str(ctx.device))

    logits = {"val_fast": val_fast, "val_slow": val_slow, "val_labels": val_labels,
              "test_fast": test_fast, "test_slow": test_slow, "test_labels": test_labels}  # fmt: skip
    return logits, timing


def _early_exit(ctx: Context, lever: Lever) -> tuple[dict[str, np.ndarray], Timing]:
    """One job with an early exit: its first exit's and its final head's logits on both splits, and the timing
    of exiting when confident (``forward_until``) against the whole network and the exit alone."""
    model = ctx.trained_model().to(ctx.device)
    if not hasattr(model, "forward_until"):
        raise RuntimeError(f"{lever.fast} has no early exit (a preset with exits, e.g. r2plus1d/tiny-exit)")
    val_heads, val_labels, _ = _outputs(ctx, model, "val", exits=True)
    test_heads, test_labels, clips = _outputs(ctx, model, "test", lever.timed_clips or 10**9, exits=True)

    def timing(threshold: float) -> dict[str, Any]:
        def answer(i: int) -> bool:
            return model.forward_until(clips[i], threshold)[1] is None  # no exit was sure: the whole network ran

        exit_alone = lambda i: model.forward_until(clips[i], 0.0)  # noqa: E731
        return _timed(answer, lambda i: model(clips[i]), exit_alone, len(clips), str(ctx.device))

    logits = {"val_fast": val_heads[0], "val_slow": val_heads[-1], "val_labels": val_labels,
              "test_fast": test_heads[0], "test_slow": test_heads[-1], "test_labels": test_labels}  # fmt: skip
    return logits, timing


def run_cascade(ctx: Context) -> None:
    """The task's lever (``task["lever"]``: a cascade of ``task["fast_job"]`` before the task's own job, or the
    task's own job's early exit), its record written to ``task["record_file"]``."""
    task = ctx.task
    lever = Lever.from_dict(task["lever"])
    logits, timing = (_early_exit if lever.kind == "early-exit" else _cascade)(ctx, lever)
    np.savez(ctx.run.task(ctx.job.slug, task["task_name"]).cascade_logits, **logits)
    chosen, sweep, slow_val_interval = choose_threshold(
        logits["val_fast"], logits["val_slow"], logits["val_labels"], lever.thresholds, lever.max_drop
    )
    labels = logits["test_labels"]
    test = cascade_point(logits["test_fast"], logits["test_slow"], labels, chosen.threshold)
    alone = {name: float((logits[f"test_{name}"].argmax(axis=1) == labels).mean()) for name in ("fast", "slow")}
    record = {
        **lever.identity(ctx.job.dataset),
        "status": "ok",
        "fast_job": ModelJob.from_dict(task["fast_job"]).slug,
        "slow_job": ctx.job.slug,
        "checkpoints": task.get("checkpoints", {}),
        "threads": ctx.threads,
        "device": str(ctx.device),
        "threshold": chosen.threshold,
        "rule": "the slow path's 95 % interval" if lever.max_drop is None else f"at most {lever.max_drop:g} points",
        "validation": {
            "chosen": chosen.as_dict(),
            "slow_top1_ci95": list(slow_val_interval),
            "sweep": [point.as_dict() for point in sweep],
        },
        "test": {
            **test.as_dict(),
            "top1_ci95": list(wilson_interval(test.top1, test.clips)),
            "fast_top1": alone["fast"],
            "slow_top1": alone["slow"],
            "slow_top1_ci95": list(wilson_interval(alone["slow"], test.clips)),
        },
        "timed": timing(chosen.threshold),
    }
    write_json_atomic(Path(task["record_file"]), record)

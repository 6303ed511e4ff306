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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidbench.job.context import Context
from vidbench.learn.cascade import DEFAULT_THRESHOLDS, cascade_point, choose_threshold
from vidbench.measure.latency import synchronizer, time_sequence
from vidbench.rundir import write_json_atomic
from vidbench.stats import ratio_of_means_interval, wilson_interval
from vidbench.suite.schema import CascadeSettings


def cascade_name(dataset: str, fast: str, slow: str) -> str:
    """The record's file name: ``<dataset>__<fast model>-<fast preset>__to__<slow model>-<slow preset>``."""
    return f"{dataset}__{fast.replace('/', '-')}__to__{slow.replace('/', '-')}"


def _outputs(ctx: Context, model: torch.nn.Module, split: str, keep: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """Logits and labels over ``split`` (the eval batch size), and the first ``keep`` clips as batches of one."""
    logits, labels, clips = [], [], []
    with torch.inference_mode():
        for batch, targets in ctx.loader(split, ctx.suite.measure.eval_batch_size):
            logits.append(model(batch.to(ctx.device)).float().cpu().numpy())
            labels.append(targets.numpy())
            clips += [clip.unsqueeze(0).to(ctx.device) for clip in batch[: max(0, keep - len(clips))]]
    return np.concatenate(logits), np.concatenate(labels), clips


def _latency(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples)
    return {"mean_ms": float(ms.mean()), "p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}


def _timed(
    fast: Callable, slow: Callable, fast_clips: list, slow_clips: list, threshold: float, device: str
) -> dict[str, Any]:
    """The real sequence of calls on each clip: the cascade, the slow model alone, the fast model alone (each
    call waits for its device, as every timed call does)."""
    escalated: list[bool] = []
    sync = synchronizer(device)

    def cascade(index: int) -> None:
        sure = torch.softmax(fast(fast_clips[index]).float(), dim=1).max().item()  # .item() waits for the device
        escalated.append(sure < threshold)
        if sure < threshold:
            slow(slow_clips[index])
            sync()

    calls = {
        "cascade": cascade,
        "slow": lambda i: (slow(slow_clips[i]), sync()),
        "fast": lambda i: (fast(fast_clips[i]), sync()),
    }
    with torch.inference_mode():
        samples = time_sequence(calls, len(fast_clips))
    timed = escalated[-len(fast_clips) :]  # the warm-up clips' decisions are not counted
    ratio, low, high = ratio_of_means_interval(samples["cascade"], samples["slow"])
    return {
        "clips": len(fast_clips),
        "escalations": int(sum(timed)),
        **{name: _latency(values) for name, values in samples.items()},
        "cost_vs_slow": {"ratio": ratio, "ci95_low": low, "ci95_high": high},
    }


def run_cascade(ctx: Context) -> None:
    """The task's cascade (``task["cascade"]``) of ``task["fast_job"]`` before the task's own job (the slow one),
    written to ``task["record_file"]``."""
    task = ctx.task
    settings = CascadeSettings.model_validate(task["cascade"])
    fast_ctx = Context({**task, "job": task["fast_job"]})
    fast = fast_ctx.trained_model().to(ctx.device)
    slow = ctx.trained_model().to(ctx.device)
    keep = settings.timed_clips or 10**9
    val_fast, val_labels, _ = _outputs(fast_ctx, fast, "val")
    val_slow, val_slow_labels, _ = _outputs(ctx, slow, "val")
    test_fast, test_labels, fast_clips = _outputs(fast_ctx, fast, "test", keep)
    test_slow, test_slow_labels, slow_clips = _outputs(ctx, slow, "test", keep)
    if not (np.array_equal(val_labels, val_slow_labels) and np.array_equal(test_labels, test_slow_labels)):
        raise RuntimeError("the fast and the slow job do not read the same clips (different datasets?)")
    folder = ctx.run.task(ctx.job.slug, task["task_name"])
    np.savez(folder.cascade_logits, val_fast=val_fast, val_slow=val_slow, val_labels=val_labels,
             test_fast=test_fast, test_slow=test_slow, test_labels=test_labels)  # fmt: skip
    chosen, sweep, slow_val_interval = choose_threshold(
        val_fast, val_slow, val_labels, settings.thresholds or DEFAULT_THRESHOLDS
    )
    test = cascade_point(test_fast, test_slow, test_labels, chosen.threshold)
    outputs = {"fast": test_fast, "slow": test_slow}
    alone = {name: float((out.argmax(axis=1) == test_labels).mean()) for name, out in outputs.items()}
    record = {
        "status": "ok",
        "name": task["name"],
        "dataset": ctx.job.dataset,
        "fast": settings.fast,
        "slow": settings.slow,
        "fast_job": fast_ctx.job.slug,
        "slow_job": ctx.job.slug,
        "checkpoints": task.get("checkpoints", {}),
        "threads": ctx.threads,
        "device": str(ctx.device),
        "threshold": chosen.threshold,
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
        "timed": _timed(fast, slow, fast_clips, slow_clips, chosen.threshold, str(ctx.device)),
    }
    write_json_atomic(Path(task["record_file"]), record)

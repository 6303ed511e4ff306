"""Measuring one optimization of a trained job: prepare its artifact, gate it on parity with the job's own
model, measure its accuracy and end-to-end throughput, and leave the rows that passed for the job's interleaved
timing (``untimed.json``); a row that fails the gate is written at once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidbench.job.card import model_card, write_card
from vidbench.job.context import Context, on_device
from vidbench.learn.analysis import TEMPORAL_PROBES, expected_calibration_error
from vidbench.learn.evaluate import accuracy, multiview_scores, parity, probe_accuracy, run_split
from vidbench.measure.complexity import count_params, gflops_per_clip
from vidbench.measure.dispatch import dispatched
from vidbench.measure.end_to_end import end_to_end
from vidbench.measure.memory import peak_rss_mb
from vidbench.measure.phases import logged_phase, process_age_s
from vidbench.results import ResultStore, Row, row_with
from vidbench.rundir import write_json_atomic
from vidbench.specs import Unsupported
from vidbench.stats import wilson_interval


def run_measure(ctx: Context) -> None:
    """Prepare one optimization's artifact, gate it on parity, re-measure its accuracy and its end-to-end
    throughput; settle the rows that fail (``rows_file``), leave the rest for the job's timing."""
    task = ctx.task
    settled = _Settled(ctx)
    model = ctx.trained_model()
    print(f"process up {process_age_s():.1f} s, {torch.get_num_threads()} threads", flush=True)
    settled.cost.update(cost_fields(ctx, model))
    model.to(ctx.device)
    spec = ctx.registry.optimization(task["optimization"])
    task_name = task.get("task_name") or spec.name  # with the thread count in a thread sweep
    workdir = ctx.run.artifacts(ctx.job.slug, task_name)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        artifact = prepare_artifact(ctx, spec, model, workdir)
    except Unsupported as exc:
        settled.write_all(status="unsupported", reason=str(exc))
        return
    prepare_s = time.perf_counter() - start
    print(f"prepared in {prepare_s:.1f} s", flush=True)
    measured = {
        "size_mb": artifact.size_bytes / 2**20,
        "prepare_s": prepare_s,
        "precision": artifact.precision,
        "dispatch": dispatched(artifact.engine, artifact.engine_file, ctx.threads, artifact.precision),
        **accuracy_fields(ctx, spec, artifact),
    }
    problem = parity_problem(measured["agreement_top1"], measured["max_abs_logit_diff"], ctx.suite.measure, spec.lossy)
    if task.get("decode"):  # the same model on frames decoded otherwise: its agreement is the policy's cost, no gate
        problem = ""
    if problem:
        settled.write_all(**measured, status="failed", reason=f"parity: {problem}")
        _write_card(ctx, spec.name, task_name, artifact, settled.rows)
        return
    with logged_phase("end-to-end timing"):
        measured.update(timed_end_to_end(ctx, artifact, max(task["batch_sizes"])))
    untimed = leave_untimed(ctx, task_name, artifact, {**settled.cost, **measured})
    print(f"accuracy measured; {len(untimed)} row(s) wait for the job's interleaved timing", flush=True)
    _write_card(ctx, spec.name, task_name, artifact, untimed)


class _Settled:
    """The rows a measure task settles itself (unsupported, failed at the gate), into its ``rows_file``: the
    parent's ledger writes them to the run once the task has ended."""

    def __init__(self, ctx: Context) -> None:
        self.task = ctx.task
        self.store = ResultStore(Path(self.task["rows_file"]))
        self.cost: dict[str, Any] = {}
        self.rows: list[Row] = []

    def write_all(self, **fields: Any) -> None:
        """One row per batch size of the task, with the cost measured so far and ``fields``."""
        for batch_size in self.task["batch_sizes"]:
            row = row_with(self.task["rows"][str(batch_size)], **self.cost, **_process_fields(), **fields)
            self.store.append(row)
            self.rows.append(row)


def _process_fields() -> dict[str, float]:
    return {"peak_rss_mb": peak_rss_mb(), "cell_wall_s": process_age_s()}


def cost_fields(ctx: Context, model: torch.nn.Module) -> dict[str, float]:
    """The trained model's size and cost: parameters, GFLOPs per clip (fvcore, on the CPU: call before the
    model moves) and, when the job trained here, the training's PFLOPs (forward + backward ~ 3 forwards a clip)."""
    with logged_phase("FLOPs counted"):
        gflops = gflops_per_clip(model, ctx.example(1))
    fields = {"params_m": count_params(model) / 1e6, "gflops_per_clip": gflops}
    clips_seen = next(iter(ctx.task["rows"].values())).get("train_clips")
    if clips_seen is not None:
        fields["train_pflops"] = gflops * 3 * clips_seen / 1e6
    return fields


def accuracy_fields(ctx: Context, spec: Any, artifact: Any) -> dict[str, Any]:
    """The artifact's outputs over the whole test split: its parity with the trained model's own logits, its
    accuracy (with the temporal probes when asked, and over several views when the suite sets them)."""
    measure = ctx.suite.measure
    reference = np.load(ctx.files.reference_logits)
    test = ctx.loader("test", measure.eval_batch_size)
    probed = measure.probes == "all" or (measure.probes == "baseline" and spec.name == ctx.baseline)
    probes = list(TEMPORAL_PROBES) if probed else []
    with logged_phase(f"accuracy ({len(probes)} temporal probes)"):
        outputs = run_split(on_device(artifact, ctx.device), test, probes=probes)
    match = parity(reference["logits"], outputs.logits)
    acc = accuracy(outputs.logits, outputs.labels)
    top1_low, top1_high = wilson_interval(acc.top1, len(outputs.labels))
    fields = {
        "top1": acc.top1,
        "top1_ci95_low": top1_low,
        "top1_ci95_high": top1_high,
        "test_clips": len(outputs.labels),
        "top5": acc.top5,
        "mean_class_acc": acc.mean_class_acc,
        "map": acc.map,
        "agreement_top1": match.agreement_top1,
        "max_abs_logit_diff": match.max_abs_logit_diff,
        **probe_accuracy(outputs),
        "ece": expected_calibration_error(outputs.logits, outputs.labels) if outputs.labels.ndim == 1 else None,
        "notes": artifact.notes,
    }
    if measure.views is not None:
        with logged_phase(f"multi-view accuracy ({measure.views.temporal} x {measure.views.spatial} views)"):
            fields.update(multiview_fields(ctx, artifact, measure.views, acc.top1))
    return fields


def leave_untimed(ctx: Context, task_name: str, artifact: Any, measured: dict[str, Any]) -> list[Row]:
    """Write the rows that passed the gate, and how to start the artifact's timing process, to the task's
    ``untimed.json``, where the job's interleaved timing finds them; returns the rows."""
    engine_file = _relative(artifact.engine_file, ctx.run.root)
    rows = {
        str(bs): row_with(ctx.task["rows"][str(bs)], **measured, **_process_fields(), engine=artifact.engine,
                          engine_file=engine_file)
        for bs in ctx.task["batch_sizes"]
    }  # fmt: skip
    resolved = str(Path(artifact.engine_file).resolve()) if artifact.engine_file is not None else None
    timer = {
        "engine": artifact.engine,
        "engine_file": resolved,
        "clip_shape": list(ctx.example(1).shape[1:]),
        "precision": artifact.precision,
    }
    write_json_atomic(ctx.run.task(ctx.job.slug, task_name).untimed, {"timer": timer, "rows": rows})
    return list(rows.values())


def prepare_artifact(ctx: Context, spec: Any, model: torch.nn.Module, workdir: Path) -> Any:
    """``spec``'s artifact of the trained ``model``, prepared the one way both its measure task and its timing
    process prepare it."""
    example = ctx.example(max(2, *ctx.task["batch_sizes"])).to(ctx.device)  # compile: one shape fewer
    return spec.prepare(model, example, ctx.calibration_clips(ctx.suite.measure.calibration_clips), workdir)


def multiview_fields(ctx: Context, artifact: Any, views: Any, single_top1: float) -> dict[str, Any]:
    """The row's accuracy over ``views`` (probabilities averaged per video), with the one-view top-1 kept beside
    it; a failure is recorded, not raised (the single-view figures stand)."""
    label = f"{views.temporal}x{views.spatial}"
    try:
        loader = ctx.multiview_loader("test", views.temporal, views.spatial)
        scores, labels = multiview_scores(on_device(artifact, ctx.device), loader)
    except Exception as exc:
        return {"views": f"{label} failed", "views_error": f"{type(exc).__name__}: {exc}"[:300]}
    acc = accuracy(scores, labels)
    low, high = wilson_interval(acc.top1, len(labels))
    return {"views": label, "top1_single_view": single_top1, "top1": acc.top1, "top5": acc.top5,
            "mean_class_acc": acc.mean_class_acc, "top1_ci95_low": low, "top1_ci95_high": high}  # fmt: skip


def _write_card(ctx: Context, optimization: str, task_name: str, artifact: Any, rows: list[dict[str, Any]]) -> None:
    """The artifact's model card (card file, README, ONNX metadata); a failure is logged, not raised: the rows
    are written already and stay what they are."""
    try:
        card = model_card(ctx, optimization, artifact.notes, rows, ctx.run.read_env())
        stamped = write_card(*ctx.run.artifact_card(ctx.job.slug, task_name), list(artifact.files), card)
        print(f"model card written ({len(stamped)} ONNX file(s) carry it)", flush=True)
    except Exception as exc:
        print(f"model card not written: {type(exc).__name__}: {exc}", flush=True)


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def timed_end_to_end(ctx: Context, artifact: Any, batch_size: int) -> dict[str, float | None]:
    """End-to-end throughput of ``artifact`` on the test split's files (never the clip cache)."""
    dataset = ctx.clips("test", train_mode=False, cached=False)
    return end_to_end(on_device(artifact, ctx.device), dataset, ctx.example(batch_size), str(ctx.device))


def parity_problem(agreement: float, max_diff: float, measure: Any, lossy: bool = False) -> str:
    """Why an artifact fails the parity gate, or ``""`` when it passes."""
    floor = measure.parity_min_agreement_lossy if lossy else measure.parity_min_agreement
    if agreement < floor:
        return f"top-1 agreement {agreement:.1%} < {floor:.1%}"
    if not lossy and measure.parity_max_abs_logit_diff is not None and max_diff > measure.parity_max_abs_logit_diff:
        return f"max |dlogit| {max_diff:.3g} > {measure.parity_max_abs_logit_diff:.3g}"
    return ""

"""The child process of a run: ``python -m vidbench.run.worker TASK.json``.

Three kinds of task: ``train`` (train one model job, save its checkpoint and the reference test logits),
``measure`` (one optimization of one job: prepare, parity gate, accuracy; a row that fails the gate is appended
to the store at once, one that passes waits in the task's ``untimed.json`` for the job's interleaved timing) and
``timer`` (the warm timing process of an artifact that runs in torch, driven by that timing). Any exception is
written to the task's ``error.txt`` for the parent, which turns it into ``failed`` rows.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidbench.hashing import file_sha256
from vidbench.learn import distributed
from vidbench.learn.analysis import TEMPORAL_PROBES, expected_calibration_error
from vidbench.learn.evaluate import (
    accuracy,
    multiview_scores,
    parity,
    probe_accuracy,
    run_split,
    write_analysis,
)
from vidbench.learn.train import atomic_save, seed_everything
from vidbench.learn.weights import load_pretrained, read_state_dict
from vidbench.measure.complexity import count_params, gflops_per_clip
from vidbench.measure.end_to_end import end_to_end
from vidbench.measure.latency import Channel, StdioChannel, serve_rounds, synchronizer
from vidbench.measure.memory import peak_rss_mb
from vidbench.measure.phases import logged_phase, process_age_s
from vidbench.results import ResultStore
from vidbench.run.card import model_card, write_card
from vidbench.run.config import trainer_name
from vidbench.run.context import Context
from vidbench.run.lifeline import follow_launcher
from vidbench.run.session import Session
from vidbench.rundir import TaskDir, write_json_atomic
from vidbench.specs import Unsupported
from vidbench.stats import wilson_interval

SUMMARY_FIELDS = (
    "train_s", "epochs_done", "stopped", "best_val_top1", "processes", "best_epoch", "converged", "train_clips",
    "trainer", "trainer_notes", "teacher", "teacher_checkpoint_sha",
)  # fmt: skip
"""What ``train.json`` keeps of the training itself when a job is evaluated again."""


def on_device(predict: Callable[[torch.Tensor], Any], device: torch.device) -> Callable[[torch.Tensor], Any]:
    """``predict`` fed with batches moved to ``device`` (loaders yield CPU tensors)."""
    if device.type == "cpu":
        return predict
    return lambda clips: predict(clips.to(device, non_blocking=True))


def run_train(ctx: Context) -> None:
    """Train (resuming from the saved training state when present) or load the given checkpoint, save the
    weights atomically, then evaluate the trained model on the test split: logits, probes, embeddings, analysis."""
    files = ctx.files
    files.root.mkdir(parents=True, exist_ok=True)
    settings = ctx.job.train_settings()
    seed_everything(settings.seed, settings.deterministic)  # before building: the initial weights repeat too
    model = ctx.build_model()
    info: dict[str, Any] = {"train_s": 0.0, "epochs_done": 0, "stopped": "loaded checkpoint", "converged": None}
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
            "epochs_done": fitted.epochs_done,
            "stopped": fitted.stopped,
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


def run_measure(ctx: Context) -> None:
    """Prepare one optimization's artifact, gate it on parity, re-measure accuracy, time each batch size."""
    task = ctx.task
    rows_file = task.get("rows_file")  # a task folder's file when rows travel back (Ray)
    store = ResultStore(Path(rows_file)) if rows_file else ctx.run.store()
    measure = ctx.suite.measure
    model = ctx.trained_model()
    params_m = count_params(model) / 1e6
    print(f"process up {process_age_s():.1f} s, {torch.get_num_threads()} threads", flush=True)
    with logged_phase("FLOPs counted"):
        gflops = gflops_per_clip(model, ctx.example(1))  # fvcore traces on the CPU, before the move
    model.to(ctx.device)
    base: dict[str, Any] = {"params_m": params_m, "gflops_per_clip": gflops}
    clips_seen = next(iter(task["rows"].values())).get("train_clips")
    if clips_seen is not None:  # forward + backward ~ 3 forwards per training clip
        base["train_pflops"] = gflops * 3 * clips_seen / 1e6

    written: list[dict[str, Any]] = []

    def write(batch_size: int, **fields: Any) -> None:
        row = {**task["rows"][str(batch_size)], **base, "peak_rss_mb": peak_rss_mb(), "cell_wall_s": process_age_s()}
        written.append(store.append({**row, **fields}))

    spec = ctx.registry.optimization(task["optimization"])
    task_name = task.get("task_name") or spec.name  # with the thread count in a thread sweep
    workdir = ctx.run.artifacts(ctx.job.slug, task_name)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        artifact = prepare_artifact(ctx, spec, model, workdir)
    except Unsupported as exc:
        for bs in task["batch_sizes"]:
            write(bs, status="unsupported", reason=str(exc))
        return
    prepare_s = time.perf_counter() - start
    size_mb = artifact.size_bytes / 2**20
    reference = np.load(ctx.files.reference_logits)
    print(f"prepared in {prepare_s:.1f} s", flush=True)
    test = ctx.loader("test", measure.eval_batch_size)
    probed = measure.probes == "all" or (measure.probes == "baseline" and spec.name == ctx.baseline)
    probes = list(TEMPORAL_PROBES) if probed else []
    with logged_phase(f"accuracy ({len(probes)} temporal probes)"):
        outputs = run_split(on_device(artifact, ctx.device), test, probes=probes)
    match = parity(reference["logits"], outputs.logits)
    acc = accuracy(outputs.logits, outputs.labels)
    single = outputs.labels.ndim == 1
    top1_low, top1_high = wilson_interval(acc.top1, len(outputs.labels))
    common = {
        "size_mb": size_mb,
        "prepare_s": prepare_s,
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
        "ece": expected_calibration_error(outputs.logits, outputs.labels) if single else None,
        "notes": artifact.notes,
    }
    if measure.views is not None:
        with logged_phase(f"multi-view accuracy ({measure.views.temporal} x {measure.views.spatial} views)"):
            common.update(multiview_fields(ctx, artifact, measure.views, acc.top1))
    problem = parity_problem(match.agreement_top1, match.max_abs_logit_diff, measure, spec.lossy)
    if problem:
        for bs in task["batch_sizes"]:
            write(bs, **common, status="failed", reason=f"parity: {problem}")
        _write_card(ctx, spec.name, task_name, artifact, written)
        return
    with logged_phase("end-to-end timing"):
        e2e = timed_end_to_end(ctx, artifact, max(task["batch_sizes"]))
    untimed = {
        str(bs): {**task["rows"][str(bs)], **base, **common, **e2e, "peak_rss_mb": peak_rss_mb(),
                  "cell_wall_s": process_age_s(), "engine": artifact.engine,
                  "engine_file": _relative(artifact.engine_file, ctx.run.root)}
        for bs in task["batch_sizes"]
    }  # fmt: skip
    folder = ctx.run.task(ctx.job.slug, task_name)
    engine_file = str(Path(artifact.engine_file).resolve()) if artifact.engine_file is not None else None
    timer = {"engine": artifact.engine, "engine_file": engine_file, "clip_shape": list(ctx.example(1).shape[1:])}
    write_json_atomic(folder.untimed, {"timer": timer, "rows": untimed})
    print(f"accuracy measured; {len(untimed)} row(s) wait for the job's interleaved timing", flush=True)
    _write_card(ctx, spec.name, task_name, artifact, list(untimed.values()))


def prepare_artifact(ctx: Context, spec: Any, model: torch.nn.Module, workdir: Path) -> Any:
    """``spec``'s artifact of the trained ``model``, prepared the one way both its measure task and its timing
    process prepare it."""
    example = ctx.example(max(2, *ctx.task["batch_sizes"])).to(ctx.device)  # compile: one shape fewer
    return spec.prepare(model, example, ctx.calibration_clips(ctx.suite.measure.calibration_clips), workdir)


def run_timer(ctx: Context, channel: Channel | None = None) -> None:
    """One artifact's warm timing process for an artifact that lives in torch (no engine file to load alone):
    prepared again from the trained model, exactly as its measure task prepared it, then timed on command over
    ``channel`` (stdin / stdout when none is given)."""
    channel = channel or StdioChannel()
    task = ctx.task
    spec = ctx.registry.optimization(task["optimization"])
    model = ctx.trained_model().to(ctx.device)
    folder = ctx.run.task(ctx.job.slug, task.get("task_name") or spec.name).timer.root
    folder.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="artifact-", dir=folder))
    try:
        artifact = prepare_artifact(ctx, spec, model, workdir)
        sync = synchronizer(str(ctx.device))

        def call_for(batch: int) -> Callable[[], object]:
            clip = ctx.example(batch).to(ctx.device)
            return lambda: (artifact(clip), sync())

        serve_rounds(call_for, channel)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


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


def main(argv: list[str] | None = None, channel: Channel | None = None) -> int:
    """Run the task file named by ``argv``; a ``timer`` task talks over ``channel`` (default: stdin / stdout)."""
    args = sys.argv[1:] if argv is None else argv
    follow_launcher()  # a child of a run dies with the run, whatever killed it
    task_path = Path(args[0])
    task = json.loads(task_path.read_text())
    error_file = TaskDir(task_path.parent).error
    try:
        ctx = Context(task)
        distributed.setup(ctx.device)  # a no-op unless started by torchrun with several processes
        if task["kind"] == "timer":
            run_timer(ctx, channel)
        else:
            {"train": run_train, "measure": run_measure}[task["kind"]](ctx)
    except BaseException as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        error_file.write_text(lines[-1].strip() + "\n")
        traceback.print_exc()
        return 1
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

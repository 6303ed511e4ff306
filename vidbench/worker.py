"""The child process of a run: ``python -m vidbench.worker TASK.json``.

Two kinds of task: ``train`` (train one model job, save its checkpoint and eager test logits) and
``measure`` (one optimization of one job: prepare, parity gate, accuracy, latency per batch size;
each finished row is appended to the store at once). Any exception is written to the task's
``error.txt`` for the parent, which turns it into ``failed`` rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from vidbench import distributed
from vidbench.analysis import TEMPORAL_PROBES, expected_calibration_error
from vidbench.cells import ModelJob
from vidbench.config import Suite
from vidbench.data.cache import ClipCache
from vidbench.data.decode import resolve_backend
from vidbench.data.loader import ClipDataset, make_loader
from vidbench.data.sampling import ClipSpec
from vidbench.data.scan import load_prepared
from vidbench.data.transforms import Augment, frames_to_clip
from vidbench.evaluate import accuracy, parity, probe_accuracy, run_split, write_analysis
from vidbench.measure.complexity import count_params, gflops_per_clip
from vidbench.measure.latency import LatencyPlan, measure_latency, synchronizer
from vidbench.plugins import Registry, load_plugins
from vidbench.results import ResultStore, file_hash
from vidbench.specs import PreparedDataset, Unsupported
from vidbench.train import TrainConfig, Trainer, atomic_save, seed_everything
from vidbench.weights import load_pretrained, read_state_dict


def job_from_dict(data: dict[str, Any]) -> ModelJob:
    data = dict(data)
    data["dataset_options"] = tuple((k, v) for k, v in data["dataset_options"])
    data["train"] = tuple((k, v) for k, v in data["train"])
    data["data"] = tuple((k, v) for k, v in data["data"])
    return ModelJob(**data)


def job_to_dict(job: ModelJob) -> dict[str, Any]:
    return asdict(job)


def job_dir(run_dir: Path, job: ModelJob) -> Path:
    return run_dir / "models" / job.slug


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Context:
    """What a task needs: suite, plugins, dataset, and the job's clip settings."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        self.suite = Suite.model_validate(task["suite"])
        self.registry: Registry = load_plugins(task["plugins"])
        self.run_dir = Path(task["run_dir"])
        self.job = job_from_dict(task["job"])
        self.threads = max(1, int(task["threads"]) // distributed.local_world_size())  # DDP ranks share cores
        torch.set_num_threads(self.threads)
        self.device = distributed.rank_device(torch.device(self.suite.measure.device))
        self._dataset: PreparedDataset | None = None

    @property
    def dataset(self) -> PreparedDataset:
        if self._dataset is None:
            self._dataset = load_prepared(Path(self.task["dataset_file"]))
        return self._dataset

    def clips(self, split: str, train_mode: bool, cached: bool = True) -> ClipDataset:
        """The split's clips; ``cached=False`` always decodes the files (end-to-end timing)."""
        job, data = self.job, self.suite.data
        clip = ClipSpec(job.frames, job.stride, job.sampling, job.short)  # type: ignore[arg-type]
        augment = job.train_settings().augment
        multi = self.dataset.labels_kind == "multi"
        return ClipDataset(
            self.dataset.splits[split],
            clip,
            job.crop,
            train_mode,
            backend=resolve_backend(data.backend),
            augment=Augment(augment.random_resized_crop, augment.color_jitter, augment.flip),
            mirror=self.dataset.mirror,
            square_pixels=data.square_pixels,
            cache=ClipCache(Path(data.cache_dir)) if data.cache and cached else None,
            skip_log=self.run_dir / "skipped.csv",
            multilabel_classes=self.dataset.num_classes if multi else None,
            whole_video_mb=data.cache_whole_video_mb,
        )

    def loader(self, split: str, batch_size: int, train_mode: bool = False):
        settings, clips = self.job.train_settings(), self.clips(split, train_mode)
        shard = distributed.sampler(clips, settings.seed) if train_mode and distributed.active() else None
        return make_loader(clips, batch_size, settings.workers, shuffle=train_mode, seed=settings.seed, sampler=shard)

    def build_model(self) -> torch.nn.Module:
        spec = self.registry.model(self.job.model)
        return spec.build(spec.presets[self.job.preset], self.dataset.num_classes)

    def example(self, batch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        shape = (batch, 3, self.job.frames, self.job.crop, self.job.crop)
        return torch.randn(shape, generator=generator)


def on_device(predict: Callable[[torch.Tensor], Any], device: torch.device) -> Callable[[torch.Tensor], Any]:
    """``predict`` fed with batches moved to ``device`` (loaders yield CPU tensors)."""
    if device.type == "cpu":
        return predict
    return lambda clips: predict(clips.to(device, non_blocking=True))


def run_train(ctx: Context) -> None:
    """Train (resuming from ``train_state.pt`` when present) or load the given checkpoint, save the
    weights atomically, then evaluate eager on the test split: logits, probes, embeddings, analysis."""
    out = job_dir(ctx.run_dir, ctx.job)
    out.mkdir(parents=True, exist_ok=True)
    settings = ctx.job.train_settings()
    seed_everything(settings.seed, settings.deterministic)  # before building: the initial weights repeat too
    model = ctx.build_model()
    info: dict[str, Any] = {"train_s": 0.0, "epochs_done": 0, "stopped": "loaded checkpoint"}
    if ctx.job.pretrained:
        spec = ctx.registry.model(ctx.job.model)
        fresh = load_pretrained(model, ctx.job.pretrained, spec.head)
        print(f"loaded {ctx.job.pretrained}" + (f" (new head: {', '.join(fresh)})" if fresh else ""), flush=True)
    if settings.checkpoint:
        model.load_state_dict(read_state_dict(settings.checkpoint), strict=True)
    else:
        trainer = Trainer(
            model,
            ctx.loader("train", settings.batch_size, train_mode=True),
            train_config(settings, ctx.dataset.labels_kind == "multi"),
            out,
            val_loader=ctx.loader("val", ctx.suite.measure.eval_batch_size),
            progress=lambda line: print(line, flush=True),
            device=str(ctx.device),
        )
        result = trainer.run(resume=True)
        if not distributed.is_main():
            return  # under DDP, rank 0 saves the weights and evaluates
        model = trainer.final_model()
        info = {
            "train_s": sum(h["epoch_s"] for h in trainer.history),
            "epochs_done": result.epochs_done,
            "stopped": result.stopped,
            "best_val_top1": result.best_val_top1,
            "processes": distributed.world_size(),
        }
    atomic_save(model.state_dict(), out / "checkpoint.pt")
    evaluate_job(ctx, model, info)


def evaluate_job(ctx: Context, model: torch.nn.Module | None = None, info: dict[str, Any] | None = None) -> dict:
    """Eager evaluation of a trained job on the test split: ``eval.npz`` (logits), the analysis files,
    and ``train.json`` (written last: its presence marks the job complete)."""
    out = job_dir(ctx.run_dir, ctx.job)
    checkpoint = out / "checkpoint.pt"
    if model is None:
        model = ctx.build_model()
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    if info is None:
        previous = out / "train.json"
        keep = ("train_s", "epochs_done", "stopped", "best_val_top1", "processes")
        info = {k: v for k, v in json.loads(previous.read_text()).items() if k in keep} if previous.exists() else {}
    model.to(ctx.device).eval()
    test = ctx.loader("test", ctx.suite.measure.eval_batch_size)
    outputs = run_split(
        on_device(model, ctx.device), test, embed=on_device(model.embed, ctx.device), probes=list(TEMPORAL_PROBES)
    )
    tmp = out / ".eval.tmp.npz"
    np.savez(tmp, logits=outputs.logits, labels=outputs.labels)
    os.replace(tmp, out / "eval.npz")
    samples = ctx.dataset.splits["test"]
    ids = [str(s.path) for s in samples] if len(samples) == len(outputs.labels) else []
    ids = ids or [f"clip{i}" for i in range(len(outputs.labels))]
    summary = write_analysis(out, outputs, ctx.dataset.class_names, ids)
    record = {**info, "checkpoint_sha": file_hash(checkpoint), **summary, "test_clips": len(outputs.labels)}
    (out / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"eager test top-1 {summary['top1']:.1%}", flush=True)
    return record


def train_config(settings: Any, multilabel: bool) -> TrainConfig:
    """The trainer's config from a suite's train settings."""
    fields = {f: getattr(settings, f) for f in TrainConfig.__dataclass_fields__ if hasattr(settings, f)}
    return TrainConfig(**fields, multilabel=multilabel)


def calibration_clips(ctx: Context, limit: int) -> Iterator[torch.Tensor]:
    """Up to ``limit`` training clips (eval transforms), one batch of 1 at a time, decoded lazily."""
    dataset = ctx.clips("train", train_mode=False)
    for index in range(min(limit, len(dataset))):
        yield dataset[index][0].unsqueeze(0)


@contextlib.contextmanager
def logged_phase(what: str) -> Iterator[None]:
    """Print ``what in N.N s`` to the cell's log when the block ends (where a cell's time goes)."""
    start = time.perf_counter()
    yield
    print(f"{what} in {time.perf_counter() - start:.1f} s", flush=True)


def run_measure(ctx: Context) -> None:
    """Prepare one optimization's artifact, gate it on parity, re-measure accuracy, time each batch size."""
    task = ctx.task
    store = ResultStore(Path(task.get("results_dir") or ctx.run_dir))  # a task folder when rows travel back
    measure = ctx.suite.measure
    out = job_dir(ctx.run_dir, ctx.job)
    model = ctx.build_model()
    model.load_state_dict(torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True), strict=True)
    model.eval()
    params_m = count_params(model) / 1e6
    print(f"process up {time.time() - psutil.Process().create_time():.1f} s", flush=True)
    with logged_phase("FLOPs counted"):
        gflops = gflops_per_clip(model, ctx.example(1))  # fvcore traces on the CPU, before the move
    model.to(ctx.device)
    base = {"params_m": params_m, "gflops_per_clip": gflops}

    def write(batch_size: int, **fields: Any) -> None:
        wall = time.time() - psutil.Process().create_time()  # this cell's process so far, imports included
        row = {**task["rows"][str(batch_size)], **base, "peak_rss_mb": peak_rss_mb(), "cell_wall_s": wall}
        store.append({**row, **fields})

    spec = ctx.registry.optimization(task["optimization"])
    workdir = ctx.run_dir / "artifacts" / ctx.job.slug / spec.name
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        example = ctx.example(max(2, *task["batch_sizes"])).to(ctx.device)  # compile: one shape fewer
        artifact = spec.prepare(model, example, calibration_clips(ctx, measure.calibration_clips), workdir)
    except Unsupported as exc:
        for bs in task["batch_sizes"]:
            write(bs, status="unsupported", reason=str(exc))
        return
    prepare_s = time.perf_counter() - start
    size_mb = artifact.size_bytes / 2**20
    eager = np.load(out / "eval.npz")
    print(f"prepared in {prepare_s:.1f} s", flush=True)
    test = ctx.loader("test", measure.eval_batch_size)
    probes = list(TEMPORAL_PROBES) if measure.probes == "all" or spec.name == "eager" else []
    with logged_phase(f"accuracy ({len(probes)} temporal probes)"):
        outputs = run_split(on_device(artifact, ctx.device), test, probes=probes)
    match = parity(eager["logits"], outputs.logits)
    acc = accuracy(outputs.logits, outputs.labels)
    single = outputs.labels.ndim == 1
    common = {
        "size_mb": size_mb,
        "prepare_s": prepare_s,
        "top1": acc.top1,
        "top5": acc.top5,
        "mean_class_acc": acc.mean_class_acc,
        "map": acc.map,
        "agreement_top1": match.agreement_top1,
        "max_abs_logit_diff": match.max_abs_logit_diff,
        **probe_accuracy(outputs),
        "ece": expected_calibration_error(outputs.logits, outputs.labels) if single else None,
        "notes": artifact.notes,
    }
    problem = parity_problem(match.agreement_top1, match.max_abs_logit_diff, measure, spec.lossy)
    plan = LatencyPlan(measure.warmup, measure.min_iters, measure.min_seconds, measure.max_seconds)
    with logged_phase("end-to-end timing"):
        e2e = {} if problem else end_to_end(ctx, artifact, max(task["batch_sizes"]))
    peak = task.get("peak_gmacs")
    sync = synchronizer(str(ctx.device))
    for bs in task["batch_sizes"]:
        if problem:
            write(bs, **common, status="failed", reason=f"parity: {problem}")
            continue
        clip = ctx.example(bs).to(ctx.device)
        with logged_phase(f"batch {bs} timed"):
            stats = measure_latency(lambda clip=clip: (artifact(clip), sync()), plan)
        clips_per_s = bs * 1000 / stats.p50_ms
        write(
            bs,
            **common,
            status="ok",
            reason="",
            latency_ms_p50=stats.p50_ms,
            latency_ms_p90=stats.p90_ms,
            latency_ms_p99=stats.p99_ms,
            latency_cv_pct=stats.cv_pct,
            clips_per_s=clips_per_s,
            frames_per_s=clips_per_s * ctx.job.frames,
            latency_ms_cold=stats.cold_ms,
            latency_iterations=stats.iterations,
            achieved_gmacs_per_s=gflops * clips_per_s,
            roofline_pct=gflops * clips_per_s / peak * 100 if peak else None,
            **e2e,
        )


def end_to_end(ctx: Context, artifact: Any, batch_size: int, clips: int = 64) -> dict[str, float]:
    """File -> prediction throughput on the first test clips, in this process (no loader workers), with
    the time split into decode, transform and model per clip."""
    dataset = ctx.clips("test", train_mode=False, cached=False)  # from the file, never the clip cache
    count = min(clips, len(dataset))
    predict, sync = on_device(artifact, ctx.device), synchronizer(str(ctx.device))
    predict(ctx.example(batch_size))  # warm-up at the batch shape (torch.compile compiles per shape)
    sync()
    decode_s = transform_s = model_s = 0.0
    done = 0
    for start in range(0, count, batch_size):
        batch = []
        for index in range(start, min(start + batch_size, count)):
            t0 = time.perf_counter()
            try:
                frames = dataset.decode(dataset.samples[index], None)
            except Exception:
                continue
            t1 = time.perf_counter()
            batch.append(frames_to_clip(frames, dataset.transform))
            decode_s, transform_s = decode_s + t1 - t0, transform_s + time.perf_counter() - t1
        if not batch:
            continue
        t2 = time.perf_counter()
        predict(torch.stack(batch))
        sync()
        model_s += time.perf_counter() - t2
        done += len(batch)
    total = decode_s + transform_s + model_s
    per = 1000 / max(done, 1)
    return {
        "e2e_clips_per_s": done / total if total else None,
        "e2e_decode_ms": decode_s * per,
        "e2e_transform_ms": transform_s * per,
        "e2e_model_ms": model_s * per,
    }


def parity_problem(agreement: float, max_diff: float, measure: Any, lossy: bool = False) -> str:
    """Why an artifact fails the parity gate, or ``""`` when it passes."""
    floor = measure.parity_min_agreement_lossy if lossy else measure.parity_min_agreement
    if agreement < floor:
        return f"top-1 agreement {agreement:.1%} < {floor:.1%}"
    if not lossy and measure.parity_max_abs_logit_diff is not None and max_diff > measure.parity_max_abs_logit_diff:
        return f"max |dlogit| {max_diff:.3g} > {measure.parity_max_abs_logit_diff:.3g}"
    return ""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    task_path = Path(args[0])
    task = json.loads(task_path.read_text())
    error_file = task_path.with_name("error.txt")
    try:
        ctx = Context(task)
        distributed.setup(ctx.device)  # a no-op unless started by torchrun with several processes
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

"""What production serves: a trained job of a run directory under one optimization, ``RUN_DIR/model@optimization``.

The job's ``job.json`` (written by ``vidbench run``) says the model, preset, clip settings and the
prepared dataset (class names); the optimization is looked up by name in the plugin registry and
prepared from the same checkpoint the harness measured, so the served model is a measured row. Without
``@optimization`` the run's baseline is served.

Classification runs the optimization's artifact (a clip batch -> logits). An artifact only maps clips
to logits, so embeddings always come from the PyTorch model of the same checkpoint (``model.embed``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidbench.data.decode import DecodeError
from vidbench.data.loader import ClipDataset
from vidbench.data.transforms import frames_to_clip
from vidbench.hashing import file_sha256
from vidbench.job.context import Context, JobFileError
from vidbench.results import INPUT_VARIANT
from vidbench.rundir import RunDir
from vidbench.specs import Artifact, OptimizationSpec, Unsupported, VideoSample

EMBED_NOTE = "embeddings come from the PyTorch model of the same checkpoint (an artifact maps clips to logits only)"


class ArtifactError(Exception):
    """``--artifact`` does not name a usable trained job or optimization; the message says what exists."""


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed ``RUN_DIR/model@optimization``."""

    run_dir: Path
    model: str | None
    optimization: str | None
    """``None``: the run's baseline."""

    def __str__(self) -> str:
        return f"{self.run_dir}/{self.model or ''}@{self.optimization or ''}"

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)


def _is_run(path: Path) -> bool:
    return RunDir(path).exists() or bool(RunDir(path).jobs())


def parse_ref(text: str, model: str | None = None) -> ArtifactRef:
    """Split ``RUN_DIR/model@optimization`` (or ``RUN_DIR@optimization`` with ``model`` given apart); without
    ``@optimization`` the reference means the run's baseline."""
    body, sep, optimization = text.rpartition("@")
    if not sep or INPUT_VARIANT.fullmatch(f"@{optimization}"):  # ``tiny@8x32``: a swept input, no optimization
        body, optimization = text, ""
    path = Path(body)
    if _is_run(path):
        return ArtifactRef(path, model, optimization or None)
    if _is_run(path.parent):
        if model and model != path.name:
            raise ArtifactError(f"--artifact names model {path.name!r} but --model says {model!r}")
        return ArtifactRef(path.parent, path.name, optimization or None)
    raise ArtifactError(f"{text}: expected RUN_DIR/model@optimization where RUN_DIR is a `vidbench run` directory")


def trained_slugs(run: RunDir) -> list[str]:
    """Job slugs (``dataset__model__preset``) of the run that have a checkpoint."""
    return [job.slug for job in run.jobs()]


def select_slug(ref: ArtifactRef) -> str:
    """The one trained job the reference means: by slug, model name, or ``model__preset``."""
    slugs = trained_slugs(ref.run)
    if not slugs:
        raise ArtifactError(f"{ref.run_dir}: no trained model (no job with a checkpoint)")
    if ref.model is None:
        if len(slugs) == 1:
            return slugs[0]
        raise ArtifactError(f"{ref.run_dir} holds several models; name one: {', '.join(slugs)}")
    matches = [s for s in slugs if ref.model in (s, s.split("__")[1], "__".join(s.split("__")[1:]))]
    if len(matches) != 1:
        what = "is ambiguous" if matches else "matches no trained model"
        raise ArtifactError(f"model {ref.model!r} {what} in {ref.run_dir}; trained: {', '.join(slugs)}")
    return matches[0]


def _job_rows(run_dir: Path, ctx: Context, optimization: str) -> list[dict[str, Any]]:
    """The run's stored rows of this job under this optimization plugin, every decode policy included."""
    job = ctx.job
    rows = RunDir(run_dir).store().rows() if RunDir(run_dir).exists() else []
    return [
        row for row in rows
        if (row.get("dataset"), row.get("model"), row.get("preset"), row.get("optimization"))
        == (job.dataset, job.model, job.preset, optimization)
        and row.get("job", job.slug) == job.slug  # one input of an input-cost sweep, not its siblings
    ]  # fmt: skip


def _further_policy(row: dict[str, Any]) -> bool:
    return "@" in str(row.get("measure_task") or "")


def measured_rows(run_dir: Path, ctx: Context, optimization: str) -> list[dict[str, Any]]:
    """The run's result rows for this job under this optimization (every batch size and status), as its cells
    decoded them (not a further decode policy's rows)."""
    keep = ("batch_size", "status", "reason", "clips_per_s", "latency_ms_p50", "latency_ms_p99", "e2e_clips_per_s")
    keep += ("top1", "agreement_top1", "size_mb", "cell_key", "decode_policy")
    return [{k: row.get(k) for k in keep} for row in _job_rows(run_dir, ctx, optimization) if not _further_policy(row)]


def chosen_decode_policy(run_dir: Path, ctx: Context) -> tuple[str, str]:
    """The decode policy to serve this job with, from the run's own measurements, and why: among the policies the
    run measured on the baseline (``data.decode_policy``), the one with the most end-to-end clips/s whose top-1
    sits inside the 95 % interval of the first policy's (a tie in accuracy); the first policy when the run measured
    no other, or none ties."""
    first = ctx.suite.data.decode_policy[0]
    rows = [r for r in _job_rows(run_dir, ctx, ctx.baseline or "") if r.get("status") == "ok"]
    reference = next((r for r in rows if not _further_policy(r) and r.get("top1") is not None), None)
    others = [r for r in rows if _further_policy(r) and r.get("top1") is not None and r.get("e2e_clips_per_s")]
    if reference is None or not others:
        return first, f"{first}: the run measured no other decode policy on this model"
    low, high = reference.get("top1_ci95_low") or reference["top1"], reference.get("top1_ci95_high")
    ties = [r for r in others if r["top1"] >= low]
    best = max([reference, *ties], key=lambda r: r.get("e2e_clips_per_s") or 0.0)
    label = best.get("decode_policy") or first
    figures = f"top-1 {best['top1']:.3f} (first policy {reference['top1']:.3f}, 95 % interval {low:.3f}-{high:.3f})"
    speed = f"{best.get('e2e_clips_per_s') or 0:.1f} end-to-end clips/s"
    if best is reference:
        beaten = ", ".join(f"{r.get('decode_policy')} top-1 {r['top1']:.3f}" for r in others if r not in ties)
        return first, f"{first}: {speed}, {figures}" + (f"; outside the interval: {beaten}" if beaten else "")
    return label, f"{label}: {speed}, {figures}, fastest of the policies inside the interval"


@dataclass
class ServedModel:
    """A trained job loaded for production: PyTorch model (embeddings), artifact (logits), clip reader."""

    ref: ArtifactRef
    optimization: str
    slug: str
    ctx: Context
    model: nn.Module
    artifact: Artifact
    checkpoint_sha: str
    prepare_s: float
    measured: list[dict[str, Any]] = field(default_factory=list)
    parity: dict[str, float] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        """Class names of the run's dataset, in label order."""
        return self.ctx.dataset.class_names

    @property
    def multilabel(self) -> bool:
        """Whether the dataset is multi-label (scores are sigmoids, not a softmax)."""
        return self.ctx.dataset.labels_kind == "multi"

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """``C x T x H x W`` of one clip."""
        return (3, self.ctx.job.frames, self.ctx.job.crop, self.ctx.job.crop)

    def identity(self) -> dict[str, Any]:
        """What decides an embedding: the weights and the clip settings (stores and indexes record it)."""
        job = self.ctx.job
        return {
            "run_dir": str(self.ref.run_dir.resolve()),
            "job": self.slug,
            "checkpoint_sha": self.checkpoint_sha,
            "frames": job.frames,
            "crop": job.crop,
            "stride": job.stride,
            "sampling": job.sampling,
            "square_pixels": self.ctx.suite.data.square_pixels,
        }

    def describe(self) -> dict[str, Any]:
        """A JSON summary for ``/healthz`` and the CLI."""
        return {
            "artifact": str(self.ref),
            "job": self.slug,
            "model": self.ctx.job.model,
            "preset": self.ctx.job.preset,
            "optimization": self.optimization,
            "classes": len(self.class_names),
            "clip": list(self.clip_shape),
            "checkpoint_sha": self.checkpoint_sha,
            "artifact_notes": self.artifact.notes,
            "embed": EMBED_NOTE,
            "prepare_s": round(self.prepare_s, 3),
            "parity_vs_checkpoint": self.parity,
            "measured": self.measured,
        }

    def load_clip(self, path: Path, dataset: ClipDataset | None = None) -> torch.Tensor:
        """Decode and transform one file into a ``C x T x H x W`` clip, as the job's evaluation does."""
        dataset = dataset if dataset is not None else self.ctx.reader([])  # an empty reader is falsy
        try:
            frames = dataset.decode(VideoSample(Path(path), 0), None)
        except IndexError as exc:
            raise DecodeError(f"{path}: {exc}") from exc
        return frames_to_clip(frames, dataset.transform)

    @torch.inference_mode()
    def classify(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a clip batch from the served artifact."""
        return self.artifact(batch)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Pooled features of a clip batch from the PyTorch model (``B x D``)."""
        return self.model.embed(batch)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities: softmax for single-label data, sigmoid per class for multi-label."""
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits.float(), dim=-1)

    def top_k(self, logits: torch.Tensor, k: int) -> list[list[dict[str, Any]]]:
        """Top-``k`` labels with scores for each row of ``logits``."""
        probs = self.scores(logits)
        values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
        names = self.class_names
        return [
            [{"label": names[i], "index": int(i), "score": float(v)} for v, i in zip(vs, ix, strict=True)]
            for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)
        ]


def _context(ref: ArtifactRef, slug: str) -> Context:
    try:
        return Context.for_job(ref.run, slug)
    except JobFileError as exc:
        raise ArtifactError(str(exc)) from None


def _check_checkpoint(ctx: Context) -> str:
    files = ctx.files
    sha = file_sha256(files.checkpoint)[:16]
    measured = (files.read_summary() or {}).get("checkpoint_sha")
    if measured and measured != sha:
        raise ArtifactError(f"{files.checkpoint} changed after it was measured ({sha} != {measured})")
    return sha


def _parity(model: nn.Module, artifact: Artifact, example: torch.Tensor) -> dict[str, float]:
    with torch.inference_mode():
        reference, other = model(example), artifact(example).float()
    return {
        "max_abs_logit_diff": float((reference - other).abs().max()),
        "agreement_top1": float((reference.argmax(-1) == other.argmax(-1)).float().mean()),
    }


def _prepare(ctx: Context, spec: OptimizationSpec, model: nn.Module, workdir: Path) -> Artifact:
    """The optimization's artifact from a copy of the trained model (a plugin may change what it gets)."""
    workdir.mkdir(parents=True, exist_ok=True)
    calibration = ctx.calibration_clips(ctx.suite.measure.calibration_clips)
    try:
        return spec.prepare(copy.deepcopy(model), ctx.example(2), calibration, workdir)
    except Unsupported as exc:
        raise ArtifactError(f"optimization {spec.name!r} cannot prepare this model: {exc}") from exc


def _optimization(ctx: Context, ref: ArtifactRef, required: bool) -> OptimizationSpec | None:
    """The optimization the reference names (the run's baseline when it names none), supported here; ``None``
    when it names none, the run has no baseline and none is ``required`` (embeddings only)."""
    name = ref.optimization or ctx.baseline
    if name is None:
        if not required:
            return None
        raise ArtifactError(f"{ref.run_dir}: the run has no baseline; name an optimization: RUN_DIR/model@NAME")
    if name not in ctx.registry.optimizations:
        known = ", ".join(sorted(ctx.registry.optimizations))
        raise ArtifactError(f"unknown optimization {name!r}; allowed: {known}")
    spec = ctx.registry.optimization(name)
    ok, why = spec.supported(ctx.suite.measure.device)
    if not ok:
        raise ArtifactError(f"optimization {name!r} is not supported here: {why}")
    return spec


def load_served(
    ref: ArtifactRef, threads: int | None = None, workdir: Path | None = None, prepare: bool = True
) -> ServedModel:
    """Load the job's checkpoint and prepare the named optimization's artifact from it.

    The artifact is prepared into the run's serving folder (the measured artifacts are left as they are);
    its logits are compared with the PyTorch model's on a fixed example. ``prepare=False`` skips the
    optimization (for embeddings only): classify then runs the PyTorch model.
    """
    slug = select_slug(ref)
    ctx = _context(ref, slug)
    if threads:
        torch.set_num_threads(threads)
    spec = _optimization(ctx, ref, required=prepare)
    name = spec.name if spec is not None else ""
    sha = _check_checkpoint(ctx)
    model = ctx.trained_model()
    start = time.perf_counter()
    if prepare and spec is not None:
        artifact = _prepare(ctx, spec, model, workdir or ref.run.served_artifacts(slug, spec.name))
    else:
        artifact = Artifact(run=model, files=[], notes=f"PyTorch model ({name or 'no optimization'} not prepared: "
                            "embeddings only)")  # fmt: skip
    prepare_s = time.perf_counter() - start
    measured = measured_rows(ref.run_dir, ctx, name) if name else []
    served = ServedModel(ref, name, slug, ctx, model, artifact, sha, prepare_s, measured)
    served.parity = _parity(model, artifact, ctx.example(2))
    return served

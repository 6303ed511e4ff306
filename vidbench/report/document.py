"""The architecture comparison report of one run: its sections, built once and rendered as Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vidbench.report import figures as F
from vidbench.report.levers import cascades, input_cost
from vidbench.report.operators import operator_figures
from vidbench.report.rundata import RunData
from vidbench.report.summary import stopped_by_budget, summary_paragraph
from vidbench.report.table import display_frame

METHODOLOGY: tuple[str, ...] = (
    "Accuracy (top-1, top-5, per class, temporal probes) is measured on each artifact itself over the whole test "
    "split, the same clips (centre crop, uniform sampling) for every row; agreement and max |dlogit| compare the "
    "artifact's logits with the trained model's own on those clips, and an artifact under the parity floor is "
    "failed, not timed.",
    "Latency is model-only on a fixed in-memory batch. Each artifact of a job is timed in its own warm process in "
    "alternating rounds (A B C, then C B A, ...), each round at least min_iters/rounds calls and min_seconds/rounds "
    "seconds; p50 = median over rounds of each round's median call (p99 marked below 100 calls). clips/s = batch x "
    "calls / timed wall time. Speedup = median of the per-round ratios to the baseline, with a 95 % interval; a row "
    "is uncertain when that interval spans more than 1.5x (high / low; runs before interleaved timing mark a CV "
    "above 10 % unstable instead). Threads are fixed per run and recorded.",
    "End-to-end time (decode / transform / model) is a separate figure, measured file to prediction in one process.",
    "GFLOPs follow fvcore's convention: one fused multiply-add = one FLOP, one clip at the suite's T x crop x crop.",
    "Size on disk counts every file of the artifact. Each optimization runs in its own child process with a "
    "timeout; a crash, a timeout or an unsupported device becomes a row with its reason.",
    "Full rules: docs/methodology.md; figures and compare rules: docs/report.md.",
)
"""The methodology footnote (a digest of docs/methodology.md)."""


@dataclass
class Section:
    """A titled part of the report: a short text and its figures."""

    key: str
    title: str
    figures: list[F.Figure] = field(default_factory=list)
    intro: str = ""


@dataclass
class Report:
    """Everything the renderers print, computed from the run directory."""

    title: str
    run_dir: Path
    summary: str
    table: pd.DataFrame
    statuses: list[str]
    not_measured: pd.DataFrame
    sections: list[Section]
    environment: list[tuple[str, str]]
    methodology: tuple[str, ...] = METHODOLOGY

    @property
    def figures(self) -> list[F.Figure]:
        """Every figure of every section, in order."""
        return [f for s in self.sections for f in s.figures]


def not_measured(frame: pd.DataFrame) -> pd.DataFrame:
    """The failed and unsupported cells with their reasons."""
    rows = frame[frame["status"] != "ok"]
    columns = ["dataset", "model", "preset", "optimization", "batch_size", "status", "reason"]
    return rows[columns].rename(columns={"batch_size": "batch"}).reset_index(drop=True)


def _isa_text(isa: Any) -> str:
    """The CPU features that decide INT8 / bf16 speed, and what torch dispatches to."""
    if not isinstance(isa, dict):
        return "not recorded (a run before ISA detection)"
    features = ", ".join(isa.get("features") or []) or "none of AVX2 / AVX-512 / VNNI / BF16 / AMX"
    text = f"{features}; torch kernels: {isa.get('torch_cpu_capability', '?')}"
    if isa.get("torch_isa"):
        text += f" (torch sees {', '.join(isa['torch_isa'])})"
    if isa.get("openvino_cpu_capabilities"):
        text += f"; OpenVINO CPU: {', '.join(isa['openvino_cpu_capabilities'])}"
    return text


def _peaks_text(env: dict[str, Any]) -> str:
    """Each precision's matmul peak and the kernel that gave it (an older run: its fp32 peak alone)."""
    peaks = env.get("matmul_peaks")
    if isinstance(peaks, dict) and peaks:
        return "; ".join(f"{name} {p['gmacs_per_s']:.1f} GMAC/s ({p['method']})" for name, p in peaks.items())
    fp32 = env.get("fp32_matmul_gmacs_per_s")
    return f"fp32 {fp32:.1f} GMAC/s" if isinstance(fp32, int | float) else "?"


def environment(env: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of the run's environment: machine, threads, versions, commit, suite."""
    if not env:
        return [("environment", "not available: env.json is missing")]
    items = [
        ("CPU", f"{env.get('cpu', '?')} ({env.get('cores', '?')} cores)"),
        ("ISA", _isa_text(env.get("isa"))),
        ("threads", str(env.get("threads", "?"))),
        ("device", f"{env.get('device', '?')}" + (f", GPU {env['gpu']}" if env.get("gpu") else "")),
        ("video decoder", str(env.get("decoder") or "?")),
        ("matmul peaks (roofline ceilings)", _peaks_text(env)),
        ("python", str(env.get("python", "?"))),
        ("platform", str(env.get("platform", "?"))),
        ("git commit", str(env.get("git_commit", "?"))),
        ("suite", f"{env.get('suite', '?')} (hash {env.get('suite_hash', '?')}, file {env.get('suite_file', '?')})"),
        ("started (UTC)", str(env.get("started_utc", "?"))),
    ]
    packages = env.get("packages") or {}
    items += [(name, str(version)) for name, version in packages.items()]
    return items


def _trainer_text(row: pd.Series) -> str:
    return "" if _by_default(row.get("trainer_default")) else f"trainer {row.get('trainer')}, "


def training_protocols(frame: pd.DataFrame) -> str:
    """How each model job trained, from its rows: the lr used, the epochs run, why it stopped, and whose recipe
    (the preset's, with its source, or the suite's train block alone)."""
    if "recipe" not in frame or frame["epochs_run"].isna().all():
        return ""
    keys = [c for c in ("dataset", "model", "preset", "seed") if c in frame]
    jobs = frame[frame["epochs_run"].notna()].drop_duplicates(subset=keys)
    parts = []
    for _, row in jobs.iterrows():
        seeds = pd.to_numeric(row.get("seeds_n"), errors="coerce")
        seed = f" seed {int(row['seed'])}" if pd.notna(seeds) and seeds > 1 else ""
        converged = row.get("converged")
        state = "not converged" if stopped_by_budget(converged) else "converged" if converged == 1 else "not recorded"
        lr = f"lr {float(row['lr']):g}, " if pd.notna(row.get("lr")) else ""
        epochs = int(row["epochs_run"])
        recipe = row.get("recipe")
        source = f"the preset's recipe ({recipe})" if isinstance(recipe, str) and recipe else "the suite's train block"
        plural = "" if epochs == 1 else "s"
        parts.append(
            f"{row['model']}/{row['preset']}{seed}: {_trainer_text(row)}{lr}{epochs} epoch{plural}, "
            f"stopped by {row.get('stopped_by') or '?'} ({state}); settings from {source}."
        )
    return "How each model trained. " + " ".join(parts)


def _by_default(flag: Any) -> bool:
    """Whether a row's job was trained by the default trainer (rows from before trainers were plugins were)."""
    return bool(pd.isna(flag) or bool(flag))


def trainer_gains(frame: pd.DataFrame, baseline: str | None) -> str:
    """For each job trained by another trainer than the default one (distillation, self-supervised pre-training),
    its top-1 against the same model, preset, seed and labels trained by the default trainer in this run, with
    both epoch counts and whether the difference is inside the 95 % interval (a tie)."""
    if "trainer_default" not in frame or frame["trainer_default"].map(_by_default).all():
        return ""
    ok = frame[(frame["status"] == "ok") & frame["top1"].notna()]
    if baseline is not None:
        ok = ok[ok["optimization"] == baseline]
    ok = ok.drop_duplicates(subset=[c for c in ("dataset", "model", "preset", "seed") if c in ok])
    plain_rows = ok[ok["trainer_default"].map(_by_default)]
    parts = []
    for _, row in ok[~ok["trainer_default"].map(_by_default)].iterrows():
        plain = str(row["preset"]).split("+", 1)[0]
        teacher = row.get("teacher")
        taught = f" (teacher {'/'.join(teacher.split('__')[1:3])})" if isinstance(teacher, str) else ""
        labels = row.get("label_fraction")
        fraction = f", {float(labels):.0%} of the labels" if pd.notna(labels) else ""
        name = f"{row['model']}/{row['preset']}{taught}{fraction}"
        same = (plain_rows["dataset"] == row["dataset"]) & (plain_rows["model"] == row["model"])
        same &= plain_rows["preset"] == plain
        if "seed" in plain_rows:
            same &= plain_rows["seed"] == row["seed"]
        if "label_fraction" in plain_rows:  # label efficiency compares the same labels
            same &= plain_rows["label_fraction"].fillna(1.0) == (labels if pd.notna(labels) else 1.0)
        if not same.any():
            parts.append(f"{name}: {row['top1'] * 100:.1f}%, no {row['model']}/{plain} trained by default here")
            continue
        ref = plain_rows[same].iloc[0]
        gain = (row["top1"] - ref["top1"]) * 100
        low, high = row.get("top1_ci95_low"), row.get("top1_ci95_high")
        tie = ", inside the 95% interval: a tie" if pd.notna(low) and low <= ref["top1"] <= high else ""
        epochs = f"{_count(row.get('epochs_run'))} vs {_count(ref.get('epochs_run'))} epochs"
        parts.append(
            f"{name}: {row['top1'] * 100:.1f}% vs {ref['top1'] * 100:.1f}% {ref.get('trainer') or 'default'} "
            f"({gain:+.1f} points{tie}; {epochs})"
        )
    return "Trainers against the default trainer on the same model: " + "; ".join(parts) + "."


def _count(value: Any) -> str:
    return str(int(value)) if pd.notna(value) else "?"


def _sections(run: RunData) -> list[Section]:
    def fig(builder: Any, key: str, title: str) -> F.Figure:
        return F.safe(builder, run, key, title)

    tsne = F.tsne_figures(run) or [F.Figure("tsne", "t-SNE of embeddings", missing="the run has no model job")]
    return [
        Section("pareto", "Accuracy vs latency", [fig(F.accuracy_latency, "accuracy_latency", "Accuracy vs latency")]),
        Section(
            "cost",
            "Cost: params, GFLOPs, size",
            [
                fig(F.cost_accuracy, "cost_accuracy", "Params and GFLOPs vs accuracy"),
                fig(F.size_on_disk, "size_on_disk", "Size on disk per artifact"),
            ],
        ),
        Section(
            "speedup",
            f"Optimizations vs {run.baseline or 'the baseline'}",
            [
                fig(F.speedup_vs_baseline, "speedup", "Speedup vs the baseline"),
                fig(F.latency_histograms, "latency_histograms", "Latency distribution per artifact"),
            ],
        ),
        Section(
            "classes",
            "Per-class accuracy and confusion",
            [
                fig(F.per_class_heatmap, "per_class", "Per-class accuracy across models"),
                fig(F.best_confusion, "confusion", "Confusion matrix of the best model"),
            ],
        ),
        Section("probes", "Temporal probes", [fig(F.temporal_probes, "probes", "Temporal probes")]),
        Section("embeddings", "Embeddings (t-SNE)", tsne),
        Section(
            "training",
            "Training curves",
            [fig(F.training_curves, "training", "Training curves")],
            intro=" ".join(t for t in (training_protocols(run.frame), trainer_gains(run.frame, run.baseline)) if t),
        ),
        Section(
            "levers",
            "Production levers: fewer frames, smaller crops, cascades, early exits",
            [
                fig(input_cost, "input_cost", "Input cost: frames x crop"),
                fig(cascades, "cascades", "Cascades and early exits"),
            ],
        ),
        Section("time", "Where end-to-end time goes", [fig(F.time_split, "time_split", "Time split")]),
        Section(
            "operators",
            "Where the model's time goes, by operator",
            _safe_list(operator_figures, run, "operators", "Operators"),
        ),
    ]


def _safe_list(builder: Any, run: RunData, key: str, title: str) -> list[F.Figure]:
    """A builder of several figures; an unexpected error becomes one "not available" note, as with ``F.safe``."""
    try:
        return builder(run)
    except Exception as exc:
        return [F.Figure(key, title, missing=f"could not be drawn: {type(exc).__name__}: {exc}")]


def build_report(run: RunData) -> Report:
    """All sections of the report of a loaded run."""
    frame = run.frame
    return Report(
        title=run.title,
        run_dir=run.run_dir,
        summary=summary_paragraph(frame),
        table=display_frame(frame),
        statuses=[str(s) for s in frame["status"]],
        not_measured=not_measured(frame),
        sections=_sections(run),
        environment=environment(run.env),
    )

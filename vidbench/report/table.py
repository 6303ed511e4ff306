"""The standardized result table, as Markdown (``summary.md``) and as a rich table for the terminal."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.markup import escape
from rich.table import Table

from vidbench.rundir import RunDir

DISPLAY: tuple[tuple[str, str, str], ...] = (
    ("model", "model", ""),
    ("preset", "preset", ""),
    ("optimization", "optim.", ""),
    ("batch_size", "batch", "d"),
    ("top1", "top-1 %", "pct"),
    ("top5", "top-5 %", "pct"),
    ("top1_reversed", "rev %", "pct"),
    ("map", "mAP %", "pct"),
    ("agreement_top1", "agree %", "pct"),
    ("max_abs_logit_diff", "max abs dlogit", ".1e"),
    ("latency_ms_p50", "p50 ms", ".2f"),
    ("latency_ms_p99", "p99 ms", ".2f"),
    ("clips_per_s", "clips/s", ".1f"),
    ("frames_per_s", "frames/s", ".0f"),
    ("params_m", "params M", ".3f"),
    ("gflops_per_clip", "GFLOPs", ".3f"),
    ("size_mb", "size MB", ".2f"),
    ("train_s", "train s", ".0f"),
    ("converged", "converged", "converged"),
    ("status", "status", ""),
    ("reason", "reason", ""),
)
"""(column, header, format) of the summary table; ``pct`` shows a fraction as a percentage."""


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if spec == "converged":
        return "yes" if bool(value) else "not converged"
    if spec == "pct":
        return f"{float(value) * 100:.1f}"
    if spec == "d":
        return str(int(value))
    if spec:
        return format(float(value), spec)
    return str(value)


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "-"
    return f"{float(low) * 100:.1f}-{float(high) * 100:.1f}"


def _over_seeds(mean: Any, sd: Any, n: Any) -> str:
    if n is None or pd.isna(n) or int(n) < 2:
        return "-"
    return f"{float(mean) * 100:.1f} ± {float(sd) * 100:.1f} ({int(n)} seeds)"


def _several_trainers(frame: pd.DataFrame) -> bool:
    """Whether some job of the run was trained by another trainer than the default one."""
    if "trainer_default" not in frame:
        return False
    flags = frame["trainer_default"]
    return bool((flags.notna() & ~flags.fillna(True).astype(bool)).any())


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The summary columns, formatted as strings, one row per cell (with the 95 % interval of top-1 where the
    rows record it, and top-1's mean ± standard deviation over training seeds where the suite had several)."""
    shown = [(c, h, f) for c, h, f in DISPLAY if c in ("status", "reason") or frame[c].notna().any()]
    columns: dict[str, list[str]] = {}
    several_seeds = "seeds_n" in frame and bool((pd.to_numeric(frame["seeds_n"], errors="coerce") > 1).any())
    for col, header, spec in shown:
        columns[header] = [_fmt(v, spec) for v in frame[col]]
        if col == "top1" and "top1_ci95_low" in frame and frame["top1_ci95_low"].notna().any():
            pairs = zip(frame["top1_ci95_low"], frame["top1_ci95_high"], strict=True)
            columns["top-1 95% CI"] = [_interval(low, high) for low, high in pairs]
        if col == "top1" and "views" in frame and frame["views"].notna().any():  # multi-view testing
            columns["views"] = [str(v) if isinstance(v, str) else "1x1" for v in frame["views"]]
            columns["top-1 % (1 view)"] = [_fmt(v, spec) for v in frame.get("top1_single_view", [None] * len(frame))]
        if col == "top1" and several_seeds:
            triples = zip(frame["top1_seed_mean"], frame["top1_seed_std"], frame["seeds_n"], strict=True)
            columns["top-1 over seeds"] = [_over_seeds(*t) for t in triples]
        if col == "preset" and several_seeds:
            columns["seed"] = [_fmt(v, "d") for v in frame["seed"]]
        if col == "preset" and _several_trainers(frame):
            columns["trainer"] = [str(v) if isinstance(v, str) else "-" for v in frame["trainer"]]
        if col == "batch_size" and "threads" in frame and frame["threads"].nunique() > 1:  # a thread sweep
            columns["threads"] = [_fmt(v, "d") for v in frame["threads"]]
    _flag(columns, "p99 ms", frame, "latency_p99_trusted", False, " (too few calls)")
    _flag(columns, "p50 ms", frame, "latency_unstable", True, " unstable")
    if "dataset" in frame and frame["dataset"].nunique() > 1:
        columns = {"dataset": list(frame["dataset"]), **columns}
    return pd.DataFrame(columns)


def _flag(columns: dict[str, list[str]], header: str, frame: pd.DataFrame, column: str, when: bool, mark: str) -> None:
    """Append ``mark`` to the shown ``header`` values of the rows whose ``column`` is ``when``."""
    if header not in columns or column not in frame:
        return
    columns[header] = [
        text + mark
        if text != "-" and isinstance(flag, bool | int) and not pd.isna(flag) and bool(flag) == when
        else text
        for text, flag in zip(columns[header], frame[column], strict=True)
    ]


def to_markdown(frame: pd.DataFrame) -> str:
    table = display_frame(frame)
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


TERMINAL_COLUMNS = (
    "model",
    "preset",
    "optim.",
    "batch",
    "threads",
    "top-1 %",
    "rev %",
    "agree %",
    "max abs dlogit",
    "p50 ms",
    "clips/s",
    "params M",
    "GFLOPs",
    "size MB",
    "converged",
    "status",
    "reason",
)
"""The columns shown in the terminal; summary.md and results.csv hold them all."""


def rich_table(frame: pd.DataFrame, title: str = "") -> Table:
    table = display_frame(frame)
    table = table[[c for c in table.columns if c in TERMINAL_COLUMNS or c == "dataset"]]
    out = Table(title=title, show_lines=False)
    for name in table.columns:
        out.add_column(
            name,
            justify="left" if name in ("model", "preset", "trainer", "optim.", "status", "reason") else "right",
            overflow="fold",
        )
    styles = {"ok": "green", "unsupported": "yellow", "failed": "red"}
    for row in table.itertuples(index=False):
        status = row[list(table.columns).index("status")]
        out.add_row(*[escape(str(v)) for v in row], style=styles.get(status))  # reasons may hold [brackets]
    return out


def write_summary(run_dir: Path) -> Path:
    """Write ``summary.md``: the table, where the numbers came from, and how they were measured."""
    run = RunDir(run_dir)
    frame = run.store().frame()
    env = run.read_env()
    packages = env.get("packages") or {}
    lines = [
        f"# {env.get('suite', run.root.parent.name)} - run {run.run_id}",
        "",
        to_markdown(frame),
        "",
        f"- CPU: {env.get('cpu', '?')}, {env.get('threads', '?')} threads, device {env.get('device', '?')}",
        f"- torch {packages.get('torch', '?')}, onnxruntime {packages.get('onnxruntime', '?')}, "
        f"python {env.get('python', '?')}, commit {env.get('git_commit', '?')}",
        "- top-1 / top-5 / agreement are measured on the artifact over the whole test split; agreement and "
        "max |dlogit| compare the artifact's logits with the trained model's own on the same clips.",
        "- Latency is model-only on one batch: warm-up, then at least min_iters calls and min_seconds; "
        "p50 / p99 of those calls (p99 marked below 100 calls). clips/s = batch x calls / wall time of the timed "
        "loop.",
        "- GFLOPs: fvcore, one fused multiply-add = one FLOP, one clip at the cell's T x crop x crop.",
        "- rev %: top-1 on the same test clips played backwards (results.csv also has shuffled, frame_drop, "
        "frozen); an order-blind model loses nothing there, a model that uses time does.",
    ]
    run.summary.write_text("\n".join(lines) + "\n")
    return run.summary

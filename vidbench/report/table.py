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
    rows record it, top-1's mean ± standard deviation over training seeds where the suite had several, and the
    speedup over the baseline with its 95 % interval where the rows carry it)."""
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
        if col == "latency_ms_p50" and "speedup" in frame and frame["speedup"].notna().any():
            columns["speedup"] = _speedup_texts(frame)
    _flag(columns, "p99 ms", frame.get("latency_p99_trusted"), False, " (too few calls)")
    uncertain, unstable = _validity(frame)
    _flag(columns, "p50 ms", uncertain, True, " uncertain")
    _flag(columns, "p50 ms", unstable, True, " unstable")
    if "dataset" in frame and frame["dataset"].nunique() > 1:
        columns = {"dataset": list(frame["dataset"]), **columns}
    return pd.DataFrame(columns)


def _truth(value: Any) -> bool | None:
    """A row's boolean flag as written (bool), as loaded (1.0 / 0.0) or as read from CSV ("True"); ``None`` when
    the row does not carry it."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, str):
        return {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}.get(value.lower())
    return bool(value)


def _validity(frame: pd.DataFrame) -> tuple[pd.Series | None, pd.Series | None]:
    """The rows' verdict flags: ``speedup_uncertain`` (interleaved timing), and ``latency_unstable`` (CV > 10 %)
    only for rows with no ``speedup_uncertain`` value (runs before interleaved timing)."""
    uncertain = frame["speedup_uncertain"].map(_truth) if "speedup_uncertain" in frame else None
    unstable = frame["latency_unstable"].map(_truth) if "latency_unstable" in frame else None
    if uncertain is not None and unstable is not None:
        unstable = unstable.where(uncertain.isna(), None)
    return uncertain, unstable


def _flag(columns: dict[str, list[str]], header: str, flags: pd.Series | None, when: bool, mark: str) -> None:
    """Append ``mark`` to the shown ``header`` values of the rows whose flag is ``when`` (unset flags: no mark)."""
    if header not in columns or flags is None:
        return
    columns[header] = [
        text + mark if text != "-" and _truth(flag) is when else text
        for text, flag in zip(columns[header], flags, strict=True)
    ]


def _speedup_texts(frame: pd.DataFrame) -> list[str]:
    """Each row's speedup over the baseline as "1.93x [1.85-2.02]" (no interval recorded: "1.93x"; none: "-")."""
    low = frame["speedup_ci95_low"] if "speedup_ci95_low" in frame else [None] * len(frame)
    high = frame["speedup_ci95_high"] if "speedup_ci95_high" in frame else [None] * len(frame)
    texts = []
    for value, lo, hi in zip(frame["speedup"], low, high, strict=True):
        if value is None or pd.isna(value):
            texts.append("-")
            continue
        interval = "" if lo is None or hi is None or pd.isna(lo) or pd.isna(hi) else f" [{lo:.2f}-{hi:.2f}]"
        texts.append(f"{float(value):.2f}x{interval}")
    return texts


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
    "speedup",
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
        "- Latency is model-only on one batch. Each artifact of a job is timed in its own warm process in "
        "alternating rounds (A B C, then C B A, ...), each round at least min_iters/rounds calls and "
        "min_seconds/rounds seconds; p50 = median over rounds of each round's median call (p99 marked below 100 "
        "calls). clips/s = batch x calls / timed wall time. speedup = median of the per-round ratios to the "
        "baseline, with a 95 % interval; a row is marked uncertain when that interval spans more than 1.5x "
        "(high / low; runs before interleaved timing: unstable, a CV above 10 %).",
        "- GFLOPs: fvcore, one fused multiply-add = one FLOP, one clip at the cell's T x crop x crop.",
        "- rev %: top-1 on the same test clips played backwards (results.csv also has shuffled, frame_drop, "
        "frozen); an order-blind model loses nothing there, a model that uses time does.",
    ]
    run.summary.write_text("\n".join(lines) + "\n")
    return run.summary

"""``vidbench compare RUN_A RUN_B``: per-cell deltas between two runs, regression rules, environment check.

A rule names the change that breaks the gate, measured from A (the baseline) to B (the candidate):

    top1<-1                 top-1 fell by more than 1 percentage point (fractions compare in points)
    latency_ms_p50>+10%     p50 latency grew by more than 10 % (relative to A)
    size_mb>0.5             size grew by more than 0.5 MB (absolute, in the column's unit)
    speedup<-10%            the speedup over the baseline fell by more than 10 %, and the two runs' 95 %
                            intervals of it do not overlap (overlapping intervals are a tie, never a break)

Cells are matched on dataset, model, preset, optimization and batch size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vidbench.report.rundata import CELL_COLUMNS, load_frame
from vidbench.rundir import RunDir

FRACTION_METRICS = frozenset(
    {
        "top1",
        "top5",
        "mean_class_acc",
        "agreement_top1",
        "map",
        "top1_reversed",
        "top1_shuffled",
        "top1_frame_drop",
        "top1_frozen",
    }
)
"""Columns stored as fractions in [0, 1]; their absolute deltas and rules are in percentage points."""

DEFAULT_METRICS: tuple[str, ...] = (
    "top1", "top5", "latency_ms_p50", "latency_ms_p99", "clips_per_s", "speedup", "size_mb",
)  # fmt: skip
INTERVALS: dict[str, tuple[str, str]] = {"speedup": ("speedup_ci95_low", "speedup_ci95_high")}
"""Metrics measured with a 95 % interval: a change whose two intervals overlap is a tie."""
"""The metrics the deltas table shows when none are asked for (rules add theirs)."""

ENV_KEYS: tuple[str, ...] = ("cpu", "cores", "threads", "device", "gpu", "python", "platform")
"""The environment fields whose difference makes a comparison of timings doubtful (with package versions)."""

_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([<>])\s*([-+]?\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class Rule:
    """A regression rule: the gate breaks when ``metric``'s change from A to B is ``op`` ``threshold``."""

    text: str
    metric: str
    op: str
    threshold: float
    relative: bool

    def unit(self) -> str:
        """How the threshold reads: ``%`` (relative), ``points`` (fractions) or the column's own unit."""
        return "%" if self.relative else ("points" if self.metric in FRACTION_METRICS else "")

    def broken_by(self, change: float) -> bool:
        """Whether a change (relative in %, else absolute in points or units) breaks the rule."""
        return change < self.threshold if self.op == "<" else change > self.threshold


def parse_rule(text: str) -> Rule:
    """Parse ``METRIC<N``, ``METRIC>N`` or either with a trailing ``%``; raises ``ValueError``."""
    match = _RULE.match(text)
    if not match:
        raise ValueError(
            f"bad rule {text!r}: expected METRIC<N or METRIC>N, optionally with %, e.g. 'top1<-1' "
            "(fell more than 1 point) or 'latency_ms_p50>+10%' (grew more than 10 %)"
        )
    metric, op, number, percent = match.groups()
    return Rule(text.strip(), metric, op, float(number), bool(percent))


def cell_name(row: pd.Series | dict[str, Any]) -> str:
    """``dataset/model/preset/optimization/bN``: one cell, as messages name it."""
    return f"{row['dataset']}/{row['model']}/{row['preset']}/{row['optimization']}/b{int(row['batch_size'])}"


def _abs_change(metric: str, a: float, b: float) -> float:
    return (b - a) * 100 if metric in FRACTION_METRICS else b - a


def _rel_change(a: float, b: float) -> float:
    if a == 0:
        return 0.0 if b == 0 else float("inf") if b > 0 else float("-inf")
    return (b - a) / abs(a) * 100


def paired(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> pd.DataFrame:
    """Both runs' rows side by side, one row per cell present in either (suffixes ``_a`` and ``_b``)."""
    a, b = (
        f.assign(batch_size=f["batch_size"].astype("Int64")).drop_duplicates(subset=list(CELL_COLUMNS), keep="last")
        for f in (frame_a, frame_b)
    )
    merged = a.merge(b, on=list(CELL_COLUMNS), how="outer", suffixes=("_a", "_b"), indicator=True)
    return merged.sort_values(list(CELL_COLUMNS), kind="stable").reset_index(drop=True)


def deltas(pairs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long table: one row per cell and metric with A, B, the absolute change (points for fractions) and
    the relative change in %; NaN where a side has no value."""
    records = []
    for _, row in pairs.iterrows():
        for metric in metrics:
            a, b = row.get(f"{metric}_a"), row.get(f"{metric}_b")
            a = float(a) if pd.notna(a) else float("nan")
            b = float(b) if pd.notna(b) else float("nan")
            both = pd.notna(a) and pd.notna(b)
            records.append(
                {
                    **{c: row[c] for c in CELL_COLUMNS},
                    "metric": metric,
                    "a": a,
                    "b": b,
                    "change": _abs_change(metric, a, b) if both else float("nan"),
                    "change_pct": _rel_change(a, b) if both else float("nan"),
                    "tie": both and _intervals_overlap(row, metric),
                }
            )
    return pd.DataFrame(records, columns=[*CELL_COLUMNS, "metric", "a", "b", "change", "change_pct", "tie"])


def _intervals_overlap(row: pd.Series, metric: str) -> bool:
    """Whether both runs measured ``metric`` with an interval and the two intervals overlap."""
    if metric not in INTERVALS:
        return False
    low, high = INTERVALS[metric]
    bounds = [row.get(f"{column}_{side}") for side in ("a", "b") for column in (low, high)]
    if any(pd.isna(v) for v in bounds):
        return False
    low_a, high_a, low_b, high_b = (float(v) for v in bounds)
    return low_a <= high_b and low_b <= high_a


def status_problems(pairs: pd.DataFrame) -> list[str]:
    """Cells that were ok in A and are not ok (or absent) in B."""
    problems = []
    for _, row in pairs.iterrows():
        if row.get("status_a") != "ok" or row.get("status_b") == "ok":
            continue
        if row["_merge"] == "left_only":
            problems.append(f"{cell_name(row)}: ok in A, missing in B")
        else:
            problems.append(f"{cell_name(row)}: ok in A, {row['status_b']} in B ({row.get('reason_b') or 'no reason'})")
    return problems


def broken_rules(table: pd.DataFrame, rules: list[Rule]) -> list[str]:
    """One message per cell and rule broken, naming the cell, both values and the change."""
    messages = []
    for rule in rules:
        rows = table[(table["metric"] == rule.metric) & table["change"].notna()]
        for _, row in rows.iterrows():
            change = row["change_pct"] if rule.relative else row["change"]
            if rule.broken_by(change) and not row["tie"]:
                unit = rule.unit()
                shown = f"{change:+.2f}{'%' if rule.relative else (' ' + unit if unit else '')}"
                messages.append(
                    f"{cell_name(row)}: {rule.metric} {_show(rule.metric, row['a'])} -> {_show(rule.metric, row['b'])} "
                    f"({shown}) breaks '{rule.text}'"
                )
    return messages


def _show(metric: str, value: float) -> str:
    return f"{value * 100:.2f}%" if metric in FRACTION_METRICS else f"{value:.4g}"


def env_differences(env_a: dict[str, Any], env_b: dict[str, Any]) -> list[str]:
    """``field: A vs B`` for each machine, thread or package-version difference between two runs."""
    found = []
    for key in ENV_KEYS:
        if env_a.get(key) != env_b.get(key):
            found.append(f"{key}: {env_a.get(key)!r} vs {env_b.get(key)!r}")
    packages_a, packages_b = env_a.get("packages") or {}, env_b.get("packages") or {}
    for name in sorted(set(packages_a) | set(packages_b)):
        if name != "vidbench" and packages_a.get(name) != packages_b.get(name):
            found.append(f"{name}: {packages_a.get(name)} vs {packages_b.get(name)}")
    return found


@dataclass
class Comparison:
    """The outcome of comparing two runs."""

    table: pd.DataFrame
    broken: list[str]
    status_changes: list[str]
    env_diffs: list[str]
    suites_differ: bool
    only_a: list[str]
    only_b: list[str]

    @property
    def failed(self) -> bool:
        """Whether the gate is broken (a rule, or a cell that stopped being ok while rules are set)."""
        return bool(self.broken)


def compare_runs(run_a: Path, run_b: Path, rules: list[Rule], metrics: list[str] | None = None) -> Comparison:
    """Compare two run directories; rules given make status regressions (ok -> failed/missing) break too.

    Raises ``FileNotFoundError`` for a directory without results and ``ValueError`` for a rule whose metric
    neither run has."""
    frames = []
    for run in (run_a, run_b):
        if not RunDir(run).exists():
            raise FileNotFoundError(f"{run}: no results here; expected a directory like results/<suite>/<run_id>")
        frames.append(load_frame(Path(run)))
    frame_a, frame_b = frames
    for rule in rules:
        if rule.metric not in frame_a.columns or rule.metric not in frame_b.columns:
            numeric = sorted(c for c in frame_a.columns if pd.api.types.is_numeric_dtype(frame_a[c]))
            raise ValueError(f"rule '{rule.text}': no column {rule.metric!r}; numeric columns: {', '.join(numeric)}")
    shown = list(dict.fromkeys([*(metrics or DEFAULT_METRICS), *(r.metric for r in rules)]))
    shown = [m for m in shown if m in frame_a.columns and m in frame_b.columns]
    pairs = paired(frame_a, frame_b)
    table = deltas(pairs, shown)
    status = status_problems(pairs)
    envs = [RunDir(r).read_env() for r in (run_a, run_b)]
    return Comparison(
        table=table,
        broken=broken_rules(table, rules) + (status if rules else []),
        status_changes=status,
        env_diffs=env_differences(*envs),
        suites_differ=envs[0].get("suite_hash") != envs[1].get("suite_hash"),
        only_a=[cell_name(r) for _, r in pairs[pairs["_merge"] == "left_only"].iterrows()],
        only_b=[cell_name(r) for _, r in pairs[pairs["_merge"] == "right_only"].iterrows()],
    )


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """The deltas as one row per cell, one column per metric: ``A -> B (change)``."""
    if table.empty:
        return pd.DataFrame(columns=["cell"])
    cells = table.assign(cell=table.apply(cell_name, axis=1))
    out = {}
    for metric, group in cells.groupby("metric", sort=False):
        out[metric] = {row["cell"]: _cell_text(metric, row) for _, row in group.iterrows()}
    wide = pd.DataFrame(out)
    wide.index.name = "cell"
    return wide.reset_index()


def _cell_text(metric: str, row: pd.Series) -> str:
    a, b = row["a"], row["b"]
    if pd.isna(a) and pd.isna(b):
        return "-"
    if pd.isna(a) or pd.isna(b):
        return f"{'-' if pd.isna(a) else _show(metric, a)} -> {'-' if pd.isna(b) else _show(metric, b)}"
    if metric in FRACTION_METRICS:
        return f"{a * 100:.1f} -> {b * 100:.1f} ({row['change']:+.1f} pt)"
    tie = ", a tie: the 95 % intervals overlap" if row.get("tie") is True else ""
    return f"{a:.4g} -> {b:.4g} ({row['change_pct']:+.1f}%{tie})"

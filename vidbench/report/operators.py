"""The report's "where the time goes": each model's artifacts by operator group, from their engines' profilers.

A timed artifact's profile (:mod:`vidbench.measure.operators`, written by the job's timing step beside its
latency samples) splits one call into operator groups and the time outside any operator. Per model: one
figure, a stacked bar per artifact at its smallest profiled batch with the row's p50 marked, and a table of
the five largest groups, the rest, and how the profiled call compares with the p50; for INT8 artifacts, the
convolutions and matmuls their engine ran in floating point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from vidbench.profiles import OUTSIDE, OperatorProfile, top_groups
from vidbench.report.figures import Figure, _colors, _job_label, _png
from vidbench.report.rundata import RunData

TOP_GROUPS = 5
"""Groups named per artifact in the table; the others are summed as ``rest``."""


def _profiled_rows(run: RunData) -> pd.DataFrame:
    """One ok row per artifact (job and measure task): the smallest batch size, at the most threads."""
    rows = run.ok
    if rows.empty or "measure_task" not in rows or "job" not in rows:
        return rows.iloc[0:0]
    rows = rows.sort_values(["threads", "batch_size"], ascending=[False, True], na_position="last")
    return rows.drop_duplicates(subset=["job", "measure_task"]).reset_index(drop=True)


def _profile_of(run: RunData, row: pd.Series) -> tuple[OperatorProfile | None, str]:
    """The row's profile, or None and why there is none."""
    record = run.operator_profile(str(row["job"]), str(row["measure_task"]), int(row["batch_size"]))
    if record is None:
        return None, "no profile file (measure.profile: none, or a run before operator profiles)"
    if record.get("error"):
        return None, str(record["error"])
    try:
        return OperatorProfile.from_dict(record), ""
    except (KeyError, TypeError, ValueError) as exc:
        return None, f"unreadable profile: {exc}"


def _ms(value: float) -> str:
    return f"{value:.3g}"


def _float_layers(profile: OperatorProfile, precision: Any) -> str:
    """An INT8 artifact's convolutions and matmuls its engine ran in floating point: count, time, the slowest."""
    if str(precision) != "int8":
        return ""
    if not profile.reports_precision:
        return "not reported by the profiler"
    left = profile.float_compute()
    if not left:
        return "none"
    names = ", ".join(op.name for op in left[:3]) + (", ..." if len(left) > 3 else "")
    return f"{len(left)}, {_ms(sum(op.ms for op in left))} ms: {names}"


def _table_row(row: pd.Series, profile: OperatorProfile) -> dict[str, Any]:
    """One artifact's line: its largest groups and the rest (attributed to the unprofiled call), what they add
    up to against the row's p50, and the profiler's own overhead."""
    p50 = float(row["latency_ms_p50"])
    groups = top_groups(profile, TOP_GROUPS, attributed=True)
    total = sum(ms for _, ms in groups)
    named = "; ".join(f"{g} {_ms(ms)} ({ms / total * 100:.0f} %)" for g, ms in groups if g != "rest")
    overhead = profile.overhead
    return {
        "artifact": row["measure_task"],
        "batch": int(row["batch_size"]),
        "profiler": profile.profiler,
        f"top {TOP_GROUPS} groups, ms per call": named,
        "rest ms": _ms(dict(groups).get("rest", 0.0)),
        "slowest kernels (profiled ms)": "; ".join(f"{kind} {_ms(ms)}" for kind, ms in profile.by_kind()[:3]),
        "sum ms": _ms(total),
        "row p50 ms": _ms(p50),
        "sum / p50": f"{total / p50 * 100:.0f} %",
        "profiler overhead": f"x{overhead:.2f} ({_ms(profile.wall_ms)} ms profiled)" if overhead else "not measured",
        "conv/matmul left in float": _float_layers(profile, row.get("precision")),
    }


def _draw(items: list[tuple[str, OperatorProfile, float]]) -> MplFigure:
    """A stacked bar per artifact (groups in a shared order and colour; outside operators grey) and its p50."""
    totals: dict[str, float] = {}
    for _, profile, _ in items:
        for group, ms in profile.attributed().items():
            totals[group] = totals.get(group, 0.0) + ms
    order = [g for g in sorted(totals, key=lambda g: -totals[g]) if g != OUTSIDE] + [OUTSIDE]
    colors = _colors(order) | {OUTSIDE: (0.8, 0.8, 0.8, 1.0)}
    fig = MplFigure(figsize=(9.5, 1.6 + 0.42 * len(items)), dpi=100, layout="constrained")
    ax = fig.subplots()
    labels = [label for label, _, _ in items]
    left = np.zeros(len(items))
    for group in order:
        values = np.array([profile.attributed().get(group, 0.0) for _, profile, _ in items])
        hatch = "//" if group == OUTSIDE else None
        ax.barh(labels, values, left=left, color=colors[group], hatch=hatch, edgecolor="white", linewidth=0.4)
        left += values
    ax.scatter([p50 for _, _, p50 in items], labels, marker="|", s=260, color="black", zorder=3)
    profiled = [(profile.wall_ms, label) for label, profile, _ in items if profile.unprofiled_ms]
    if profiled:
        xs, ys = zip(*profiled, strict=True)
        ax.scatter(xs, ys, marker="D", s=28, facecolor="white", edgecolor="black", zorder=4)
    ax.invert_yaxis()
    ax.set_xlabel("ms per call (batch of the row), by operator group, attributed to the unprofiled call")
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=colors[g], label=g, hatch="//" if g == OUTSIDE else None) for g in order]
    handles.append(Line2D([], [], color="black", marker="|", ls="", ms=12, label="row p50 (timed in rounds)"))
    handles.append(Line2D([], [], color="black", marker="D", mfc="white", ls="", label="a call under the profiler"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def operator_figures(run: RunData) -> list[Figure]:
    """One figure per model job: where each of its artifacts' time goes, by operator group."""
    rows = _profiled_rows(run)
    if rows.empty:
        return [Figure("operators", "Operators", missing="no ok row to profile")]
    figures = []
    for job, sub in rows.groupby("job", sort=False):
        title = f"Where the time goes: {_job_label(sub.iloc[0], run.frame)}"
        items, table, missing = [], [], []
        for _, row in sub.iterrows():
            profile, why = _profile_of(run, row)
            if profile is None:
                missing.append(f"{row['measure_task']}: {why}")
                continue
            label = f"{row['measure_task']} (bs {int(row['batch_size'])})"
            items.append((label, profile, float(row["latency_ms_p50"])))
            table.append(_table_row(row, profile))
        key = f"operators_{job}"
        if not items:
            figures.append(Figure(key, title, missing="; ".join(missing)))
            continue
        caption = (
            "Each artifact's call split by operator group, from its engine's own profiler (torch.profiler self "
            "times; ONNX Runtime's node kernel times; OpenVINO's performance counters), taken after its timing "
            "rounds in its timing process; 'outside operators' is the profiled call's wall time that no operator "
            "accounts for (Python and framework between operators, engine dispatch). Each bar is the call timed "
            "without the profiler just before and after it, split in the shares the profile measured (a "
            "profiler slows what it watches: ONNX Runtime's slows its kernels too); the diamond is a call under "
            "the profiler ('profiler overhead' in the table), the black mark the row's p50 from the timing "
            "rounds ('sum / p50': the host's drift in between)."
        )
        if missing:
            caption += " Not profiled: " + "; ".join(missing) + "."
        figures.append(Figure(key, title, caption, png=_png(_draw(items)), table=pd.DataFrame(table)))
    return figures

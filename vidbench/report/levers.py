"""The report's "production levers": what fewer frames or a smaller crop cost in accuracy and buy in compute and
latency, per model, from an input-cost sweep (``input: {frames: [4, 8, 16], crop: [32, 64]}``: one job each);
and what a cascade of two models (``cascades: [{fast: x3d/tiny, slow: r2plus1d/tiny}]``) keeps of the slow
model's accuracy at what share of its time.

Each model's reference is its most expensive input (GFLOPs per clip); every other input of the same model is
set against it: its top-1 change in points (each top-1 with its 95 % interval), its compute, and its p50 per
clip as a ratio to the reference's. The inputs are separate jobs, timed in separate timing steps, so that
ratio is not interleaved and has no interval; the compute ratio is exact.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes

from vidbench.report.figures import Figure, _canvas, _colors, _png, spread_labels
from vidbench.report.rundata import RunData
from vidbench.report.summary import (
    artifact_rows,
    gflops_per_video,
    per_clip_ms,
    stopped_by_budget,
    top1_interval,
    view_count,
)
from vidbench.results import INPUT_VARIANT


def input_sweep_rows(run: RunData) -> pd.DataFrame:
    """One row per swept input of each model: the baseline's artifact at its smallest batch, with the model's
    plain preset, the input, its cost per video and its latency per clip."""
    rows = artifact_rows(run.frame)
    if rows.empty:
        return rows
    if run.baseline:
        rows = rows[rows["optimization"] == run.baseline]
    rows = rows[rows["preset"].astype(str).str.contains(INPUT_VARIANT)].copy()
    if rows.empty:
        return rows
    rows["base_preset"] = rows["preset"].astype(str).str.replace(INPUT_VARIANT, "", regex=True)
    rows["input"] = [f"{int(f)}x{int(c)}" for f, c in zip(rows["frames"], rows["crop"], strict=True)]
    rows["views_n"] = rows["views"].map(view_count) if "views" in rows else 1
    rows["gflops_per_video"] = rows.apply(gflops_per_video, axis=1)
    rows["ms_per_clip"] = rows.apply(per_clip_ms, axis=1)
    return rows.reset_index(drop=True)


def _interval_text(row: pd.Series) -> str:
    interval = top1_interval(row)
    return f"{row['top1'] * 100:.1f} [{interval[0] * 100:.1f}-{interval[1] * 100:.1f}]" if interval else "?"


def lever_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Each swept input against its model's most expensive one: top-1 and its change, compute, latency."""
    lines = []
    for (_, model, preset), group in rows.groupby(["dataset", "model", "base_preset"], sort=False):
        reference = group.loc[group["gflops_per_clip"].idxmax()]
        for _, row in group.sort_values("gflops_per_clip").iterrows():
            lines.append({
                "model": f"{model}/{preset}" + (" [not converged]" if stopped_by_budget(row.get("converged")) else ""),
                "frames x crop": row["input"],
                "top-1 % [95 % interval]": _interval_text(row),
                "top-1 change (points)": f"{(row['top1'] - reference['top1']) * 100:+.1f}",
                "GFLOPs per clip": f"{row['gflops_per_clip']:.3g}",
                "views": int(row["views_n"]),
                "GFLOPs per video": f"{row['gflops_per_video']:.3g}",
                "compute vs reference": f"{row['gflops_per_clip'] / reference['gflops_per_clip']:.2f}x",
                "ms per clip": f"{row['ms_per_clip']:.3g}",
                "p50 vs reference": f"{row['ms_per_clip'] / reference['ms_per_clip']:.2f}x",
                "batch": int(row["batch_size"]),
            })  # fmt: skip
    return pd.DataFrame(lines)


def input_cost(run: RunData) -> Figure:
    """Top-1 against GFLOPs per video and against p50 per clip, each model's swept inputs joined by a line."""
    key, title = "input_cost", "Input cost: frames x crop"
    rows = input_sweep_rows(run)
    if rows.empty:
        return Figure(key, title, missing="the run sweeps no input (input: {frames: [..], crop: [..]})")
    fig, axes = _canvas(2)
    colors = _colors(sorted({f"{m}/{p}" for m, p in zip(rows["model"], rows["base_preset"], strict=True)}))
    labels: list[list] = [[], []]
    for (model, preset), group in rows.groupby(["model", "base_preset"], sort=True):
        color = colors[f"{model}/{preset}"]
        group = group.sort_values("gflops_per_video")
        for index, (ax, column) in enumerate(zip(axes, ("gflops_per_video", "ms_per_clip"), strict=True)):
            ax.plot(group[column], group["top1"] * 100, color=color, lw=0.8, alpha=0.6)
            for _, row in group.iterrows():
                interval = top1_interval(row)
                budget = stopped_by_budget(row.get("converged"))
                yerr = [[(row["top1"] - interval[0]) * 100], [(interval[1] - row["top1"]) * 100]] if interval else None
                ax.errorbar(row[column], row["top1"] * 100, yerr=yerr, fmt="o", ms=5, color=color, capsize=2,
                            mfc="white" if budget else color, label=f"{model}/{preset}")  # fmt: skip
                labels[index].append(ax.annotate(row["input"], (row[column], row["top1"] * 100), fontsize=7,
                                                 xytext=(4, 3), textcoords="offset points"))  # fmt: skip
    axes[0].set_xlabel("GFLOPs per video (per clip x views)")
    axes[1].set_xlabel("p50 latency per clip (ms, baseline, smallest batch)")
    for ax in axes:
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.1)
    handles, names = axes[0].get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    axes[0].legend(unique.values(), unique.keys(), fontsize=7)
    spread_labels(fig, labels)
    caption = (
        "One job per frames x crop of each model (labelled FxC), trained and measured at that input; error bars "
        "are the 95 % interval of top-1, a hollow point a model a budget stopped (not converged). GFLOPs per "
        "video = GFLOPs per clip x the clips of multi-view testing. Latency: the baseline's p50 per clip at the "
        "smallest batch; each input is its own job and timing step, so latencies across inputs are not "
        "interleaved (no interval)."
    )
    return Figure(key, title, caption, png=_png(fig), table=lever_table(rows))


DEFAULT_RULE = "the slow path's 95 % interval"
"""The threshold's floor of a record that does not name its rule."""


def _roles(record: dict) -> tuple[str, str, str]:
    """What the record's three timed paths are called: (the lever, the slow path, the fast path)."""
    if record.get("kind") == "early-exit":
        return "early exit", "whole network", "exit alone"
    return "cascade", "slow alone", "fast alone"


def _title(record: dict) -> str:
    if record.get("kind") == "early-exit":
        return f"{record.get('fast')}: early exit"
    return f"{record.get('fast')} -> {record.get('slow')}"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


def _cascade_line(record: dict) -> dict:
    """One cascade's table line: its threshold, test top-1 against the slow model's, escalations, latencies."""
    if record.get("status") != "ok":
        return {
            "lever": _title(record),
            "dataset": record.get("dataset"),
            "verdict": f"failed: {record.get('reason', '?')}",
        }
    test, timed = record["test"], record["timed"]
    cost = timed["cost_vs_slow"]
    low, high = test["slow_top1_ci95"]
    inside = test["top1"] >= low
    cheap = cost["ci95_high"] <= 0.5
    verdict = ("within the slow model's interval" if inside else "below the slow model's interval") + (
        f", at {cost['ratio']:.2f}x its mean time" + (" (at most half, interval included)" if cheap else "")
    )
    answered = test["clips"] - test["escalations"]
    return {
        "lever": _title(record),
        "dataset": record["dataset"],
        "threshold (validation)": f"{record['threshold']:.2f}, {record.get('rule', DEFAULT_RULE)}",
        "top-1 % [95 %]": f"{_pct(test['top1'])} [{_pct(test['top1_ci95'][0])}-{_pct(test['top1_ci95'][1])}]",
        "slow path % [95 %]": f"{_pct(test['slow_top1'])} [{_pct(low)}-{_pct(high)}]",
        "top-1 vs slow path (points)": f"{(test['top1'] - test['slow_top1']) * 100:+.1f}",
        "fast path %": _pct(test["fast_top1"]),
        "answered first (test)": f"{answered} of {test['clips']} ({answered / max(test['clips'], 1) * 100:.0f} %)",
        "ms mean / p50 / p99": "{mean_ms:.3g} / {p50_ms:.3g} / {p99_ms:.3g}".format(**timed["cascade"]),
        "slow path ms mean": f"{timed['slow']['mean_ms']:.3g}",
        "fast path ms mean": f"{timed['fast']['mean_ms']:.3g}",
        "mean time vs slow [95 %]": f"{cost['ratio']:.2f}x [{cost['ci95_low']:.2f}-{cost['ci95_high']:.2f}]",
        "verdict": verdict,
    }


def _draw_cascade(ax: Axes, record: dict) -> None:
    """One cascade's panel: the validation sweep with its chosen point, the test points with intervals."""
    timed, test = record["timed"], record["test"]
    slow_ms, fast_ms = timed["slow"]["mean_ms"], timed["fast"]["mean_ms"]
    sweep = pd.DataFrame(record["validation"]["sweep"])
    estimated = (fast_ms + sweep["escalated"] * slow_ms) / slow_ms
    ax.plot(estimated, sweep["top1"] * 100, color="grey", lw=1, marker=".", label="validation sweep (estimated)")
    chosen = record["validation"]["chosen"]
    label = f"chosen on validation: {record['threshold']:.2f}"
    chosen_cost = (fast_ms + chosen["escalated"] * slow_ms) / slow_ms
    ax.scatter(
        [chosen_cost], [chosen["top1"] * 100], marker="s", facecolor="none", edgecolor="black", s=60, label=label
    )
    lever, slow, fast = _roles(record)
    points = (
        (f"{lever} (test, timed)", timed["cascade"]["mean_ms"], test["top1"], test["top1_ci95"], "C0"),
        (f"{slow} (test)", slow_ms, test["slow_top1"], test["slow_top1_ci95"], "C3"),
        (f"{fast} (test)", fast_ms, test["fast_top1"], None, "C2"),
    )
    for name, ms, top1, interval, color in points:
        yerr = [[(top1 - interval[0]) * 100], [(interval[1] - top1) * 100]] if interval else None
        ax.errorbar([ms / slow_ms], [top1 * 100], yerr=yerr, fmt="o", color=color, capsize=3, label=name)
    ax.axvline(0.5, color="black", lw=0.6, ls=":")
    ax.set_title(f"{_title(record)} ({record['dataset']})", fontsize=9)
    ax.set_xlabel(f"mean time per clip / {slow}'s")
    ax.set_ylabel("top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def cascades(run: RunData) -> Figure:
    """Each cascade's validation sweep (top-1 against the share of the slow model's time it would take) with its
    chosen threshold, and on the test split the cascade as timed, the slow and the fast model alone."""
    key, title = "cascades", "Cascades and early exits: the cheap answer first, the expensive one when unsure"
    records = run.cascade_records()
    if not records:
        return Figure(key, title, missing="the run has no cascade or early exit (cascades:, early_exits:)")
    table = pd.DataFrame([_cascade_line(r) for r in records])
    done = [r for r in records if r.get("status") == "ok"]
    if not done:
        return Figure(key, title, missing="no cascade ran: " + "; ".join(table["verdict"]), table=table)
    fig, axes = _canvas(len(done), width=5.0)
    for ax, record in zip(axes, done, strict=True):
        _draw_cascade(ax, record)
    caption = (
        "The threshold is the fast model's (an early exit's) softmax confidence below which the slow model (the rest "
        "of the network) runs too; it is chosen on the validation split only: the cheapest whose top-1 lies inside "
        "the 95 % interval of the slow path's own. "
        "The grey curve is that sweep, its cost estimated from the two models' measured mean times; the points are "
        "the test split, timed on the real sequence of calls clip by clip at batch 1 (the lever, the slow path alone "
        "and the fast one alone taking turns on each clip), with 95 % intervals (top-1: Wilson; time ratio: "
        "bootstrap over clips). The slow path is the slow model (a cascade) or the whole network (an early exit); "
        "the fast path the fast model or the network up to its exit."
    )
    return Figure(key, title, caption, png=_png(fig), table=table)

"""The report's figures, drawn with matplotlib (Agg, no pyplot state) into PNG bytes.

Each builder takes a loaded run and returns a :class:`Figure`: the PNG, or ``missing`` with the reason it
could not be drawn (no baseline row, no analysis file, ...). ``safe`` turns an unexpected error into such a
note, so one bad input never stops the rest of the report.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure
from matplotlib.text import Annotation
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import Bbox

from vidbench.report.rundata import JobFiles, RunData
from vidbench.report.summary import artifact_rows, per_clip_ms, stopped_by_budget, top1_interval
from vidbench.stats import interval_too_wide

PROBE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("top1", "intact"),
    ("top1_reversed", "reversed"),
    ("top1_shuffled", "shuffled"),
    ("top1_frame_drop", "frame drop"),
    ("top1_frozen", "frozen"),
)
"""(column, label) of the temporal-probe bars: accuracy on intact clips, then on each time-edited copy."""

E2E_COLUMNS: tuple[tuple[str, str], ...] = (
    ("e2e_decode_ms", "decode"),
    ("e2e_transform_ms", "transform"),
    ("e2e_model_ms", "model"),
)


@dataclass
class Figure:
    """One figure of the report: a PNG, or the reason it is not available; optionally a table under it."""

    key: str
    title: str
    caption: str = ""
    png: bytes | None = None
    missing: str | None = None
    table: pd.DataFrame | None = None

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI for an inline ``<img>``."""
        return "data:image/png;base64," + base64.b64encode(self.png or b"").decode()


def _canvas(panels: int, width: float = 4.6, height: float = 3.8) -> tuple[MplFigure, list[Axes]]:
    fig = MplFigure(figsize=(max(width * panels, 5.0), height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure labels with (``spread_labels``)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _png(fig: MplFigure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _colors(names: list[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _log_if_wide(ax: Axes, values: pd.Series) -> None:
    """Log x axis when the values span more than a decade; plain numbers as tick labels."""
    if values.min() > 0 and values.max() > 10 * values.min():
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def _job_label(row: pd.Series, frame: pd.DataFrame) -> str:
    """``model/preset`` (with the dataset when the run has several), marked when a budget stopped its training."""
    label = f"{row['model']}/{row['preset']}" + (" (not converged)" if stopped_by_budget(row.get("converged")) else "")
    return f"{row['dataset']}: {label}" if frame["dataset"].nunique() > 1 else label


LABEL_GAP_PX = 2.0
"""The least gap, in pixels, ``spread_labels`` leaves between two point labels."""


CLEAR_PX = 1e-3
"""How far past a box a moved label lands beyond the gap: more than floating-point rounding of pixel sums."""


def _overlap(a: Bbox, b: Bbox, gap: float = LABEL_GAP_PX) -> bool:
    """Whether two boxes come closer than ``gap`` pixels on both axes."""
    return a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap


def _anchor(label: Annotation) -> tuple[float, float]:
    """The display position of the point a label names (bottom first, then left)."""
    x, y = label.axes.transData.transform(label.xy)
    return float(y), float(x)


def _sinks(label: Annotation) -> bool:
    """Whether a label moves down out of the way: its point is in the upper half of the axes (moving up would
    leave the axes)."""
    return _anchor(label)[0] > label.axes.bbox.y0 + label.axes.bbox.height / 2


def _shift(box: Bbox, placed: list[Bbox], down: bool) -> float:
    """How far (pixels, up positive) ``box`` moves in its direction to clear every placed box: just past each
    box it meets (by :data:`CLEAR_PX` more, or rounding can leave it touching the box it has just cleared, which
    it would then meet again forever), the shift only growing in its direction, each box cleared at most once."""
    shift = 0.0
    for _ in range(len(placed)):
        hit = next((p for p in placed if _overlap(box.translated(0, shift), p)), None)
        if hit is None:
            break
        past = hit.y0 - LABEL_GAP_PX - box.y1 - CLEAR_PX if down else hit.y1 + LABEL_GAP_PX - box.y0 + CLEAR_PX
        shift = min(shift, past) if down else max(shift, past)
    return shift


def _stack_labels(labels: list[Annotation], renderer: object, points_per_px: float) -> bool:
    """One pass over a panel's labels: the lower half from the lowest point up, then the upper half from the
    highest point down; a label overlapping one already placed moves (up, or down in the upper half) just past
    it. Returns whether any label moved."""
    rising = sorted((label for label in labels if not _sinks(label)), key=_anchor)
    sinking = sorted((label for label in labels if _sinks(label)), key=_anchor, reverse=True)
    placed: list[Bbox] = []
    moved = False
    for label in rising + sinking:
        box = label.get_window_extent(renderer)
        shift = _shift(box, placed, down=label in sinking)
        if shift:
            x, y = label.xyann
            label.xyann = (x, y + shift * points_per_px)
            moved = True
        placed.append(box.translated(0, shift))
    return moved


def spread_labels(fig: MplFigure, groups: list[list[Annotation]], rounds: int = 4) -> None:
    """Move point labels up or down (down for points in the upper half of their axes) until no two of a group
    overlap on the drawn figure (deterministic: the same points give the same placement). The figure is laid out
    again after each pass, as saving it will, until nothing moves or ``rounds`` passes are done."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    for _ in range(rounds):
        canvas.draw()
        renderer = canvas.get_renderer()
        moved = [_stack_labels(labels, renderer, 72.0 / fig.dpi) for labels in groups]
        if not any(moved):
            return


def safe(builder: Callable[[RunData], Figure], run: RunData, key: str, title: str) -> Figure:
    """Call ``builder``; an exception becomes a "not available" figure naming the error."""
    try:
        return builder(run)
    except Exception as exc:  # a figure must never stop the report
        return Figure(key, title, missing=f"error while drawing: {type(exc).__name__}: {exc}")


def pareto_front(points: pd.DataFrame, x: str, y: str, upper: str | None = None) -> pd.DataFrame:
    """The points no other point beats on both: lower ``x`` and higher ``y``; sorted by ``x``. With ``upper``
    (the top of each point's 95 % interval of ``y``) a faster point beats it only when it is more accurate than
    that: a difference inside the interval is a tie, and both stay on the front."""
    ordered = points.sort_values([x, y], ascending=[True, False])
    front, best = [], -np.inf
    for index, row in ordered.iterrows():
        tied = upper is not None and pd.notna(row[upper]) and best <= row[upper]
        if row[y] > best or tied:
            front.append(index)
        best = max(best, row[y])
    return ordered.loc[front]


def _scatter_panel(
    ax: Axes, points: pd.DataFrame, colors: dict[str, tuple], title: str, frame: pd.DataFrame
) -> list[Annotation]:
    """One accuracy-vs-latency panel; returns its point labels (for ``spread_labels``)."""
    for optimization, group in points.groupby("optimization"):
        ax.scatter(group["ms"], group["acc"], color=colors[optimization], label=optimization, s=36, zorder=3)
        if group["acc_sd"].notna().any():  # the spread over training seeds
            ax.errorbar(group["ms"], group["acc"], yerr=group["acc_sd"], fmt="none", ecolor=colors[optimization])
    labels = [
        ax.annotate(
            _job_label(row, frame), (row["ms"], row["acc"]), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
        for _, row in points.iterrows()
    ]
    front = pareto_front(points, "ms", "acc", upper="acc_high")
    ax.step(front["ms"], front["acc"], where="post", color="black", lw=1, ls="--", label="Pareto front", zorder=2)
    ax.scatter(front["ms"], front["acc"], facecolors="none", edgecolors="black", s=110, zorder=4)
    _log_if_wide(ax, points["ms"])
    ax.margins(x=0.18, y=0.08)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("p50 latency per clip (ms)")
    ax.grid(alpha=0.3)
    return labels


def accuracy_latency_points(run: RunData) -> pd.DataFrame:
    """One point per artifact (its smallest measured batch): ``ms`` per clip, ``acc`` top-1 in %, ``acc_high``
    the top of its 95 % interval, ``acc_sd`` its spread over training seeds."""
    rows = artifact_rows(run.frame)
    rows = rows[rows["latency_ms_p50"].notna()]
    if rows.empty:
        return rows
    intervals = [top1_interval(row) for _, row in rows.iterrows()]
    spread = rows["top1_seed_std"] if "top1_seed_std" in rows else pd.Series(np.nan, index=rows.index)
    return rows.assign(
        ms=rows.apply(per_clip_ms, axis=1),
        acc=rows["top1"] * 100,
        acc_high=[i[1] * 100 if i else np.nan for i in intervals],
        acc_sd=pd.to_numeric(spread, errors="coerce") * 100,
    )


def draw_accuracy_latency(points: pd.DataFrame, frame: pd.DataFrame) -> MplFigure:
    """The accuracy-vs-latency panels (all optimizations, then one each), labels spread so none overprint."""
    optimizations = sorted(points["optimization"].unique())
    colors = _colors(optimizations)
    fig, axes = _canvas(len(optimizations) + 1 if len(optimizations) > 1 else 1)
    groups = [_scatter_panel(axes[0], points, colors, "all optimizations", frame)]
    axes[0].legend(fontsize=7, loc="best")
    for ax, optimization in zip(axes[1:], optimizations, strict=False):
        groups.append(_scatter_panel(ax, points[points["optimization"] == optimization], colors, optimization, frame))
    axes[0].set_ylabel("top-1 on the test split (%)")
    spread_labels(fig, groups)
    return fig


def accuracy_latency(run: RunData) -> Figure:
    """Top-1 vs model-only latency per clip, Pareto front marked: all artifacts, then one panel each."""
    fig_key, title = "accuracy_latency", "Accuracy vs latency (Pareto front per optimization)"
    points = accuracy_latency_points(run)
    if points.empty:
        return Figure(fig_key, title, missing="no cell has both a top-1 and a latency (no ok row)")
    fig = draw_accuracy_latency(points, run.frame)
    absent = sorted(set(run.frame["optimization"]) - set(points["optimization"]))
    batches = ", ".join(str(b) for b in sorted(points["batch_size"].astype(int).unique()))
    caption = (
        f"Model-only p50 latency divided by the batch (batch {batches}: each artifact's smallest measured batch) "
        "against top-1. The dashed step joins the Pareto front: no other point is both faster and more accurate "
        "by more than the 95% interval of its top-1 (differences inside it are ties, kept on the front)."
    )
    if points["acc_sd"].notna().any():
        seeds = int(pd.to_numeric(points["seeds_n"], errors="coerce").max())
        caption += f" Top-1 is the mean over {seeds} training seeds; error bars: their standard deviation."
    if absent:
        caption += f" No ok cell to plot for: {', '.join(absent)} (see the table for the reasons)."
    return Figure(fig_key, title, caption, png=_png(fig))


def _one_per_job(run: RunData) -> pd.DataFrame:
    """One row per model job: its baseline row when measured, else its first ok artifact."""
    rows = artifact_rows(run.frame)
    if rows.empty:
        return rows
    rows = rows.assign(_other=rows["optimization"] != run.baseline).sort_values("_other", kind="stable")
    return rows.drop_duplicates(subset=["dataset", "model", "preset"]).drop(columns="_other").reset_index(drop=True)


def cost_accuracy(run: RunData) -> Figure:
    """Top-1 against parameters and against GFLOPs per clip, one point per model."""
    fig_key, title = "cost_accuracy", "Params and GFLOPs vs accuracy"
    rows = _one_per_job(run)
    if rows.empty:
        return Figure(fig_key, title, missing="no ok row with a top-1")
    fig, axes = _canvas(2)
    colors = _colors(list(rows["model"].unique()))
    groups: list[list[Annotation]] = []
    for ax, column, label in zip(axes, ("params_m", "gflops_per_clip"), ("params (M)", "GFLOPs per clip"), strict=True):
        sub = rows[rows[column].notna() & (rows[column] > 0)]
        groups.append([])
        for _, row in sub.iterrows():
            ax.scatter(row[column], row["top1"] * 100, color=colors[row["model"]], s=40)
            groups[-1].append(ax.annotate(_job_label(row, run.frame), (row[column], row["top1"] * 100), fontsize=7,
                                          xytext=(4, 3), textcoords="offset points"))  # fmt: skip
        if len(sub):
            _log_if_wide(ax, sub[column])
        ax.margins(x=0.2, y=0.1)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 (%)")
    spread_labels(fig, groups)
    caption = (
        "One point per model (its baseline row where measured). GFLOPs: fvcore, one fused multiply-add = one FLOP, "
        "one clip at the suite's T x crop x crop."
    )
    return Figure(fig_key, title, caption, png=_png(fig))


def size_on_disk(run: RunData) -> Figure:
    """Size on disk of every artifact that was built (failed ones hatched)."""
    fig_key, title = "size_on_disk", "Size on disk per artifact"
    frame = run.frame[run.frame["size_mb"].notna()]
    if frame.empty:
        return Figure(fig_key, title, missing="no artifact has a size (no cell got past preparation)")
    rows = frame.drop_duplicates(subset=["dataset", "model", "preset", "optimization"]).reset_index(drop=True)
    labels = [f"{_job_label(r, run.frame)} · {r['optimization']}" for _, r in rows.iterrows()]
    colors = _colors(sorted(rows["optimization"].unique()))
    fig = MplFigure(figsize=(8, 0.8 + 0.32 * len(rows)), dpi=100, layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(labels, rows["size_mb"], color=[colors[o] for o in rows["optimization"]])
    for bar, status in zip(bars, rows["status"], strict=True):
        if status != "ok":
            bar.set_hatch("//")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in rows["size_mb"]], fontsize=7, padding=2)
    ax.invert_yaxis()
    ax.set_xlabel("MB on disk (MiB)")
    ax.grid(axis="x", alpha=0.3)
    caption = (
        "Every file of the artifact (ONNX graph + external weights, the saved state dict of a PyTorch artifact). "
        "Hatched: failed."
    )
    return Figure(fig_key, title, caption, png=_png(fig))


def _swept(frame: pd.DataFrame) -> bool:
    """Whether the run measured its cells at several thread counts (``measure.threads: [1, 2]``)."""
    return "threads" in frame and frame["threads"].nunique() > 1


def _column(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column of ``frame``, all NaN when the rows do not carry it (runs before it was recorded)."""
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def _uncertain(merged: pd.DataFrame, low: pd.Series, high: pd.Series, speedup: pd.Series) -> pd.Series:
    """Each row's ``speedup_uncertain``; where absent, whether its interval is too wide (NA: no interval)."""
    both = low.notna() & high.notna()
    wide = pd.Series([interval_too_wide(a, b) if ok else None for a, b, ok in zip(low, high, both, strict=True)],
                     index=merged.index, dtype=object)  # fmt: skip
    recorded = merged["speedup_uncertain"] if "speedup_uncertain" in merged else pd.Series(None, index=merged.index)
    return recorded.where(recorded.notna(), wide).map(lambda v: None if pd.isna(v) else bool(v))


def _speedup_rows(frame: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """Each ok row of another optimization against the baseline's row of the same model and batch, with its
    speedup (the interleaved median ratio where the row carries one, else baseline p50 / its p50), the speedup's
    95 % interval (``low``, ``high``; NaN when not recorded), ``interleaved`` (the speedup is the recorded one)
    and ``uncertain``."""
    ok = frame[frame["status"] == "ok"]
    keys = ["dataset", "model", "preset", "batch_size"] + (["threads"] if _swept(frame) else [])
    reference = ok[ok["optimization"] == baseline][[*keys, "latency_ms_p50", "top1"]]
    merged = ok[ok["optimization"] != baseline].merge(reference, on=keys, suffixes=("", "_ref"))
    recorded = _column(merged, "speedup")
    interleaved = recorded.notna()
    speedup = recorded.where(interleaved, merged["latency_ms_p50_ref"] / merged["latency_ms_p50"])
    low = _column(merged, "speedup_ci95_low").where(interleaved)
    high = _column(merged, "speedup_ci95_high").where(interleaved)
    threads = {"threads": merged["threads"].astype(int)} if _swept(frame) else {}
    return pd.DataFrame(
        {
            "model": merged["model"] + "/" + merged["preset"],
            "optimization": merged["optimization"],
            "batch": merged["batch_size"].astype(int),
            **threads,
            "speedup": speedup,
            "low": low,
            "high": high,
            "interleaved": interleaved,
            "uncertain": _uncertain(merged, low, high, speedup).where(interleaved, None),
            "top-1 delta (points)": ((merged["top1"] - merged["top1_ref"]) * 100).round(2),
        }
    )


def _interval_text(low: float, high: float) -> str:
    return "-" if pd.isna(low) or pd.isna(high) else f"{low:.2f}-{high:.2f}"


def speedup_table(frame: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """Each ok row of another optimization against the baseline's row of the same model and batch: speedup and
    top-1 delta. The speedup is the row's own (median over interleaved rounds of the per-round p50 ratio) where
    it carries one, with its 95 % interval and whether that interval is too wide (``uncertain``);
    otherwise (runs before interleaved timing) baseline p50 / optimized p50."""
    rows = _speedup_rows(frame, baseline)
    table = rows.drop(columns=["low", "high", "interleaved", "uncertain"]).rename(columns={"speedup": "speedup x"})
    table["speedup x"] = table["speedup x"].round(2)
    if rows["interleaved"].any():
        at = table.columns.get_loc("top-1 delta (points)")
        table.insert(at, "uncertain", rows["uncertain"])
        intervals = [_interval_text(*pair) for pair in zip(rows["low"], rows["high"], strict=True)]
        table.insert(at, "95% interval", intervals)
    return table


def _speedup_caption(rows: pd.DataFrame, baseline: str) -> str:
    """How the speedups of ``rows`` were computed: the interleaved rule, the p50 ratio, or both."""
    ratio = f"{baseline} p50 / optimized p50 at the same batch"
    tail = " (>1 is faster); top-1 delta in percentage points."
    if not rows["interleaved"].any():
        return f"Speedup = {ratio}{tail}"
    caption = (
        f"Speedup = median over the interleaved timing rounds of {baseline}'s round p50 / the optimized artifact's "
        f"round p50, at the same batch{tail} Error bars and the table's 95% interval: the interval of that median "
        "(order statistics); uncertain: the interval spans more than 1.5x (high / low, about +-20%)."
    )
    if not rows["interleaved"].all():
        caption += f" Rows without interleaved rounds (older runs, artifacts timed alone): {ratio}, no interval."
    return caption


def _speedup_bars(ax: Axes, x: np.ndarray, sub: pd.DataFrame, color: tuple, label: str, width: float) -> None:
    """One optimization's speedup bars, with the 95 % interval as error bars where the rows carry it."""
    ax.bar(x, sub["speedup"], width, label=label, color=color)
    known = (sub["low"].notna() & sub["high"].notna()).to_numpy()
    if known.any():
        y, low, high = (sub[c].to_numpy(dtype=float)[known] for c in ("speedup", "low", "high"))
        yerr = np.vstack([np.clip(y - low, 0, None), np.clip(high - y, 0, None)])
        ax.errorbar(x[known], y, yerr=yerr, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)


def speedup_vs_baseline(run: RunData) -> Figure:
    """Speedup (the interleaved median ratio, with its 95 % interval, where the rows carry it; else baseline p50 /
    optimized p50) and top-1 delta in points of each optimization, per model."""
    baseline = run.baseline
    fig_key, title = "speedup", f"Speedup and accuracy delta vs {baseline or 'the baseline'}"
    if baseline is None:
        return Figure(fig_key, title, missing="the suite has no baseline optimization: nothing to compare against")
    ok = run.ok
    if ok[ok["optimization"] == baseline].empty:
        return Figure(fig_key, title, missing=f"no {baseline} cell measured ok: nothing to compare against")
    rows = _speedup_rows(run.frame, baseline)
    if rows.empty:
        return Figure(fig_key, title, missing=f"no optimization other than {baseline} was measured ok")
    groups = [f"{m} b{b}" for m, b in zip(rows["model"], rows["batch"], strict=True)]
    if "threads" in rows:
        groups = [f"{g} {t}t" for g, t in zip(groups, rows["threads"], strict=True)]
    rows = rows.assign(group=groups)
    names, optimizations = list(dict.fromkeys(groups)), sorted(rows["optimization"].unique())
    colors, width = _colors(optimizations), 0.8 / len(optimizations)
    fig, axes = _canvas(2, width=max(4.6, 0.9 * len(names)))
    for i, optimization in enumerate(optimizations):
        sub = rows[rows["optimization"] == optimization].set_index("group").reindex(names)
        x = np.arange(len(names)) + i * width
        _speedup_bars(axes[0], x, sub, colors[optimization], optimization, width)
        axes[1].bar(x, sub["top-1 delta (points)"], width, label=optimization, color=colors[optimization])
    for ax, label, level in zip(axes, ("speedup x", "top-1 delta (points)"), (1.0, 0.0), strict=True):
        ax.axhline(level, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    caption = _speedup_caption(rows, baseline)
    return Figure(fig_key, title, caption, png=_png(fig), table=speedup_table(run.frame, baseline))


def latency_histograms(run: RunData) -> Figure:
    """The distribution of every timed call of each artifact at the smallest batch measured, one panel per
    model job, one outline per optimization (log-spaced bins: the tail shows)."""
    fig_key, title = "latency_histograms", "Latency distribution per artifact"
    ok = run.ok
    if ok.empty or "job" not in ok:
        return Figure(fig_key, title, missing="no cell was measured ok")
    batch = int(ok["batch_size"].min())
    swept = _swept(run.frame)
    rows = ok[ok["batch_size"] == batch].drop_duplicates(subset=["job", "optimization", "threads"])
    panels: dict[str, list[tuple[str, np.ndarray]]] = {}
    for _, row in rows.iterrows():
        task = row.get("measure_task")
        samples = run.latency_samples(row["job"], task if isinstance(task, str) else row["optimization"], batch)
        if samples is not None and samples.size:
            name = row["optimization"] + (f", {int(row['threads'])} threads" if swept else "")
            panels.setdefault(_job_label(row, run.frame), []).append((name, samples))
    if not panels:
        kept = f"no cell kept its timed calls (logs/<job>/<optimization>/) at batch {batch}"
        return Figure(fig_key, title, missing=kept)
    columns = min(3, len(panels))
    lines = -(-len(panels) // columns)
    fig = MplFigure(figsize=(4.4 * columns, 3.2 * lines), dpi=100, layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    colors = _colors(sorted({name for series in panels.values() for name, _ in series}))
    for ax, (label, series) in zip(axes, panels.items(), strict=False):
        low = min(float(s.min()) for _, s in series)
        high = max(float(s.max()) for _, s in series)
        bins = np.geomspace(max(low, 1e-3), max(high, low * 1.01, 1e-3 * 1.01), 40)
        for optimization, samples in series:
            cv = 100 * samples.std() / samples.mean() if samples.mean() > 0 else float("nan")
            ax.hist(
                samples, bins=bins, histtype="step", lw=1.4, color=colors[optimization],
                label=f"{optimization} (n={samples.size}, CV {cv:.0f}%)",
            )  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(f"ms per call, batch {batch}")
        ax.set_ylabel("calls")
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    caption = (
        f"Every timed call at batch {batch} (warm-up calls excluded), as kept in logs/<job>/<optimization>/"
        f"latency_ms_bs{batch}.npy; engine artifacts are the calls timed alone in a fresh process. A p99 from fewer "
        "than 100 calls is marked in the table, and so is a row whose speedup's 95 % interval is wider than +-10 % "
        "(uncertain; in runs before interleaved timing, a CV above 10 % marks the row unstable)."
    )
    return Figure(fig_key, title, caption, png=_png(fig))


def _per_class(job: JobFiles) -> dict[str, float | None] | None:
    return (job.analysis or {}).get("per_class_accuracy") or None


def per_class_heatmap(run: RunData) -> Figure:
    """Per-class top-1 of each trained model (its own weights, test split) as a models x classes heatmap."""
    fig_key, title = "per_class", "Per-class accuracy across models"
    have = [j for j in run.jobs if _per_class(j)]
    if not have:
        reasons = "; ".join(j.missing_reason("per-class accuracy (analysis.json)") for j in run.jobs)
        reasons = reasons or "the run has no model job"
        return Figure(fig_key, title, missing=reasons)
    classes = list(dict.fromkeys(c for j in have for c in _per_class(j)))
    values = np.array([[_nan(_per_class(j).get(c)) * 100 for c in classes] for j in have])
    fig = MplFigure(figsize=(min(2 + 0.45 * len(classes), 18), 1.4 + 0.45 * len(have)), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(have)), [j.label for j in have], fontsize=8)
    ax.set_xticks(range(len(classes)), classes if len(classes) <= 60 else [""] * len(classes), rotation=60, ha="right",
                  fontsize=7)  # fmt: skip
    if values.size <= 400:
        for (i, k), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(k, i, f"{v:.0f}", ha="center", va="center", fontsize=6, color="white" if v < 60 else "black")
    fig.colorbar(image, ax=ax, label="top-1 (%)")
    lacking = [j.missing_reason("per-class accuracy (analysis.json)") for j in run.jobs if not _per_class(j)]
    caption = "The trained model of each job on the test split; rows are models, columns classes."
    if lacking:
        caption += " Not available: " + "; ".join(lacking) + "."
    return Figure(fig_key, title, caption, png=_png(fig))


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def best_confusion(run: RunData) -> Figure:
    """The confusion matrix (row-normalised) of the most accurate trained model."""
    fig_key, title = "confusion", "Confusion matrix of the best model"
    have = [j for j in run.jobs if (j.analysis or {}).get("confusion")]
    if not have:
        reasons = "; ".join(j.missing_reason("confusion matrix (analysis.json)") for j in run.jobs)
        reasons = reasons or "the run has no model job"
        return Figure(fig_key, title, missing=reasons)
    best = max(have, key=lambda j: j.analysis.get("top1") or -1.0)
    counts = np.array(best.analysis["confusion"], dtype=float)
    classes = list(_per_class(best) or [str(i) for i in range(len(counts))])
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(3 + 0.32 * len(classes), 14)
    fig = MplFigure(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(normalised * 100, vmin=0, vmax=100, cmap="Blues")
    ticks = classes if len(classes) <= 60 else [""] * len(classes)
    ax.set_xticks(range(len(classes)), ticks, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), ticks, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, label="share of the true class (%)")
    top1 = best.analysis.get("top1") or float("nan")
    caption = (
        f"{best.label} (trained model, {top1 * 100:.1f}% top-1 on {int(counts.sum())} test clips), rows normalised."
    )
    return Figure(fig_key, f"{title}: {best.label}", caption, png=_png(fig))


def temporal_probes(run: RunData) -> Figure:
    """Top-1 on intact clips and on reversed / shuffled / frame-dropped / frozen copies, per model."""
    fig_key, title = "probes", "Temporal probes"
    columns = [(c, label) for c, label in PROBE_COLUMNS if c in run.frame.columns]
    rows = _one_per_job(run)
    if len(columns) < 2 or rows.empty:
        return Figure(fig_key, title, missing="no ok row with temporal-probe columns (top1_reversed, ...)")
    rows = rows[rows[[c for c, _ in columns[1:]]].notna().any(axis=1)]
    if rows.empty:
        return Figure(fig_key, title, missing="the probes were not run (top1_reversed, ... are empty)")
    names = [_job_label(r, run.frame) for _, r in rows.iterrows()]
    width = 0.8 / len(columns)
    fig, axes = _canvas(1, width=max(6.0, 1.3 * len(names)))
    ax = axes[0]
    colors = _colors([label for _, label in columns])
    for i, (column, label) in enumerate(columns):
        ax.bar(np.arange(len(names)) + i * width, rows[column] * 100, width, label=label, color=colors[label])
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8)
    ax.set_ylabel("top-1 (%)")
    ax.legend(fontsize=7, ncol=len(columns))
    ax.grid(axis="y", alpha=0.3)
    caption = (
        "Top-1 on the same test clips edited in time: played backwards, frames shuffled, every other frame "
        "dropped (each kept twice), one frame repeated. A model that ignores order loses nothing; one that uses "
        "motion drops towards chance. One bar group per model (its baseline artifact where measured)."
    )
    return Figure(fig_key, title, caption, png=_png(fig))


def tsne_figures(run: RunData) -> list[Figure]:
    """The t-SNE of each model's test-split embeddings, as the evaluation drew it (one figure per model)."""
    figures = []
    for job in run.jobs:
        key, title = f"tsne_{job.model}_{job.preset}", f"t-SNE of embeddings: {job.label}"
        path = job.tsne_png
        if path is None:
            figures.append(Figure(key, title, missing=job.missing_reason(job.files.tsne.name)))
            continue
        figures.append(
            Figure(key, title, "The trained model's pooled features before the head.", png=path.read_bytes())
        )
    return figures


def _gflops_of(run: RunData, job: JobFiles) -> float | None:
    """Forward GFLOPs per clip of a job, from its rows."""
    rows = run.frame[(run.frame["model"] == job.model) & (run.frame["preset"] == job.preset)]
    values = rows["gflops_per_clip"].dropna() if "gflops_per_clip" in rows else pd.Series(dtype=float)
    return float(values.iloc[0]) if len(values) else None


def _training_pflops(history: pd.DataFrame, gflops: float) -> pd.Series:
    """Cumulative training compute after each epoch: forward GFLOPs x 3 x clips seen, in PFLOPs."""
    clips = history["clips"] if "clips" in history else history["clips_per_s"] * history["epoch_s"]
    return clips.fillna(history["clips_per_s"] * history["epoch_s"]).cumsum() * gflops * 3 / 1e6


def training_curves(run: RunData) -> Figure:
    """Loss and train / validation top-1 per epoch, and validation top-1 against training compute, one line
    per model (a model a budget stopped is labelled "not converged")."""
    fig_key, title = "training", "Training curves"
    have = [j for j in run.jobs if j.history]
    if not have:
        reasons = "; ".join(j.missing_reason(j.files.metrics.name) for j in run.jobs) or "the run has no model job"
        return Figure(fig_key, title, missing=reasons)
    fig, axes = _canvas(3)
    colors = _colors([j.label for j in have])
    for job in have:
        history = pd.DataFrame(job.history)
        label = job.label + ("" if job.converged is not False else " (not converged)")
        axes[0].plot(history["epoch"], history["loss"], marker="o", ms=3, color=colors[job.label], label=label)
        axes[1].plot(history["epoch"], history["train_top1"] * 100, ls="--", color=colors[job.label])
        gflops = _gflops_of(run, job)
        if "val_top1" in history and history["val_top1"].notna().any():
            axes[1].plot(history["epoch"], history["val_top1"] * 100, marker="o", ms=3, color=colors[job.label])
            if gflops:
                compute = _training_pflops(history, gflops)
                axes[2].plot(compute, history["val_top1"] * 100, marker="o", ms=3, color=colors[job.label])
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("top-1 (%): train dashed, validation solid")
    axes[2].set_ylabel("validation top-1 (%)")
    for ax, xlabel in zip(axes, ("epoch", "epoch", "training compute (PFLOPs)"), strict=True):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    lacking = [j.missing_reason("training history (metrics.jsonl)") for j in run.jobs if not j.history]
    caption = (
        "From each job's metrics.jsonl (the same scalars as its TensorBoard log). Training compute: forward GFLOPs "
        "per clip x 3 x training clips seen."
    )
    budget = [f"{j.label} ({(j.train or {}).get('stopped_by', '?')})" for j in have if j.converged is False]
    if budget:
        caption += f" Not converged (stopped by a budget, not at a plateau): {', '.join(budget)}."
    if lacking:
        caption += " Not available: " + "; ".join(lacking) + "."
    return Figure(fig_key, title, caption, png=_png(fig))


def time_split(run: RunData) -> Figure:
    """End-to-end time per clip split into decode, transform and model, per artifact."""
    fig_key, title = "time_split", "Decode / transform / model time split"
    columns = [(c, label) for c, label in E2E_COLUMNS if c in run.frame.columns]
    if len(columns) < len(E2E_COLUMNS):
        return Figure(fig_key, title, missing="this run's rows have no end-to-end columns (e2e_decode_ms, ...)")
    rows = run.ok[run.ok["e2e_model_ms"].notna()]
    rows = rows.drop_duplicates(subset=["dataset", "model", "preset", "optimization"]).reset_index(drop=True)
    if rows.empty:
        return Figure(fig_key, title, missing="no ok row has end-to-end timings")
    labels = [f"{_job_label(r, run.frame)} · {r['optimization']}" for _, r in rows.iterrows()]
    fig = MplFigure(figsize=(8, 0.9 + 0.32 * len(rows)), dpi=100, layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(rows))
    colors = _colors([label for _, label in columns])
    for column, label in columns:
        values = rows[column].fillna(0).to_numpy(dtype=float)
        ax.barh(labels, values, left=left, label=label, color=colors[label])
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("ms per clip (end to end)")
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    caption = (
        "File to prediction on the first test clips in one process (no loader workers), at the largest batch "
        "measured: decoding, the eval transforms, and the model call, per clip."
    )
    return Figure(fig_key, title, caption, png=_png(fig))

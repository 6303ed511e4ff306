"""The report's automatic summary paragraph, computed from the result table (never written by hand)."""

from __future__ import annotations

import re

import pandas as pd

from vidbench.results import INPUT_VARIANT
from vidbench.stats import SEED_GROUP, wilson_interval

ARTIFACT_COLUMNS: tuple[str, ...] = ("dataset", "model", "preset", "optimization")
"""The columns that identify one artifact (a model job under one optimization)."""

WITHIN_POINTS = 1.0
""""Fastest within N points of the best accuracy": N, in top-1 percentage points, for rows that do not record
their test-split size (the 95 % interval of the best's top-1 is used where they do)."""
MAX_TIES_NAMED = 6
SPEEDUP_COLUMNS: tuple[str, str, str] = ("speedup", "speedup_ci95_low", "speedup_ci95_high")
"""A row's speedup over the baseline from interleaved timing, and its 95 % interval (absent in older runs)."""


def pool_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell over its training seeds: top-1 their mean (``top1_seed_std`` the spread), the test clips
    their sum (the interval then covers the pooled clips), latency their median, converged only if all were."""
    if "seeds_n" not in rows or not (pd.to_numeric(rows["seeds_n"], errors="coerce") > 1).any():
        return rows
    group = list(SEED_GROUP)
    pooled = rows.groupby(group, sort=False, dropna=False).agg(
        {
            **{c: "first" for c in rows.columns if c not in group},
            "top1": "mean",
            "test_clips": "sum",
            "latency_ms_p50": "median",
            "converged": lambda v: not v.map(stopped_by_budget).any(),
        }
    )
    return pooled.reset_index()


def artifact_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows, one per artifact: the row at its smallest measured batch size (accuracy and size
    do not depend on the batch; latency is then compared at the same, smallest batch), pooled over seeds."""
    ok = frame[(frame["status"] == "ok") & frame["top1"].notna()]
    if ok.empty:
        return ok
    ok = pool_seeds(ok)
    ok = ok.sort_values("batch_size", kind="stable")
    return ok.drop_duplicates(subset=list(ARTIFACT_COLUMNS), keep="first").reset_index(drop=True)


def stopped_by_budget(converged: object) -> bool:
    """A row's ``converged`` says its job stopped by a budget, not at a plateau (unknown counts as not)."""
    return converged is not None and not pd.isna(converged) and not bool(converged)


def not_converged(rows: pd.DataFrame) -> pd.Series:
    """Rows whose job was stopped by a budget."""
    if "converged" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["converged"].map(stopped_by_budget)


def name(row: pd.Series) -> str:
    """``model/preset (optimization)``, marked when the model did not converge."""
    mark = " [not converged]" if stopped_by_budget(row.get("converged")) else ""
    return f"{row['model']}/{row['preset']} ({row['optimization']}){mark}"


def _ranked(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows the summary ranks, and what it says of the ones it leaves out: a model stopped by a budget is
    never ranked silently beside converged ones."""
    budget = not_converged(rows)
    if not budget.any():
        return rows, ""
    jobs = ", ".join(
        sorted(
            {f"{r['model']}/{r['preset']} ({r.get('stopped_by') or 'a budget'})" for _, r in rows[budget].iterrows()}
        )
    )
    if budget.all():
        return (
            rows,
            f"no model converged (each stopped by a budget: {jobs}), so this ranking is among not-converged models",
        )
    return rows[~budget], f"left out as not converged (stopped by a budget): {jobs}"


def per_clip_ms(row: pd.Series) -> float:
    """Model-only p50 latency per clip, in ms, at the row's batch size."""
    return float(row["latency_ms_p50"]) / max(int(row["batch_size"]), 1)


def top1_interval(row: pd.Series) -> tuple[float, float] | None:
    """The 95 % Wilson interval of a row's top-1 for its test-split size; ``None`` when the row does not record
    the size (rows written before it was)."""
    clips = row.get("test_clips")
    if clips is None or pd.isna(clips) or int(clips) <= 0:
        return None
    return wilson_interval(float(row["top1"]), int(clips))


def _best(rows: pd.DataFrame) -> tuple[str, float, str]:
    """The best-accuracy clause (the artifacts whose top-1 lies inside the best's interval named as a tie), the
    lowest top-1 that still counts as the best's, and how that floor is put in words."""
    best = rows.loc[rows["top1"].idxmax()]
    text = f"best accuracy: {name(best)} at {best['top1'] * 100:.1f}% top-1"
    interval = top1_interval(best)
    if interval is None:
        return text, float(best["top1"]) - WITHIN_POINTS / 100, f"{WITHIN_POINTS:g} point of best"
    low, high = interval
    text += f" (95% interval {low * 100:.1f}-{high * 100:.1f}%, {int(best['test_clips'])} test clips)"
    tied = rows[(rows.index != best.name) & (rows["top1"] >= low)].sort_values("top1", ascending=False)
    if not tied.empty:
        named = [f"{name(r)} {r['top1'] * 100:.1f}%" for _, r in tied.head(MAX_TIES_NAMED).iterrows()]
        more = f" and {len(tied) - MAX_TIES_NAMED} more" if len(tied) > MAX_TIES_NAMED else ""
        text += f", a tie with {', '.join(named)}{more} (inside that interval)"
    return text, low, "the best's 95% interval"


def speed_interval(row: pd.Series) -> tuple[float, float] | None:
    """The 95 % interval of a row's per-clip p50 implied by the interval of its speedup over the baseline
    (interleaved timing): per-clip p50 x speedup / high to x speedup / low. The baseline's own row (speedup 1.0,
    no interval of its own) is the point itself; ``None`` when the row records no speedup interval (rows timed
    alone, runs before interleaved timing)."""
    speedup, low, high = (pd.to_numeric(row.get(c), errors="coerce") for c in SPEEDUP_COLUMNS)
    if pd.isna(speedup) or speedup <= 0:
        return None
    ms = per_clip_ms(row)
    if pd.isna(low) or pd.isna(high) or low <= 0:
        return (ms, ms) if speedup == 1.0 else None
    return ms * speedup / high, ms * speedup / low


def _speed_ties(timed: pd.DataFrame, fast: pd.Series) -> str:
    """The clause naming the rows as fast as ``fast``: those whose speed intervals (see :func:`speed_interval`)
    overlap its own, a tie as for accuracy; empty when ``fast`` has no interval or nothing overlaps."""
    interval = speed_interval(fast)
    if interval is None:
        return ""
    low, high = interval
    others = [(r, speed_interval(r)) for _, r in timed[timed.index != fast.name].iterrows()]
    tied = sorted((r for r, i in others if i is not None and i[0] <= high and low <= i[1]), key=per_clip_ms)
    if not tied:
        return ""
    named = [f"{name(r)} {per_clip_ms(r):.2f} ms" for r in tied[:MAX_TIES_NAMED]]
    more = f" and {len(tied) - MAX_TIES_NAMED} more" if len(tied) > MAX_TIES_NAMED else ""
    return f", a tie with {', '.join(named)}{more} (their speedups' 95% intervals overlap)"


def view_count(views: object) -> int:
    """Clips per video of a row's multi-view testing (``"2 x 3"``: 6); 1 for single-view rows."""
    numbers = [int(n) for n in re.findall(r"\d+", str(views))] if isinstance(views, str) else []
    return max(1, int(pd.Series(numbers).prod())) if numbers else 1


def gflops_per_video(row: pd.Series) -> float:
    """A row's forward GFLOPs per video: per clip x the clips of its multi-view testing (pytorchvideo's model
    zoo convention)."""
    return float(row.get("gflops_per_clip") or float("nan")) * view_count(row.get("views"))


def _cheapest_input(equals: pd.DataFrame, near: str) -> str:
    """The clause naming the cheapest input of an input-cost sweep (GFLOPs per video) among the best's equals;
    empty when the run sweeps no input."""
    swept = equals[equals["preset"].astype(str).str.contains(INPUT_VARIANT)]
    if swept.empty or swept["gflops_per_clip"].isna().all():
        return ""
    cheap = swept.loc[swept.apply(gflops_per_video, axis=1).idxmin()]
    return (
        f"cheapest input within {near}: {name(cheap)} at {gflops_per_video(cheap):.3g} GFLOPs per video "
        f"({cheap['top1'] * 100:.1f}% top-1)"
    )


def _dataset_summary(rows: pd.DataFrame) -> list[str]:
    rows, left_out = _ranked(rows)
    best_text, floor, near = _best(rows)
    parts = [left_out, best_text] if left_out else [best_text]
    # The fastest and the smallest count only among the best's equals: a tiny control at chance is no choice.
    equals = rows[rows["top1"] >= floor - 1e-12]
    timed = equals[equals["latency_ms_p50"].notna()]
    if not timed.empty:
        fast = timed.loc[timed.apply(per_clip_ms, axis=1).idxmin()]
        parts.append(
            f"fastest within {near}: {name(fast)} at {per_clip_ms(fast):.2f} ms per clip "
            f"(batch {int(fast['batch_size'])}, {fast['top1'] * 100:.1f}% top-1){_speed_ties(timed, fast)}"
        )
    sized = equals[equals["size_mb"].notna()]
    if not sized.empty:
        small = sized.loc[sized["size_mb"].idxmin()]
        parts.append(
            f"smallest within {near}: {name(small)} at {small['size_mb']:.2f} MB ({small['top1'] * 100:.1f}% top-1)"
        )
    cheapest = _cheapest_input(equals, near)
    return [*parts, cheapest] if cheapest else parts


def _seed_note(frame: pd.DataFrame) -> str:
    """How many training seeds stand behind each top-1, and so what its interval covers."""
    seeds = pd.to_numeric(frame.get("seeds_n", pd.Series(dtype=float)), errors="coerce")
    if (seeds > 1).any():
        return (
            f"Top-1 is the mean over {int(seeds.max())} training seeds (spread in the table and as error bars); "
            "its interval pools their test clips."
        )
    return (
        "Each model was trained with one seed: the intervals cover the sampling of test clips, not the spread "
        "between training runs (train.seeds measures it)."
    )


def summary_paragraph(frame: pd.DataFrame) -> str:
    """One paragraph: best accuracy, fastest and smallest within the best's interval, and the cells that were
    not measured; one clause group per dataset when the run has several."""
    rows = artifact_rows(frame)
    sentences = []
    if rows.empty:
        sentences.append("No cell was measured successfully, so there is no best, fastest or smallest.")
    for dataset, group in rows.groupby("dataset", sort=True):
        prefix = f"On {dataset}: " if rows["dataset"].nunique() > 1 else ""
        sentences.append(prefix + "; ".join(_dataset_summary(group)) + ".")
    if not rows.empty:
        sentences.append(_seed_note(frame))
    counts = frame["status"].value_counts()
    missing = [f"{int(counts[s])} {s}" for s in ("failed", "unsupported") if counts.get(s, 0)]
    total = f"{len(frame)} cells, {int(counts.get('ok', 0))} ok"
    sentences.append(f"{total}, {', '.join(missing)} (reasons below)." if missing else f"{total}.")
    return " ".join(sentences)

"""How well two runs of one suite agree on every speedup over the baseline (interleaved timing).

For each cell ``ok`` in both runs with a speedup (not the baseline's own row): both speedups, their 95 %
intervals, whether each run's speedup lies inside the other's interval, and the relative difference. Then the
distribution: how many cells agree within their intervals, how many differ by at most 10 %, and how many rows
of each run are flagged uncertain.

Run: ``python benchmarks/speedup_agreement.py results/<suite>/<run_a> results/<suite>/<run_b>``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vidbench.report.compare import paired
from vidbench.report.rundata import load_frame
from vidbench.stats import UNCERTAIN_SPAN, interval_too_wide

CLOSE = 0.10
"""Two speedups "differ by at most 10 %": |b - a| / a <= this."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args()
    frames = [load_frame(run) for run in (args.run_a, args.run_b)]
    pairs = paired(*frames)
    pairs = pairs[(pairs["status_a"] == "ok") & (pairs["status_b"] == "ok")]
    pairs = pairs[pairs["speedup_a"].notna() & pairs["speedup_b"].notna()]
    pairs = pairs[~((pairs["speedup_a"] == 1.0) & (pairs["speedup_ci95_high_a"] == 1.0))]  # the baseline's rows
    if pairs.empty:
        print("no cell has a speedup in both runs")
        return
    print(f"{'cell':58} {'A':>6} {'A 95%':>13} {'B':>6} {'B 95%':>13} {'diff':>7}  inside")
    diffs, inside = [], []
    for _, row in pairs.iterrows():
        a, b = float(row["speedup_a"]), float(row["speedup_b"])
        low_a, high_a = float(row["speedup_ci95_low_a"]), float(row["speedup_ci95_high_a"])
        low_b, high_b = float(row["speedup_ci95_low_b"]), float(row["speedup_ci95_high_b"])
        agrees = low_a <= b <= high_a or low_b <= a <= high_b
        diffs.append((b - a) / a)
        inside.append(agrees)
        cell = f"{row['model']}/{row['preset']} {row['optimization']} b{int(row['batch_size'])}"
        print(
            f"{cell:58} {a:6.2f} {low_a:6.2f}-{high_a:<6.2f} {b:6.2f} {low_b:6.2f}-{high_b:<6.2f} "
            f"{diffs[-1]:+7.1%}  {'yes' if agrees else 'NO'}"
        )
    spread = np.abs(np.asarray(diffs))
    print(f"\n{len(diffs)} cells with a speedup in both runs")
    print(f"each run's speedup inside the other's 95 % interval (either way): {sum(inside)} of {len(inside)}")
    print(f"within {CLOSE:.0%} of each other: {int((spread <= CLOSE).sum())} of {len(spread)} "
          f"({(spread <= CLOSE).mean():.0%}); |difference| median {np.median(spread):.1%}, "
          f"90th percentile {np.percentile(spread, 90):.1%}, max {spread.max():.1%}")  # fmt: skip
    for name, frame in zip(("A", "B"), frames, strict=True):
        ok = frame[(frame["status"] == "ok") & frame["speedup"].notna()] if "speedup" in frame else frame.iloc[0:0]
        flagged = int(ok["speedup_uncertain"].fillna(False).astype(bool).sum()) if not ok.empty else 0
        bounds = zip(ok["speedup_ci95_low"], ok["speedup_ci95_high"], strict=True)
        rule = sum(interval_too_wide(low, high) for low, high in bounds)
        share = flagged / max(len(ok), 1)
        print(f"run {name}: {flagged} of {len(ok)} ok rows flagged uncertain in the run ({share:.0%}); "
              f"{rule} by today's rule (interval wider than {UNCERTAIN_SPAN}x)")  # fmt: skip


if __name__ == "__main__":
    main()

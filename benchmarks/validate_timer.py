"""Validate vidbench's latency timer against ``torch.utils.benchmark.Timer`` on the same model, in the
same process: the two medians should agree within a few percent.

    python benchmarks/validate_timer.py --model r2plus1d --preset r18 --threads 2

Prints both medians and their ratio; exits non-zero when they differ by more than ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.utils.benchmark as tbench

from vidbench.measure.latency import LatencyPlan, measure_latency
from vidbench.plugins import load_plugins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="r2plus1d")
    parser.add_argument("--preset", default="r18")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    spec = load_plugins().model(args.model)
    preset = spec.presets[args.preset]
    model = spec.build(preset, 400).eval()
    clip = torch.randn(args.batch, 3, preset.input.frames, preset.input.crop, preset.input.crop)

    @torch.inference_mode()
    def call() -> None:
        model(clip)

    ours = measure_latency(call, LatencyPlan(warmup=3, min_iters=20, min_seconds=args.min_seconds))
    timer = tbench.Timer(stmt="call()", globals={"call": call}, num_threads=args.threads)
    reference = timer.blocked_autorange(min_run_time=args.min_seconds)
    theirs_ms = reference.median * 1e3
    ratio = ours.p50_ms / theirs_ms
    print(
        f"{args.model}/{args.preset} batch {args.batch}, {args.threads} threads, "
        f"{preset.input.frames}x{preset.input.crop}x{preset.input.crop}"
    )
    print(f"vidbench p50:            {ours.p50_ms:.2f} ms over {ours.iterations} calls (CV {ours.cv_pct:.1f}%)")
    calls = reference.number_per_run * len(reference.times)
    print(f"torch.utils.benchmark:   {theirs_ms:.2f} ms median over {calls} calls")
    print(f"ratio vidbench / torch:  {ratio:.3f}")
    return 0 if abs(ratio - 1) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

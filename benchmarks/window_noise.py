"""How long must a timed window be on this machine? One artifact, one process, consecutive windows.

Loads one engine artifact (ONNX Runtime ``.onnx`` or OpenVINO ``.xml``) once, with the harness's own
session settings (:mod:`vidbench.measure.alone`), then times ``--count`` consecutive windows of each
``--seconds`` length and prints each window's p50 beside the hypervisor's steal time over it (``/proc/stat``).
The summary line per length is the range of the window p50s relative to their median: the share of the
variation between two timings of one file that a window of that length cannot average away. Nothing changes
between windows but the clock, so what remains is the machine (a shared VM's neighbours), not the harness.

Run: ``python benchmarks/window_noise.py onnxruntime FILE --shape 8,3,8,32,32 [--seconds 2 10] [--count 5]``
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from vidbench.measure.alone import LOADERS
from vidbench.measure.latency import LatencyPlan, measure_latency


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies over all CPUs since boot; (0, 0) where ``/proc/stat`` is missing."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0, 0
    return fields[7] if len(fields) > 7 else 0, sum(fields[:8])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=sorted(LOADERS))
    parser.add_argument("file", type=Path)
    parser.add_argument("--shape", required=True, help="input shape, comma separated (B,C,T,H,W)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 10.0], help="window lengths")
    parser.add_argument("--count", type=int, default=5, help="consecutive windows per length")
    args = parser.parse_args()
    call = LOADERS[args.engine](args.file, args.threads)([int(x) for x in args.shape.split(",")])
    measure_latency(call, LatencyPlan(warmup=10, min_iters=1, min_seconds=0))
    for seconds in args.seconds:
        p50s = []
        for index in range(args.count):
            steal0, total0 = cpu_ticks()
            stats = measure_latency(call, LatencyPlan(warmup=0, min_iters=5, min_seconds=seconds))
            steal1, total1 = cpu_ticks()
            steal = (steal1 - steal0) / (total1 - total0) if total1 > total0 else 0.0
            p50s.append(stats.p50_ms)
            print(f"{seconds:5g} s window {index + 1}: p50 {stats.p50_ms:9.3f} ms  cv {stats.cv_pct:5.1f} %  "
                  f"{stats.iterations:5d} calls  steal {steal:5.1%}")  # fmt: skip
        median = statistics.median(p50s)
        print(f"{seconds:5g} s windows: p50 {min(p50s):.3f}-{max(p50s):.3f} ms, {min(p50s) / median - 1:+.1%} to "
              f"{max(p50s) / median - 1:+.1%} of their median {median:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()

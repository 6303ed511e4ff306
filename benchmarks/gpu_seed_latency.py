"""Model-only GPU latency in the seed's setting: r2plus1d r18 at 16 x 112 x 112, batch 1 and 16.

Latency does not depend on the weights, so the model is freshly initialised (no training, no download).
Each variant is timed with vidbench's own timer (cold call, warm-up, then min iterations AND min
seconds, every call synchronized). Prints one line per variant: p50 / p99 ms and clips/s.
Run: ``python benchmarks/gpu_seed_latency.py`` on a machine with CUDA.
"""

from __future__ import annotations

import sys

import torch

from vidbench.measure.latency import LatencyPlan, measure_latency, synchronizer
from vidbench.plugins import load_plugins


def variants(model: torch.nn.Module) -> dict[str, object]:
    """Callables to time: eager fp32, autocast fp16, torch.compile fp32."""
    compiled = torch.compile(model, dynamic=False)

    def amp(clip: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16):
            return model(clip)

    return {"eager fp32": model, "amp fp16": amp, "compile fp32": compiled}


@torch.inference_mode()
def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 1
    spec = load_plugins([]).model("r2plus1d")
    model = spec.build(spec.presets["r18"], 400).cuda().eval()
    plan, sync = LatencyPlan(warmup=10, min_iters=50, min_seconds=2.0), synchronizer("cuda")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; r2plus1d r18, 16 x 112 x 112, 400 classes")
    for batch in (1, 16):
        clip = torch.randn(batch, 3, 16, 112, 112, device="cuda")
        for name, call in variants(model).items():
            stats = measure_latency(lambda call=call, clip=clip: (call(clip), sync()), plan)
            rate = batch * 1000 / stats.p50_ms
            timing = f"p50 {stats.p50_ms:8.2f} ms  p99 {stats.p99_ms:8.2f} ms  {rate:8.1f} clips/s"
            print(f"batch {batch:2d}  {name:13s} {timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

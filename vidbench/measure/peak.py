"""This machine's measured fp32 matmul rate, the ceiling for the roofline column."""

from __future__ import annotations

import time

import torch

from vidbench.measure.latency import synchronizer


def matmul_peak_gmacs(threads: int, size: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """Best-of-runs fp32 ``size x size`` matmul rate in GMAC/s (one multiply-add = one, fvcore's unit)
    on ``device`` (on CUDA: 4096-square products, TF32 off, each one synchronized)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    size = max(size, 4096) if cuda else size
    sync = synchronizer(device)
    try:
        a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
        for _ in range(3):
            torch.mm(a, b)
        sync()
        best, deadline = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.mm(a, b)
            sync()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return size**3 / best / 1e9

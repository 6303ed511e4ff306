"""End-to-end throughput: file -> decoded frames -> transformed clip -> prediction, with the time split."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from vidbench.data.loader import ClipDataset
from vidbench.data.transforms import frames_to_clip
from vidbench.measure.latency import synchronizer


def end_to_end(
    predict: Callable[[torch.Tensor], Any],
    dataset: ClipDataset,
    example: torch.Tensor,
    device: str,
    clips: int = 64,
) -> dict[str, float | None]:
    """File -> prediction throughput on the first ``clips`` of ``dataset`` (read from the files, in this process,
    no loader workers), batched like ``example``, with the time split into decode, transform and model per clip.
    ``example`` also warms ``predict`` up at the batch shape (torch.compile compiles per shape)."""
    batch_size = int(example.shape[0])
    count = min(clips, len(dataset))
    sync = synchronizer(device)
    predict(example)
    sync()
    decode_s = transform_s = model_s = 0.0
    done = 0
    for start in range(0, count, batch_size):
        batch = []
        for index in range(start, min(start + batch_size, count)):
            t0 = time.perf_counter()
            try:
                frames = dataset.decode(dataset.samples[index], None)
            except Exception:
                continue
            t1 = time.perf_counter()
            batch.append(frames_to_clip(frames, dataset.transform))
            decode_s, transform_s = decode_s + t1 - t0, transform_s + time.perf_counter() - t1
        if not batch:
            continue
        t2 = time.perf_counter()
        predict(torch.stack(batch))
        sync()
        model_s += time.perf_counter() - t2
        done += len(batch)
    total = decode_s + transform_s + model_s
    per = 1000 / max(done, 1)
    return {
        "e2e_clips_per_s": done / total if total else None,
        "e2e_decode_ms": decode_s * per,
        "e2e_transform_ms": transform_s * per,
        "e2e_model_ms": model_s * per,
    }

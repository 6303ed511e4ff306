"""The warm timing process of an artifact that lives in torch (no engine file to load alone): the artifact
prepared again, exactly as its measure task prepared it, then timed on command by the job's interleaved timing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from vidbench.job.context import Context
from vidbench.job.measure import prepare_artifact
from vidbench.measure.latency import Channel, StdioChannel, serve_rounds, synchronizer
from vidbench.measure.operators import profile_torch
from vidbench.profiles import OperatorProfile


def run_timer(ctx: Context, channel: Channel | None = None) -> None:
    """One artifact's warm timing process for an artifact that lives in torch (no engine file to load alone):
    prepared again from the trained model, exactly as its measure task prepared it, then timed on command over
    ``channel`` (stdin / stdout when none is given)."""
    channel = channel or StdioChannel()
    task = ctx.task
    spec = ctx.registry.optimization(task["optimization"])
    model = ctx.trained_model().to(ctx.device)
    folder = ctx.run.task(ctx.job.slug, task.get("task_name") or spec.name).timer.root
    folder.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="artifact-", dir=folder))
    try:
        artifact = prepare_artifact(ctx, spec, model, workdir)
        sync = synchronizer(str(ctx.device))

        def call_for(batch: int) -> Callable[[], object]:
            clip = ctx.example(batch).to(ctx.device)
            return lambda: (artifact(clip), sync())

        def profile_for(batch: int, calls: int, call: Callable[[], object]) -> OperatorProfile:
            if ctx.device.type != "cpu":
                raise RuntimeError(f"operator profiles are taken on the CPU only, not on {ctx.device}")
            return profile_torch(call, batch, calls)

        serve_rounds(call_for, channel, profile_for)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

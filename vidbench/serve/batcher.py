"""Dynamic batching: concurrent requests' clips are stacked into one model call.

A request puts its clip on a queue and awaits a future. One collector task takes the first waiting
clip, then keeps taking clips until ``max_batch`` are in hand or ``max_wait_ms`` has passed since the
first, runs the model once on the stacked batch in a worker thread (the event loop stays free), and
hands each request its own row. ``max_batch=1`` turns batching off (one model call per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import torch

BatchFn = Callable[[torch.Tensor], torch.Tensor]
Observer = Callable[[int, float], None]
"""Called after each model call with (batch size, seconds)."""


@dataclass(frozen=True)
class BatchSettings:
    """The batching knobs."""

    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    """Clips waiting for the model at most; beyond it :meth:`DynamicBatcher.submit` raises ``asyncio.QueueFull``."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")


class DynamicBatcher:
    """Groups single-clip requests into batches for ``fn`` (a clip batch -> one output row per clip)."""

    def __init__(self, fn: BatchFn, settings: BatchSettings, executor: Executor, observe: Observer | None = None):
        self.fn = fn
        self.settings = settings
        self.executor = executor
        self.observe = observe
        self._queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._queue = asyncio.Queue(self.settings.max_queue)
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Stop the collector; requests still queued get an error."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("server shutting down"))

    async def submit(self, clip: torch.Tensor) -> torch.Tensor:
        """This clip's output row, computed in some batch; ``asyncio.QueueFull`` when ``max_queue`` clips wait."""
        if self._queue is None:
            raise RuntimeError("batcher not started")
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((clip, future))
        return await future

    async def _gather(self) -> list[tuple[torch.Tensor, asyncio.Future[torch.Tensor]]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while len(batch) < self.settings.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                while len(batch) < self.settings.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())  # already waiting: take them without waiting more
                break
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (the server would not stop)
                async with asyncio.timeout(left):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        return batch

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [(clip, fut) for clip, fut in batch if not fut.done()]  # a client that gave up
            if not live:
                continue
            start = time.perf_counter()
            try:
                out = await loop.run_in_executor(self.executor, self.fn, torch.stack([c for c, _ in live]))
            except Exception as exc:
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self.observe is not None:
                self.observe(len(live), time.perf_counter() - start)
            for row, (_, future) in zip(out, live, strict=True):
                if not future.done():
                    future.set_result(row)

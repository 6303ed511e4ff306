"""Decoding uploads out of the server process: a pool of worker processes with limits.

Each upload is probed and decoded in a worker process (pebble's ``ProcessPool``, forked from a fork server
that imported the decoders once). A task has a wall-time limit and a worker an address-space limit
(``RLIMIT_AS``); a decode that overruns, crashes, segfaults or runs out of memory fails its own request
(:class:`UploadRefused`), pebble replaces the worker, and the server goes on. Refusals come from the
file's headers and packets before anything is decoded (:class:`vidbench.data.decode.DecodeLimits`).
Every message is fixed per failure class and names only the upload's own file name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import resource
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vidbench.data.decode import DecodeLimits, LimitExceeded
from vidbench.data.loader import ClipDataset
from vidbench.data.transforms import frames_to_clip
from vidbench.specs import VideoSample

LIMIT_ERRORS = {
    "codec": (415, "codec"),
    "pixels": (422, "too_many_pixels"),
    "aspect": (422, "aspect_ratio"),
    "frames": (422, "too_long"),
}
"""HTTP status and error code of each :class:`LimitExceeded` limit."""


class UploadRefused(Exception):
    """An upload the server refuses: HTTP status, a short code, and a message safe to show the client."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status, code, detail)  # args as given: it pickles back from a worker
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class UploadPolicy:
    """What an upload may be: decode limits, accepted containers, longest duration."""

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    containers: tuple[str, ...] = ("mov", "matroska", "avi", "webm")
    """PyAV's demuxer names: ``mov`` covers .mp4/.mov/.m4v, ``matroska`` .mkv and .webm."""
    max_duration_s: float = 120.0


def decode_upload(dataset: ClipDataset, path: str, name: str, policy: UploadPolicy) -> torch.Tensor:
    """In a worker: check the file against ``policy`` from its metadata, then decode and transform it into a
    ``C x T x H x W`` clip as the job's evaluation does. Raises :class:`UploadRefused`."""
    dataset.limits = policy.limits
    try:
        meta = dataset.meta(Path(path))
    except LimitExceeded as exc:
        status, code = LIMIT_ERRORS[exc.limit]
        raise UploadRefused(status, code, f"{name}: {exc.message}") from None
    except Exception:
        raise UploadRefused(415, "not_a_video", f"{name}: not a video file this server can read") from None
    if meta.container not in policy.containers:
        allowed = ", ".join(policy.containers)
        raise UploadRefused(415, "container", f"{name}: container {meta.container!r} is not accepted ({allowed})")
    if meta.duration_s > policy.max_duration_s:
        limit = policy.max_duration_s
        raise UploadRefused(422, "too_long", f"{name}: {meta.duration_s:.1f} s is over the {limit:g} s limit")
    try:
        frames = dataset.decode(VideoSample(Path(path), 0), None)
        return frames_to_clip(frames, dataset.transform)
    except Exception:
        raise UploadRefused(422, "undecodable", f"{name}: the video could not be decoded") from None


def _limit_memory(memory_mb: int) -> None:
    """Worker initializer: one thread, and an address space of what it holds now plus ``memory_mb``."""
    torch.set_num_threads(1)
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * resource.getpagesize()
    limit = mapped + memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@dataclass(frozen=True)
class DecodeSettings:
    """The decode pool: worker processes, wall time per upload, memory per worker."""

    workers: int = 2
    timeout_s: float = 10.0
    memory_mb: int = 1024


class DecodePool:
    """Worker processes that turn uploaded files into clips; see the module docstring."""

    def __init__(self, settings: DecodeSettings) -> None:
        import pebble

        self.settings = settings
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["vidbench.serve.decoding"])
        self._pool = pebble.ProcessPool(
            max_workers=settings.workers, initializer=_limit_memory, initargs=(settings.memory_mb,), context=context
        )

    async def decode(self, dataset: ClipDataset, path: Path, name: str, policy: UploadPolicy) -> torch.Tensor:
        """The upload at ``path`` as a clip; :class:`UploadRefused` for a refused, broken or too costly file.
        Cancelling the call (the client went away) kills the worker doing it."""
        import pebble

        future = self._pool.schedule(
            decode_upload, args=(dataset, str(path), name, policy), timeout=self.settings.timeout_s
        )
        try:
            return await asyncio.wrap_future(future)
        except concurrent.futures.TimeoutError:
            limit = self.settings.timeout_s
            raise UploadRefused(422, "timeout", f"{name}: decoding took longer than {limit:g} s") from None
        except (pebble.ProcessExpired, MemoryError, concurrent.futures.process.BrokenProcessPool):
            raise UploadRefused(422, "undecodable", f"{name}: the video could not be decoded") from None
        except asyncio.CancelledError:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the workers."""
        self._pool.stop()
        self._pool.join(timeout=5)

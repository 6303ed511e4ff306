"""Data-parallel training under ``torchrun``: process group, per-rank loader, reductions.

A task runs distributed when ``torchrun`` set ``WORLD_SIZE`` > 1 in its environment. Every rank trains on
its own shard (``DistributedSampler``, ``drop_last`` so the shards are disjoint) with the model wrapped in
``DistributedDataParallel``; gloo on the CPU, NCCL on CUDA. Only rank 0 writes checkpoints and logs.
Outside ``torchrun`` every helper here is a no-op, so single-process training is unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

SAMPLE_LOG_ENV = "VIDBENCH_SAMPLE_LOG"
"""When set (to anything but ``0``), each rank appends the sample indices it trained on, per epoch, to
the job folder's sample log (used by the tests to check that the shards are disjoint)."""


def world_size() -> int:
    """How many processes train together (1 outside ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 outside ``torchrun``)."""
    return int(os.environ.get("RANK", "0"))


def local_world_size() -> int:
    """How many ranks share this machine (1 outside ``torchrun``)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def launched() -> bool:
    """True in a rank started by ``torchrun`` with more than one process."""
    return world_size() > 1


def active() -> bool:
    """True once the process group is up."""
    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    """Rank 0, the only rank that writes checkpoints, metrics and TensorBoard logs."""
    return rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` under ``torchrun`` on CUDA, else ``device`` as is."""
    if launched() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def setup(device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo otherwise) and die with ``torchrun`` if it is killed."""
    if not launched() or active():
        return
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan rank on a kill
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(device))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def teardown() -> None:
    """Leave the process group (no-op when there is none), every rank together: a rank that left while rank 0
    was still evaluating was seen to abort at exit under load ("terminate called without an active exception")."""
    if active():
        with contextlib.suppress(Exception):  # a rank that failed already: leave anyway
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when the group is up, else ``model`` itself."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over the ranks (``values`` unchanged without a group)."""
    if not active():
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_max(value: float) -> float:
    """The largest ``value`` over the ranks, so every rank takes the same time-budget decision."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def sampler(dataset: Dataset, seed: int) -> DistributedSampler:
    """This rank's shard of ``dataset``: shuffled with ``seed`` + epoch, tail dropped so shards are disjoint."""
    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed, drop_last=True)


def start_epoch(loader: DataLoader, epoch: int, sample_log: Path) -> None:
    """Reshuffle this rank's shard for ``epoch`` (seed + epoch, so a resumed run repeats it), and append the
    indices it will yield to ``sample_log`` when ``VIDBENCH_SAMPLE_LOG`` asks for it."""
    shard = getattr(loader, "sampler", None)
    if not isinstance(shard, DistributedSampler):
        return
    shard.set_epoch(epoch)
    if os.environ.get(SAMPLE_LOG_ENV, "0") == "0":
        return
    sample_log.parent.mkdir(parents=True, exist_ok=True)
    line = {"epoch": epoch, "rank": rank(), "world_size": world_size(), "indices": list(iter(shard))}
    with open(sample_log, "a") as fh:
        fh.write(json.dumps(line) + "\n")

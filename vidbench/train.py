"""The training loop every model shares: AdamW, linear warm-up then cosine decay, atomic checkpoints."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """The knobs of :func:`train` (a suite's ``train:`` block)."""

    epochs: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    label_smoothing: float
    seed: int


@dataclass(frozen=True)
class TrainResult:
    """What a training run gives back: time, last loss and train accuracy, and steps taken."""

    train_s: float
    final_loss: float
    train_top1: float
    steps: int


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a run repeats."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear from ~0 to 1 over ``warmup_steps``, then cosine to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def train(
    model: nn.Module,
    loader: DataLoader,
    config: TrainConfig,
    metrics_path: Path | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``loader`` for ``config.epochs`` epochs; one JSON line of metrics per epoch."""
    seed_everything(config.seed)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    total = config.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, max(1, round(config.warmup_epochs * len(loader))))
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    start, steps, loss_value, top1 = time.perf_counter(), 0, float("nan"), 0.0
    model.train()
    for epoch in range(config.epochs):
        epoch_loss, correct, seen, epoch_start = 0.0, 0, 0, time.perf_counter()
        for batch in loader:
            if batch is None:  # every clip of the batch was skipped as undecodable
                continue
            clips, labels = batch
            logits = model(clips)
            loss = criterion(logits, labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {steps}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            steps += 1
            epoch_loss += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        loss_value, top1 = epoch_loss / max(seen, 1), correct / max(seen, 1)
        line = {
            "epoch": epoch + 1,
            "loss": loss_value,
            "train_top1": top1,
            "lr": schedule.get_last_lr()[0],
            "clips_per_s": seen / (time.perf_counter() - epoch_start),
        }
        if metrics_path is not None:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(line) + "\n")
        if progress is not None:
            progress(f"epoch {epoch + 1}/{config.epochs} loss {loss_value:.3f} train top-1 {top1:.1%}")
    model.eval()
    return TrainResult(time.perf_counter() - start, loss_value, top1, steps)

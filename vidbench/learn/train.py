"""The training loop every model shares.

Cross-entropy with label smoothing (BCE for multi-label), AdamW or SGD with momentum, linear warm-up
then cosine decay, gradient clipping and accumulation, optional AMP and EMA, early stopping on
validation top-1, and a time budget. Every epoch ends with an atomic checkpoint of the whole state
(model, optimizer, scheduler, scaler, EMA, RNG, epoch), so a killed run resumes where it stopped; a
NaN or Inf loss stops the run with a clear message and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vidbench.learn import distributed
from vidbench.learn.weights import load_checkpoint
from vidbench.rundir import JobDir
from vidbench.specs import Objective

ProgressFn = Callable[[str], None]


PLATEAU_LR_DROPS = 2
"""``schedule: plateau`` divides the lr by 10 at each of this many validation plateaus before the next one ends
training (as ReduceLROnPlateau recipes do: a plateau counts once the lr can no longer help)."""
NON_FINITE_STOP = 3
"""Non-finite losses or gradients in a row that stop training; fewer are skipped steps (bf16 has rare ones)."""


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """The knobs of :func:`train` (a suite's ``train:`` block)."""

    epochs: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    seed: int = 0
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = 0.9
    grad_clip: float | None = None
    accumulate: int = 1
    amp: Literal["off", "bf16", "fp16"] = "off"
    ema_decay: float | None = None
    deterministic: bool = False
    early_stop_patience: int | None = None
    max_minutes: float | None = None
    until: Literal["epochs", "plateau"] = "epochs"
    min_delta: float = 0.0
    min_epochs: int = 0
    multilabel: bool = False
    channels_last: bool = False
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    cosine_epochs: int | None = None
    lr_min_factor: float = 0.0
    drop_path: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a training run gives back."""

    train_s: float
    final_loss: float
    train_top1: float
    steps: int
    epochs_done: int
    stopped: str
    """Why training ended: ``plateau`` (no better validation top-1 for the patience), ``max_epochs`` or
    ``max_minutes`` (a budget ran out first)."""
    best_val_top1: float | None
    best_epoch: int | None = None


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; ``deterministic`` also asks torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename: never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def warmup_cosine(
    total_steps: int, warmup_steps: int, cosine: bool = True, floor: float = 0.0
) -> Callable[[int], float]:
    """LR multiplier: linear from ~0 to 1 over ``warmup_steps``, then cosine to ``floor`` at ``total_steps`` and
    ``floor`` after it (or 1 on, when not ``cosine``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if not cosine:
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def set_drop_path(model: nn.Module, rate: float) -> None:
    """Stochastic depth at ``rate`` for the deepest of the model's DropPath layers (timm's), rising linearly from
    0 at the first, as in DeiT and TimeSformer."""
    from timm.layers import DropPath

    layers = [m for m in model.modules() if isinstance(m, DropPath)]
    if not layers:
        raise ValueError(f"train.drop_path: {type(model).__name__} has no DropPath layers to set")
    for i, layer in enumerate(layers):
        layer.drop_prob = rate * i / max(1, len(layers) - 1)


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def _autocast(config: TrainConfig, device: torch.device) -> Any:
    if config.amp == "off":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if config.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _targets(labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return labels.float() if multilabel else labels


def _hits(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> int:
    top = logits.argmax(1)
    if multilabel:
        return int(labels[torch.arange(len(top)), top].sum())
    return int((top == labels).sum())


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG state as tensors and plain data, so the train state loads with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def config_from_settings(settings: Any, multilabel: bool) -> TrainConfig:
    """The loop's config from a suite's train settings (``vidbench.suite.schema.TrainSettings``), the lr scaled."""
    fields = {f: getattr(settings, f) for f in TrainConfig.__dataclass_fields__ if hasattr(settings, f)}
    return TrainConfig(**{**fields, "lr": settings.effective_lr()}, multilabel=multilabel)


class Trainer:
    """One training run writing into a job folder (:class:`~vidbench.rundir.JobDir`, or a plain folder): the
    training state, the per-epoch metrics and the TensorBoard logs.

    What each step minimises is an ``objective(module, clips, labels) -> (loss, logits, targets)``
    (:data:`vidbench.specs.Objective`); the default is cross-entropy (BCE when multi-label) on the labels."""

    def __init__(
        self,
        model: nn.Module,
        loader: DataLoader,
        config: TrainConfig,
        out_dir: JobDir | Path,
        val_loader: DataLoader | None = None,
        progress: ProgressFn | None = None,
        device: str = "cpu",
        objective: Objective | None = None,
    ) -> None:
        self.model, self.loader, self.config = model, loader, config
        self.objective: Objective = objective or self._supervised
        self.files = out_dir if isinstance(out_dir, JobDir) else JobDir(Path(out_dir))
        self.val_loader, self.progress = val_loader, progress
        self.device = torch.device(device)
        self.files.root.mkdir(parents=True, exist_ok=True)
        seed_everything(config.seed, config.deterministic)
        self.model.to(self.device)
        if config.drop_path is not None:
            set_drop_path(self.model, config.drop_path)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        self.optimizer = _optimizer(model, config)
        self.net = distributed.wrap(self.model, self.device)  # DDP under torchrun; the model itself otherwise
        steps_per_epoch = max(1, math.ceil(len(loader) / config.accumulate))
        total = (config.cosine_epochs or config.epochs) * steps_per_epoch
        warmup = max(1, round(config.warmup_epochs * steps_per_epoch))
        self.lr_scale, self.lr_drops = 1.0, 0  # schedule: plateau's drops so far
        shape = warmup_cosine(total, warmup, cosine=config.schedule == "cosine", floor=config.lr_min_factor)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: shape(step) * self.lr_scale)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.ema = None
        if config.ema_decay:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=config.ema_decay)
        self.criterion: nn.Module = (
            nn.BCEWithLogitsLoss() if config.multilabel else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        )
        self.epoch, self.steps, self.best_val, self.stale, self.best_epoch = 0, 0, None, 0, None
        self.skipped_steps = self.non_finite_in_a_row = 0
        self.history: list[dict[str, float]] = []

    def _supervised(self, net: nn.Module, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = net(clips)
        return self.criterion(logits.float(), _targets(labels, self.config.multilabel)), logits, labels

    # --- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        generator = getattr(self.loader, "generator", None)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch,
            "steps": self.steps,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "skipped_steps": self.skipped_steps,
            "stale": self.stale,
            "lr_scale": self.lr_scale,
            "lr_drops": self.lr_drops,
            "history": self.history,
            "config": asdict(self.config),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_rng_state(),
                "python": random.getstate(),  # a tuple of ints: plain data
                "loader": generator.get_state() if generator is not None else None,
            },
        }

    def restore(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.steps = state["epoch"], state["steps"]
        self.best_val, self.stale, self.history = state["best_val"], state["stale"], state["history"]
        self.best_epoch = state.get("best_epoch")
        self.skipped_steps = state.get("skipped_steps", 0)
        self.lr_scale, self.lr_drops = state.get("lr_scale", 1.0), state.get("lr_drops", 0)
        torch.set_rng_state(state["rng"]["torch"])
        _set_numpy_rng_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        generator = getattr(self.loader, "generator", None)
        if generator is not None and state["rng"]["loader"] is not None:
            generator.set_state(state["rng"]["loader"])

    @property
    def state_path(self) -> Path:
        return self.files.train_state

    def final_model(self) -> nn.Module:
        """The weights being trained and validated: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def patience(self) -> int | None:
        """Epochs without a better validation top-1 that end training (``until: plateau`` defaults to 3)."""
        if self.config.early_stop_patience is not None:
            return self.config.early_stop_patience
        return 3 if self.config.until == "plateau" else None

    def evaluated_model(self) -> nn.Module:
        """The weights to evaluate once training ended: with ``until: plateau`` those of the best validation
        epoch, else the last ones (the EMA copy when EMA is on)."""
        model = self.final_model()
        if self.config.until == "plateau" and self.files.best_weights.exists():
            load_checkpoint(model, self.files.best_weights)
        return model.eval()

    def _stop_reason(self, spent_s: float) -> str | None:
        """Why no further epoch starts, or ``None`` (checked before each epoch, so a resumed run stops where an
        uninterrupted one would)."""
        if self.patience is not None and self.stale >= self.patience:
            return "plateau"
        if self.epoch >= self.config.epochs:
            return "max_epochs"
        if self.config.max_minutes is not None and spent_s / 60 >= self.config.max_minutes:
            return "max_minutes"
        return None

    def _drop_lr_on_plateau(self) -> None:
        """``schedule: plateau``: a stall of ``patience`` epochs divides the lr by 10 (up to PLATEAU_LR_DROPS
        times) and starts the count again; the stall after the last drop is the plateau that ends training."""
        patience = self.patience
        if self.config.schedule != "plateau" or patience is None or self.stale < patience:
            return
        if self.lr_drops < PLATEAU_LR_DROPS:
            self.lr_scale, self.lr_drops, self.stale = self.lr_scale * 0.1, self.lr_drops + 1, 0
            self._say(f"validation top-1 flat for {patience} epochs: lr x0.1 ({self.lr_drops}/{PLATEAU_LR_DROPS})")

    # --- loop --------------------------------------------------------------------------------
    def _skip_non_finite(self, what: str, batch: int, stop: bool) -> None:
        """Count a step skipped for a non-finite loss or gradient; raise :class:`NonFiniteLoss` when ``stop`` or
        after :data:`NON_FINITE_STOP` such steps in a row (the weights are then as of the last good step)."""
        self.non_finite_in_a_row += 1
        self.skipped_steps += 1
        where = f"at epoch {self.epoch + 1}, batch {batch + 1}"
        if stop or self.non_finite_in_a_row >= NON_FINITE_STOP:
            in_a_row = f" ({self.non_finite_in_a_row} batches in a row)" if self.non_finite_in_a_row > 1 else ""
            raise NonFiniteLoss(
                f"{what} {where}{in_a_row}; training stopped, last good checkpoint: "
                f"{self.state_path if self.state_path.exists() else 'none yet'}"
            )
        self._say(f"{what} {where}: step skipped ({self.skipped_steps} so far)")

    def _epoch(self) -> tuple[float, float, int]:
        self.net.train()
        total_loss, hits, seen, scored = 0.0, 0, 0, 0
        distributed.start_epoch(self.loader, self.epoch, self.files.sample_log(distributed.rank()))
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(self.loader):
            if batch is None:  # every clip of the batch was skipped as undecodable
                continue
            clips, labels = (t.to(self.device, non_blocking=True) for t in batch)
            if self.config.channels_last and clips.dim() == 5:
                clips = clips.contiguous(memory_format=torch.channels_last_3d)
            with _autocast(self.config, self.device):
                loss, logits, targets = self.objective(self.net, clips, labels)
            if not torch.isfinite(loss):
                # one bad batch (bf16 rounding) is skipped; a model that only gives NaN stops. Under DDP every
                # rank must take part in each backward, so there a non-finite loss stops at once.
                self._skip_non_finite(f"loss became {loss.item()}", i, stop=distributed.active())
                self.optimizer.zero_grad(set_to_none=True)
                continue
            self.scaler.scale(loss / self.config.accumulate).backward()
            if (i + 1) % self.config.accumulate == 0 or i + 1 == len(self.loader):
                if self.config.grad_clip or not self.scaler.is_enabled():
                    self.scaler.unscale_(self.optimizer)
                    norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip or math.inf)
                    if not self.scaler.is_enabled() and not torch.isfinite(norm):  # fp16's scaler skips on its own
                        self._skip_non_finite(f"gradient norm became {norm.item()}", i, stop=False)
                        self.optimizer.zero_grad(set_to_none=True)
                        continue
                self.non_finite_in_a_row = 0
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.steps += 1
                if self.ema is not None:
                    self.ema.update(self.model, step=self.steps)
            total_loss += loss.item() * len(labels)
            if targets is not None:  # a regression pretext has no top-1
                hits += _hits(logits.detach(), targets, targets.dim() > 1)
                scored += len(labels)
            seen += len(labels)
        total_loss, hits, seen, scored = distributed.all_sum([total_loss, hits, seen, scored])  # every rank's shard
        return total_loss / max(seen, 1), hits / scored if scored else math.nan, int(seen)

    @torch.inference_mode()
    def validate(self) -> float | None:
        if self.val_loader is None:
            return None
        model = self.final_model()
        model.eval()
        hits = seen = 0
        for batch in self.val_loader:
            if batch is None:
                continue
            clips, labels = (t.to(self.device) for t in batch)
            hits += _hits(model(clips), labels, self.config.multilabel)
            seen += len(labels)
        return hits / max(seen, 1)

    def run(self, resume: bool = True) -> TrainResult:
        """Train to ``config.epochs`` (continuing from ``train_state.pt`` when ``resume``)."""
        from torch.utils.tensorboard import SummaryWriter

        if resume and self.state_path.exists():
            self.restore(self.state_path)
            self._say(f"resumed after epoch {self.epoch}")
        main = distributed.is_main()  # only rank 0 writes logs and checkpoints
        writer = SummaryWriter(str(self.files.tensorboard), purge_step=self.epoch + 1) if main else None
        if main:  # lines of epochs the checkpoint does not hold (killed between the two writes) go
            lines = "".join(json.dumps(line) + "\n" for line in self.history)
            self.files.metrics.write_text(lines)
        start = time.perf_counter()
        spent = sum(h.get("epoch_s", 0.0) for h in self.history)
        loss, top1 = float("nan"), 0.0
        try:
            while (stopped := self._stop_reason(spent)) is None:
                epoch_start = time.perf_counter()
                loss, top1, seen = self._epoch()
                val = self.validate()
                self.epoch += 1
                epoch_s = distributed.all_max(time.perf_counter() - epoch_start)  # one budget decision for all
                spent += epoch_s
                line = {
                    "epoch": self.epoch,
                    "loss": loss,
                    "train_top1": top1 if math.isfinite(top1) else None,
                    "val_top1": val,
                    "lr": self.scheduler.get_last_lr()[0],
                    "clips_per_s": seen / epoch_s,
                    "epoch_s": epoch_s,
                    "clips": seen,
                    "skipped_steps": self.skipped_steps,
                }
                self.history.append(line)
                if writer is not None:
                    self._log(writer, line)
                improved = val is not None and (self.best_val is None or val > self.best_val + self.config.min_delta)
                if improved:
                    self.best_val, self.stale, self.best_epoch = val, 0, self.epoch
                    if main and self.config.until == "plateau":  # saved before the state that names it best
                        atomic_save(self.final_model().state_dict(), self.files.best_weights)
                elif val is not None and self.epoch > self.config.min_epochs:
                    self.stale += 1
                self._drop_lr_on_plateau()
                if main:
                    atomic_save(self.state(), self.state_path)
                shown = f" val {val:.1%}" if val is not None else ""
                self._say(
                    f"epoch {self.epoch}/{self.config.epochs} loss {loss:.3f}"
                    f"{f' train {top1:.1%}' if math.isfinite(top1) else ''}{shown} "
                    f"{seen / epoch_s:.0f} clips/s"
                )
        finally:
            if writer is not None:
                writer.close()
        self.final_model().eval()
        return TrainResult(
            time.perf_counter() - start, loss, top1, self.steps, self.epoch, stopped, self.best_val, self.best_epoch
        )

    def _log(self, writer: Any, line: dict[str, Any]) -> None:
        """One epoch's line into TensorBoard and ``metrics.jsonl``."""
        for key, value in line.items():
            if key != "epoch" and value is not None:
                writer.add_scalar(f"train/{key}", value, self.epoch)
        writer.flush()
        with open(self.files.metrics, "a") as fh:
            fh.write(json.dumps(line) + "\n")

    def _say(self, text: str) -> None:
        if self.progress is not None and distributed.is_main():
            self.progress(text)

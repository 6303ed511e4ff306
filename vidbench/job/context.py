"""What any code that works on one model job of a run needs: the suite, the plugins, the dataset, the job's
clip settings and its files. A child process builds it from its task; ``serve``, ``embed`` and the CLI build
it from the job's ``job.json``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vidbench.data.cache import ClipCache
from vidbench.data.decode import DecodePolicy, policy_from_label, resolve_backend
from vidbench.data.loader import ClipDataset, MultiViewClipDataset, make_loader
from vidbench.data.sampling import ClipSpec
from vidbench.data.scan import labelled_subset, load_prepared
from vidbench.data.transforms import Augment, resize_size
from vidbench.learn import distributed
from vidbench.learn.weights import load_checkpoint
from vidbench.plugins import Registry, load_plugins
from vidbench.rundir import JobDir, RunDir, read_json
from vidbench.specs import PreparedDataset, VideoSample
from vidbench.suite.cells import ModelJob
from vidbench.suite.schema import Suite


class JobFileError(Exception):
    """A job's ``job.json`` (or the dataset index it needs) is missing or unreadable; the message says which."""


def job_record(task: dict[str, Any]) -> dict[str, Any]:
    """The part of a task that rebuilds its job anywhere: suite, plugins, job, threads (``job.json``)."""
    return {key: task[key] for key in ("suite", "plugins", "job", "threads")}


class Context:
    """What a task needs: suite, plugins, dataset, and the job's clip settings and files."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        self.suite = Suite.model_validate(task["suite"])
        self.registry: Registry = load_plugins(task["plugins"])
        self.run = RunDir(Path(task["run_dir"]))
        self.job = ModelJob.from_dict(task["job"])
        self.threads = max(1, int(task["threads"]) // distributed.local_world_size())  # DDP ranks share cores
        torch.set_num_threads(self.threads)
        self.device = distributed.rank_device(torch.device(self.suite.measure.device))
        self._dataset: PreparedDataset | None = None

    @classmethod
    def for_job(cls, run: RunDir, slug: str) -> Context:
        """The context of a trained job from its ``job.json`` (no log folder needed)."""
        record = read_json(run.job(slug).job_file)
        if record is None:
            raise JobFileError(f"{run.job(slug).job_file}: missing or unreadable; it is written by `vidbench run`")
        task = {**record, "kind": "job", "run_dir": str(run.root.resolve())}
        job = ModelJob.from_dict(record["job"])
        if not run.dataset_index(job.dataset, dict(job.dataset_options)).is_file():
            raise JobFileError(f"{run.root}: the prepared dataset index of {job.dataset!r} is missing (class names)")
        return cls(task)

    @property
    def files(self) -> JobDir:
        """The job's folder in the run directory."""
        return self.run.job(self.job.slug)

    @property
    def baseline(self) -> str | None:
        """The suite's reference optimization (resolved when the suite was read)."""
        return self.suite.baseline

    @property
    def dataset(self) -> PreparedDataset:
        if self._dataset is None:
            self._dataset = load_prepared(self.run.dataset_index(self.job.dataset, dict(self.job.dataset_options)))
        return self._dataset

    @property
    def decode_policy(self) -> DecodePolicy:
        """How this task decodes: the suite's first ``data.decode_policy`` or, in a cell of a further policy, that
        one; ``+scaled`` scales to the short side the eval transforms resize to."""
        data = self.suite.data
        label = self.task.get("decode") or data.decode_policy[0]
        return policy_from_label(label, data.decode_threads, resize_size(self.job.crop))

    def clip_spec(self) -> ClipSpec:
        job = self.job
        return ClipSpec(job.frames, job.stride, job.sampling, job.short)  # type: ignore[arg-type]

    def samples(self, split: str, labelled: bool = False) -> list[VideoSample]:
        """The split's videos; ``labelled``: only the labelled part of the training split when the job trains on a
        fraction of the labels (``train.label_fraction``)."""
        samples = self.dataset.splits[split]
        fraction = self.job.train_settings().label_fraction
        if labelled and split == "train" and fraction is not None:
            return labelled_subset(samples, fraction, seed=0)  # one draw for every model and seed of the suite
        return samples

    def clips(self, split: str, train_mode: bool, cached: bool = True, labelled: bool = False) -> ClipDataset:
        """The split's clips; ``cached=False`` always decodes the files (end-to-end timing); ``labelled`` as in
        :meth:`samples`."""
        data = self.suite.data
        augment = self.job.train_settings().augment
        multi = self.dataset.labels_kind == "multi"
        return ClipDataset(
            self.samples(split, labelled),
            self.clip_spec(),
            self.job.crop,
            train_mode,
            backend=resolve_backend(data.backend),
            policy=self.decode_policy,
            augment=Augment(augment.random_resized_crop, augment.color_jitter, augment.flip),
            mirror=self.dataset.mirror,
            square_pixels=data.square_pixels,
            cache=ClipCache(Path(data.cache_dir)) if data.cache and cached else None,
            skip_log=self.run.skipped,
            multilabel_classes=self.dataset.num_classes if multi else None,
            whole_video_mb=data.cache_whole_video_mb,
        )

    def reader(
        self, samples: list[VideoSample], skip_log: Path | None = None, decode_policy: str | None = None
    ) -> ClipDataset:
        """A dataset reading ``samples`` as the job's evaluation does (eval transforms, no cache); ``decode_policy``:
        another policy's label than the task's (the server's choice)."""
        data = self.suite.data
        policy = self.decode_policy
        if decode_policy is not None:
            policy = policy_from_label(decode_policy, data.decode_threads, resize_size(self.job.crop))
        return ClipDataset(
            samples,
            self.clip_spec(),
            self.job.crop,
            train=False,
            backend=resolve_backend(data.backend),
            policy=policy,
            square_pixels=data.square_pixels,
            skip_log=skip_log,
        )

    def multiview_loader(self, split: str, temporal: int, spatial: int) -> DataLoader:
        """One video per batch as ``1 x V x C x T x H x W`` (``V = temporal x spatial`` evaluation views)."""
        data = self.suite.data
        clips = MultiViewClipDataset(
            self.samples(split), self.clip_spec(), self.job.crop, temporal, spatial,
            backend=resolve_backend(data.backend), square_pixels=data.square_pixels, skip_log=self.run.skipped,
            policy=self.decode_policy,
        )  # fmt: skip
        return make_loader(clips, 1, self.job.train_settings().workers, shuffle=False)

    def loader(self, split: str, batch_size: int, train_mode: bool = False, labelled: bool = False) -> DataLoader:
        """Batches of ``(clips, labels)``; ``train_mode`` shuffles (sharded under DDP) and augments."""
        settings, clips = self.job.train_settings(), self.clips(split, train_mode, labelled=labelled)
        shard = distributed.sampler(clips, settings.seed) if train_mode and distributed.active() else None
        return make_loader(clips, batch_size, settings.workers, shuffle=train_mode, seed=settings.seed, sampler=shard)

    def build_model(self) -> torch.nn.Module:
        """The job's model, untrained: its preset built for the job's own clip size (an input-cost sweep's or the
        suite's frames and crop, which an architecture may be sized by: X3D's head pool, TimeSformer's
        position embeddings)."""
        spec = self.registry.model(self.job.model)
        preset = spec.presets[self.job.preset]
        clip = replace(preset.input, frames=self.job.frames, crop=self.job.crop)
        return spec.build(replace(preset, input=clip), self.dataset.num_classes)

    def trained_model(self) -> torch.nn.Module:
        """A fresh model with the job's trained weights, in eval mode, on the CPU."""
        model = self.build_model()
        load_checkpoint(model, self.files.checkpoint)
        return model.eval()

    def example(self, batch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        shape = (batch, 3, self.job.frames, self.job.crop, self.job.crop)
        return torch.randn(shape, generator=generator)

    def calibration_clips(self, limit: int) -> Iterator[torch.Tensor]:
        """Up to ``limit`` training clips (eval transforms), one batch of 1 at a time, decoded lazily."""
        dataset = self.clips("train", train_mode=False)
        for index in range(min(limit, len(dataset))):
            yield dataset[index][0].unsqueeze(0)


def on_device(predict: Callable[[torch.Tensor], Any], device: torch.device) -> Callable[[torch.Tensor], Any]:
    """``predict`` fed with batches moved to ``device`` (loaders yield CPU tensors)."""
    if device.type == "cpu":
        return predict
    return lambda clips: predict(clips.to(device, non_blocking=True))

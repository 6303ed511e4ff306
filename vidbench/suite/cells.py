"""Expanding a suite into work: model jobs (train once) and cells (one measured row each)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from vidbench.hashing import file_sha256, json_digest
from vidbench.plugins import Registry
from vidbench.results import Row, cell_key, input_variant
from vidbench.rundir import job_slug
from vidbench.suite.checks import teacher_of, trainer_name
from vidbench.suite.schema import DatasetEntry, ExcludeRule, ModelEntry, Suite, TrainSettings

NEW_DEFAULTS: dict[str, Any] = {
    "nproc": 1, "until": "epochs", "min_delta": 0.0, "lr_batch": None, "schedule": "cosine", "drop_path": None,
    "min_epochs": 0, "seeds": None, "trainer": None, "trainer_options": {}, "label_fraction": None,
    "cosine_epochs": None, "lr_min_factor": 0.0,
}  # fmt: skip
"""Train settings added after runs existed: at these values they are left out of a job's identity, so the keys
of earlier runs hold."""


@dataclass(frozen=True)
class ModelJob:
    """One dataset x model x preset: trained once, measured under every optimization."""

    dataset: str
    dataset_options: tuple[tuple[str, Any], ...]
    model: str
    preset: str
    frames: int
    crop: int
    stride: int
    sampling: str
    short: str
    pretrained: str | None
    data: tuple[tuple[str, Any], ...]
    train: tuple[tuple[str, Any], ...]
    per_seed: bool = False
    """One of several seeds of the same model (``train.seeds``): its folder name carries its seed."""
    recipe: str | None = None
    """Where the preset's training recipe comes from, when it was applied (provenance: ``train`` holds the resolved
    settings, which alone decide the weights)."""
    teacher: str | None = None
    """The folder (slug) of the job this job's trainer learns from, trained first (``distill``)."""
    trainer_name: str | None = None
    """The trainer plugin that trains the job, resolved (the default one when the suite names none)."""
    input_sweep: bool = False
    """One of several inputs (frames x crop) of the same model (an input-cost sweep): its name carries them."""

    @property
    def trainer(self) -> str | None:
        """The trainer the suite chose for this job; ``None``: the default one (named or not)."""
        return dict(self.train).get("trainer")

    @property
    def variant(self) -> str:
        """The preset, with the trainer when it is not the default one (``tiny+distill``) and the input in an
        input-cost sweep (``tiny@8x32``): how folders and the report tell apart one preset trained two ways."""
        name = self.preset if self.trainer is None else f"{self.preset}+{self.trainer}"
        return name + input_variant(self.frames, self.crop) if self.input_sweep else name

    @property
    def slug(self) -> str:
        """The job's folder name in a run directory."""
        return job_slug(self.dataset, self.model, self.variant, self.seed if self.per_seed else None)

    @property
    def seed(self) -> int:
        """The training seed."""
        return int(dict(self.train)["seed"])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (a task file, ``job.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelJob:
        """The job :meth:`to_dict` described (JSON turned the tuples of pairs into lists)."""
        data = dict(data)
        data.setdefault("recipe", None)
        data.setdefault("per_seed", False)
        data.setdefault("teacher", None)
        data.setdefault("trainer_name", None)
        data.setdefault("input_sweep", False)
        for name in ("dataset_options", "train", "data"):
            data[name] = tuple((k, v) for k, v in data[name])
        return cls(**data)

    def train_settings(self) -> TrainSettings:
        return TrainSettings.model_validate(dict(self.train))

    def identity(self) -> dict[str, Any]:
        """Everything that decides the trained weights."""
        data = asdict(self)
        del data["recipe"], data["per_seed"], data["trainer_name"]
        if data["teacher"] is None:
            del data["teacher"]  # as before trainers existed: earlier runs keep their keys
        data["dataset_options"] = dict(self.dataset_options)
        data["data"] = dict(self.data)
        if self.pretrained:
            data["pretrained"] = file_sha256(self.pretrained)[:16]
        # workers and timeout do not change the weights
        data["train"] = {
            k: v
            for k, v in self.train
            if k not in ("workers", "timeout_s") and not (k in NEW_DEFAULTS and v == NEW_DEFAULTS[k])
        }
        return data

    def digest(self) -> str:
        return json_digest(self.identity(), 12)


@dataclass(frozen=True)
class Cell:
    """One row of the result table: a model job under one optimization at one batch size."""

    job: ModelJob
    optimization: str
    batch_size: int
    threads: int | None = None
    """The thread count of one step of a thread sweep (``measure.threads: [1, 2]``); ``None``: the suite's one."""
    decode: str | None = None
    """A further decode policy of ``data.decode_policy`` that this baseline cell evaluates the trained model with;
    ``None``: the suite's first (the one every other cell uses)."""

    @property
    def task_name(self) -> str:
        """The folder of the child process measuring this cell (``logs/<job>/<task_name>``), and its artifact's."""
        name = self.optimization if self.threads is None else f"{self.optimization}-{self.threads}t"
        return name if self.decode is None else f"{name}@{self.decode}"

    def identity(self, measure: dict[str, Any]) -> dict[str, Any]:
        """What decides this cell's row: the job, the optimization, the batch size, the measure settings and,
        in a thread sweep, the thread count; for a further decode policy, that policy."""
        extra = {} if self.threads is None else {"threads": self.threads}
        extra |= {} if self.decode is None else {"decode": self.decode}
        return {
            **self.job.identity(),
            "optimization": self.optimization,
            "batch_size": self.batch_size,
            "measure": measure,
            **extra,
        }

    def key(self, measure: dict[str, Any], env_hash: str, checkpoint_sha: str) -> str:
        """The cell's key in the store: its identity, the environment and the trained weights."""
        return cell_key(self.identity(measure), env_hash, checkpoint_sha)

    def row(self, suite: Suite, run_id: str, threads: int, key: str, training: dict[str, Any]) -> Row:
        """The identifying columns of this cell's row and how its job trained (``training``: the job summary,
        empty when it did not train); the measurement adds the rest."""
        job = self.job
        return Row(
            suite=suite.name,
            run_id=run_id,
            dataset=job.dataset,
            model=job.model,
            preset=job.preset,
            optimization=self.optimization,
            device=suite.measure.device,
            threads=self.threads or threads,
            measure_task=self.task_name,
            decode_policy=self.decode or suite.data.decode_policy[0],
            decode_threads=suite.data.decode_threads,
            frames=job.frames,
            crop=job.crop,
            batch_size=self.batch_size,
            job=job.slug,
            seed=job.seed,
            recipe=job.recipe,
            trainer=job.trainer_name,
            trainer_default=job.trainer is None,
            label_fraction=job.train_settings().label_fraction,
            teacher=training.get("teacher"),
            lr=job.train_settings().effective_lr(),
            train_s=training.get("train_s"),
            epochs_run=training.get("epochs_run"),
            best_epoch=training.get("best_epoch"),
            stopped_by=training.get("stopped_by"),
            converged=training.get("converged"),
            train_clips=training.get("train_clips"),
            cell_key=key,
        )


def trained_weights(summary: dict[str, Any]) -> str:
    """What identifies a trained job's weights in its cells' keys: its checkpoint's hash and, for a student, its
    teacher's (a retrained teacher makes every row of its students new)."""
    teacher = summary.get("teacher_checkpoint_sha")
    return summary["checkpoint_sha"] + (f"+teacher:{teacher}" if teacher else "")


def _excluded(rules: list[ExcludeRule], fields: dict[str, Any]) -> bool:
    for rule in rules:
        wanted = rule.model_dump(exclude_none=True)
        if wanted and all(fields.get(k) == v for k, v in wanted.items()):
            return True
    return False


def _values(value: int | list[int] | None) -> list[int | None]:
    return list(value) if isinstance(value, list) else [value]


def _resolve_inputs(suite: Suite, entry: ModelEntry, registry: Registry, preset_name: str) -> list[dict[str, Any]]:
    """The clip settings of one model: its override, else the suite's ``input``, else the preset's; one per
    frames x crop of an input-cost sweep (a list in either layer)."""
    preset = registry.model(entry.name).presets[preset_name]
    resolved: dict[str, Any] = {
        "frames": [preset.input.frames],
        "crop": [preset.input.crop],
        "stride": preset.input.stride,
        "sampling": suite.input.sampling,
        "short": suite.input.short,
    }
    for layer in (suite.input, entry.input):
        if layer is None:
            continue
        for name in ("frames", "crop"):
            if getattr(layer, name) is not None:
                resolved[name] = _values(getattr(layer, name))
        resolved["stride"] = layer.stride or resolved["stride"]
        for name in ("sampling", "short"):
            if name in layer.model_fields_set:
                resolved[name] = getattr(layer, name)
    return [{**resolved, "frames": frames, "crop": crop} for frames in resolved["frames"] for crop in resolved["crop"]]


def _jobs(
    suite: Suite, registry: Registry, ds: DatasetEntry, entry: ModelEntry, preset: str, base_dir: Path | None
) -> list[ModelJob]:
    """The jobs of one dataset x model x preset: one, or one per seed of ``train.seeds``."""
    recipe = registry.model(entry.name).presets[preset].recipe if suite.recipes else None
    settings = suite.train_for(entry, recipe and recipe.settings)
    seeds = settings.seeds or [settings.seed]
    trainer = trainer_name(settings, registry)
    if registry.trainer(trainer).default:  # named or not, the default trainer: the same job
        settings = settings.model_copy(update={"trainer": None})
    inputs = _resolve_inputs(suite, entry, registry, preset)
    return [
        ModelJob(
            dataset=ds.name,
            dataset_options=tuple(sorted(ds.options.items())),
            model=entry.name,
            preset=preset,
            **clip,
            input_sweep=len(inputs) > 1,
            pretrained=str((Path(base_dir or ".") / entry.pretrained).resolve()) if entry.pretrained else None,
            data=_training_data(suite),
            train=tuple(sorted(settings.model_copy(update={"seed": seed, "seeds": None}).model_dump().items())),
            per_seed=settings.seeds is not None,
            recipe=recipe.source if recipe else None,
            trainer_name=trainer,
        )
        for clip in inputs
        for seed in seeds
    ]


def _training_data(suite: Suite) -> tuple[tuple[str, Any], ...]:
    """The data settings that decide a job's weights: the first decode policy (the one it trains with), left
    out at ``exact`` so the keys of earlier runs hold; decoder threads and the cache change no pixel."""
    data = suite.data.model_dump(exclude={"cache", "cache_dir", "decode_threads"})
    policies = data.pop("decode_policy")
    if policies[0] != "exact":
        data["decode_policy"] = policies[0]
    return tuple(sorted(data.items()))


def _decode_cells(suite: Suite, job: ModelJob, job_cells: list[Cell]) -> list[Cell]:
    """The baseline's cells again for each further decode policy of ``data.decode_policy``."""
    baseline = [c for c in job_cells if c.optimization == suite.baseline]
    return [replace(c, decode=label) for label in suite.data.decode_policy[1:] for c in baseline]


def _with_teachers(jobs: list[ModelJob], registry: Registry) -> list[ModelJob]:
    """Each job whose trainer learns from another job, with that job's slug (the teacher of the same dataset and
    seed, trained without a teacher), and the jobs ordered so every teacher trains before its students."""
    resolved = []
    for job in jobs:
        wanted = teacher_of(job.train_settings(), registry)
        if wanted is None:
            resolved.append(job)
            continue
        model, _, preset = wanted.partition("/")
        teachers = [
            t for t in jobs
            if (t.dataset, t.dataset_options, t.model, t.preset) == (job.dataset, job.dataset_options, model, preset)
            and teacher_of(t.train_settings(), registry) is None
        ]  # fmt: skip
        same_seed = [t for t in teachers if t.seed == job.seed] or teachers
        resolved.append(replace(job, teacher=same_seed[0].slug) if same_seed else job)
    return sorted(resolved, key=lambda j: j.teacher is not None)  # stable: teachers first, order kept otherwise


def expand(suite: Suite, registry: Registry, base_dir: Path | None = None) -> tuple[list[ModelJob], list[Cell]]:
    """The suite's matrix minus ``exclude``: the jobs to train and the cells to measure, in order."""
    jobs: list[ModelJob] = []
    cells: list[Cell] = []
    for ds in suite.datasets:
        for entry in suite.models:
            presets = entry.presets or [next(iter(registry.model(entry.name).presets))]
            for preset in presets:
                for job in _jobs(suite, registry, ds, entry, preset, base_dir):
                    sweep = suite.measure.thread_counts(0) if suite.measure.sweep else [None]
                    job_cells = [
                        Cell(job, opt, bs, threads)
                        for opt in suite.optimizations
                        for threads in sweep
                        for bs in suite.batch_sizes
                        if not _excluded(
                            suite.exclude,
                            {
                                "dataset": ds.name,
                                "model": entry.name,
                                "preset": preset,
                                "optimization": opt,
                                "batch_size": bs,
                            },
                        )
                    ]
                    job_cells += _decode_cells(suite, job, job_cells)
                    if job_cells:
                        jobs.append(job)
                        cells.extend(job_cells)
    jobs = _with_teachers(jobs, registry)
    by_slug = {job.slug: job for job in jobs}
    cells = [replace(cell, job=by_slug[cell.job.slug]) for cell in cells]
    order = {job.slug: i for i, job in enumerate(jobs)}
    return jobs, sorted(cells, key=lambda cell: order[cell.job.slug])


SELECTABLE = ("dataset", "model", "preset", "optimization", "batch_size")
"""What ``vidbench run --only key=value`` may select cells by."""


def parse_only(items: list[str] | tuple[str, ...]) -> dict[str, set[str]]:
    """``["model=x3d", "model=r2plus1d", "optimization=int8"]`` as ``{key: values}``; raises ``ValueError``
    naming the bad item and the allowed keys."""
    wanted: dict[str, set[str]] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or key not in SELECTABLE or not value:
            raise ValueError(f"--only {item!r}: expected KEY=VALUE with KEY one of {', '.join(SELECTABLE)}")
        wanted.setdefault(key, set()).add(value)
    return wanted


def _selected(cell: Cell, only: dict[str, set[str]]) -> bool:
    job = cell.job
    fields = {
        "dataset": {job.dataset},
        "model": {job.model},
        "preset": {job.preset, job.variant},
        "optimization": {cell.optimization},
        "batch_size": {str(cell.batch_size)},
    }
    return all(fields[key] & values for key, values in only.items())


def select(
    jobs: list[ModelJob], cells: list[Cell], only: dict[str, set[str]] | None
) -> tuple[list[ModelJob], list[Cell]]:
    """The cells matching every key of ``only`` (any of its values), and the jobs they need: their own and their
    teachers' (trained, not measured). ``None`` or empty: everything."""
    if not only:
        return jobs, cells
    kept = [cell for cell in cells if _selected(cell, only)]
    needed = {cell.job.slug for cell in kept}
    needed |= {job.teacher for job in jobs if job.slug in needed and job.teacher is not None}
    return [job for job in jobs if job.slug in needed], kept

"""Suites: YAML read with ``safe_load`` and validated by pydantic.

Every error names the field path, the bad value and, where the set is known, the allowed values,
in one line, before any work starts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vidbench.hashing import json_digest

if TYPE_CHECKING:  # annotations only: parsing a suite needs no plugin (and no torch)
    from vidbench.plugins import Registry


class SuiteError(Exception):
    """A suite file that cannot be run; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSettings(_Strict):
    """How clips are cut from a video; unset fields fall back to the model preset's input spec."""

    frames: int | None = Field(None, ge=1, le=256)
    crop: int | None = Field(None, ge=8, le=1024)
    stride: int | None = Field(None, ge=1, le=64)
    sampling: Literal["uniform", "dense"] = "uniform"
    short: Literal["loop", "repeat_last", "pad"] = "repeat_last"
    """What a video shorter than the clip does: wrap around, hold its last frame, or pad with black."""


class DataSettings(_Strict):
    """How files are decoded and served."""

    backend: Literal["auto", "decord", "pyav"] = "auto"
    square_pixels: bool = False
    """Resize non-square-pixel video to its display aspect before transforms."""
    cache: bool = False
    """Keep decoded clips (uint8) on disk under ``cache_dir`` for later epochs, cells and runs."""
    cache_dir: str = ".vidbench-cache/clips"
    cache_whole_video_mb: float = Field(16.0, ge=0)
    """Training draws random frames, so with ``cache`` a video whose decoded frames take at most this many
    MiB is cached whole and each draw indexes it (0: training always decodes from the file)."""


class AugmentSettings(_Strict):
    """Training augmentation (evaluation never augments)."""

    random_resized_crop: tuple[float, float] | None = None
    color_jitter: float = Field(0.0, ge=0, le=1)
    flip: bool = False
    """Horizontal flip with the dataset's label mirror map (pairs swap, unmirrorable classes never flip)."""


class TrainSettings(_Strict):
    """The training protocol shared by every model of the suite."""

    epochs: int = Field(5, ge=0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_batch: int | None = Field(None, ge=1)
    """The global batch ``lr`` was set for: the lr used scales linearly with the global batch (``batch_size`` x
    ``nproc`` x ``accumulate``) / ``lr_batch`` (Goyal et al. 2017); unset, ``lr`` is used as given."""
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    """After the linear warm-up: cosine decay to 0 at ``epochs``; a constant lr; or ``plateau``: constant until the
    validation top-1 stalls for ``early_stop_patience`` epochs, then divided by 10, twice, before the next stall
    (with ``until: plateau``) ends training."""
    cosine_epochs: int | None = Field(None, ge=1)
    """``schedule: cosine`` reaches its end at this epoch instead of at ``epochs``; the lr then holds at
    ``lr_min_factor`` x ``lr`` until a plateau or the cap (timm's cool-down at ``min_lr``)."""
    lr_min_factor: float = Field(0.0, ge=0, lt=1)
    """Where the cosine ends, as a fraction of ``lr``."""
    drop_path: float | None = Field(None, ge=0, lt=1)
    """Stochastic depth: the largest drop rate of the model's DropPath layers (timm's), rising linearly with
    depth; unset, the preset's own rates stay."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    workers: int = Field(2, ge=0)
    seed: int = 0
    seeds: list[int] | None = Field(None, min_length=1)
    """Train every model once per seed (e.g. ``[0, 1, 2]``; each its own job, its own rows); the table and the
    report give the mean and spread of top-1 over them. Unset: one run with ``seed``."""
    timeout_s: float = Field(3600, gt=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    accumulate: int = Field(1, ge=1)
    """Gradient accumulation: optimizer steps every ``accumulate`` batches."""
    amp: Literal["off", "bf16", "fp16"] = "off"
    """Mixed precision; off by default. Whether bf16 pays depends on the CPU: with native bf16 (AVX-512 BF16 or
    AMX) r2plus1d r18 trained 2.2x faster per batch than fp32 here (2.7x with ``channels_last``), but its
    gradients overflowed in its second epoch from scratch; without native bf16 it is emulated and slower."""
    ema_decay: float | None = Field(None, gt=0, lt=1)
    channels_last: bool = False
    """Train in the channels-last 3D memory format (NDHWC): the same arithmetic, and on this CPU 1.3x (R(2+1)D)
    to 1.9x (X3D) more clips/s for 3D convolutions; a model that reshapes its input may not support it."""
    deterministic: bool = False
    until: Literal["epochs", "plateau"] = "epochs"
    """``epochs``: train ``epochs`` epochs (a budget: the rows say "not converged"). ``plateau``: stop once the
    validation top-1 has not improved by ``min_delta`` for ``early_stop_patience`` epochs (3 when unset), with
    ``epochs`` and ``max_minutes`` as caps; the best validation epoch's weights are the ones evaluated."""
    min_epochs: int = Field(0, ge=0)
    """No plateau before this epoch: epochs without a better validation top-1 count toward ``early_stop_patience``
    (and the plateau schedule's lr drops) only after it, so a slow start is not taken for a plateau."""
    min_delta: float = Field(0.0, ge=0, le=1)
    """The smallest rise of validation top-1 (a fraction) that counts as an improvement."""
    early_stop_patience: int | None = Field(None, ge=1)
    """Stop after this many epochs without a better validation top-1 (a plateau)."""
    max_minutes: float | None = Field(None, gt=0)
    """Time budget per model: no new epoch starts once it is spent."""
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    checkpoint: str | None = None
    """Path of a trained state dict to load instead of training."""
    trainer: str | None = None
    """The training method, a trainer plugin (``vidbench plugins list``: cross-entropy on the labels, distillation
    from a teacher job of the suite, self-supervised pre-training then fine-tuning, or a third party's); unset:
    the one that declares itself the default (cross-entropy on the labels among the built-in ones)."""
    trainer_options: dict[str, Any] = Field(default_factory=dict)
    """The trainer's own options, validated by its schema when the suite is read (e.g. ``{teacher: r2plus1d/tiny}``
    for ``distill``)."""
    label_fraction: float | None = Field(None, gt=0, le=1)
    """Train on this fraction of the training split's labels (e.g. 0.1), drawn per class with a fixed seed (at
    least one clip per class): label efficiency. A self-supervised trainer still sees every training clip,
    without its label, when it pre-trains."""
    nproc: int = Field(1, ge=1, le=64)
    """Data-parallel training processes (``torchrun``, gloo on the CPU, NCCL on CUDA); ``batch_size`` is per
    process. 1 trains in one process, as before."""

    @property
    def global_batch(self) -> int:
        """Clips per optimizer step over all processes."""
        return self.batch_size * self.nproc * self.accumulate

    def effective_lr(self) -> float:
        """The lr training uses: ``lr``, scaled linearly from ``lr_batch`` to the global batch when it is set."""
        return self.lr if self.lr_batch is None else self.lr * self.global_batch / self.lr_batch


class ViewSettings(_Strict):
    """Multi-view testing (mmaction2's clips x crops): each test video seen as ``temporal`` windows spread over
    it times ``spatial`` crops, the class probabilities averaged over the views."""

    temporal: int = Field(1, ge=1, le=30)
    spatial: Literal[1, 3] = 1
    """1: the centre crop; 3: left / centre / right (or top / centre / bottom) after resizing to the crop."""


class MeasureSettings(_Strict):
    """How every cell is timed."""

    threads: int | list[int] | None = None
    """Threads every cell runs with (torch, ONNX Runtime, OpenVINO); unset: this machine's cores. A list
    (``[1, 2]``) is a thread sweep: every cell is measured once per count, one row each (training uses the
    largest)."""
    warmup: int = Field(3, ge=0)
    """Untimed calls per artifact and batch size, after its cold call."""
    min_iters: int = Field(10, ge=1)
    """Timed calls per artifact and batch size, at least (spread over the rounds)."""
    min_seconds: float = Field(1.0, ge=0)
    """Timed seconds per artifact and batch size, at least (spread over the rounds)."""
    rounds: int = Field(10, ge=1)
    """The artifacts of a job take turns this many times per batch size (interleaved timing); the speedup over
    the baseline is the median of the per-round ratios, its 95 % interval needs at least 6 rounds."""
    max_seconds: float = Field(60.0, gt=0)
    timeout_s: float = Field(600, gt=0)
    device: str = "cpu"
    eval_batch_size: int = Field(16, ge=1)
    calibration_clips: int = Field(32, ge=1)
    parity_min_agreement: float = Field(0.99, ge=0, le=1)
    """An artifact whose top-1 agrees with the trained model's own logits on fewer test clips than this is
    ``failed: parity``."""
    parity_min_agreement_lossy: float = Field(0.95, ge=0, le=1)
    """The same gate for lossy optimizations (int8, dynamic-int8, amp, tensorrt)."""
    parity_max_abs_logit_diff: float | None = Field(None, gt=0)
    views: ViewSettings | None = None
    """Multi-view accuracy of every artifact: the row's ``top1`` / ``top5`` are then over the views
    (``views`` says ``T x S``) and ``top1_single_view`` keeps the one-view figure; parity and timing stay
    single-view. Unset: one view."""
    probes: Literal["none", "baseline", "all"] = "baseline"
    """Which cells run the temporal probes (4 more passes over the test split) on their artifact: the baseline's
    cell only (the training evaluation runs them too), every optimized artifact as well, or none (neither the
    training evaluation nor any cell: for a timing suite whose model is too slow for 5 passes, or not trained
    enough for the probes to mean anything)."""

    @field_validator("threads")
    @classmethod
    def _valid_threads(cls, value: int | list[int] | None) -> int | list[int] | None:
        return _check_threads(value)

    def thread_counts(self, default: int) -> list[int]:
        """The thread counts cells are measured at (``default``, this machine's cores, when unset)."""
        if self.threads is None:
            return [default]
        return list(self.threads) if isinstance(self.threads, list) else [self.threads]

    @property
    def sweep(self) -> bool:
        """Whether the cells are measured at several thread counts (one row per count)."""
        return isinstance(self.threads, list) and len(self.threads) > 1


def _check_threads(value: int | list[int] | None) -> int | list[int] | None:
    counts = value if isinstance(value, list) else [] if value is None else [value]
    if isinstance(value, list) and not value:
        raise ValueError("measure.threads: an empty list; give one count (2) or several ([1, 2])")
    if any(c < 1 for c in counts):
        raise ValueError(f"measure.threads: thread counts are >= 1, not {value}")
    if len(set(counts)) != len(counts):
        raise ValueError(f"measure.threads: {value} repeats a count")
    return value


RECIPE_FIELDS = frozenset(
    {
        "optimizer", "lr", "lr_batch", "momentum", "weight_decay", "warmup_epochs", "schedule", "epochs", "until",
        "min_delta", "min_epochs", "early_stop_patience", "label_smoothing", "augment", "drop_path", "ema_decay",
        "grad_clip", "batch_size", "channels_last", "cosine_epochs", "lr_min_factor",
    }
)  # fmt: skip
"""What a preset's recipe may set: how the model learns, not where or how long the run may take (workers, seed,
timeouts, time budget, processes stay the suite's)."""


class ResourceSettings(_Strict):
    """What each task of the suite asks a Ray cluster for (``--executor ray``); the local executor ignores it."""

    cpus: float | None = Field(None, gt=0)
    """CPUs per task (default: ``measure.threads``, or this machine's cores)."""
    gpus: float | None = Field(None, ge=0)
    """GPUs per task (default: 1 when ``measure.device`` is CUDA, else 0); a DDP train task asks nproc times."""
    memory_gb: float | None = Field(None, gt=0)
    """Memory per task that Ray reserves for scheduling (default: none reserved)."""


class ModelEntry(_Strict):
    """One architecture of the suite, its presets and any per-model overrides."""

    name: str
    presets: list[str] = Field(default_factory=list)
    pretrained: str | None = None
    """A local state dict to start from (relative to the suite file); never downloaded."""
    input: InputSettings | None = None
    train: dict[str, Any] = Field(default_factory=dict)


class DatasetEntry(_Strict):
    """One dataset of the suite and its plugin-specific options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ExcludeRule(_Strict):
    """Cells matching every field given here are dropped from the matrix."""

    dataset: str | None = None
    model: str | None = None
    preset: str | None = None
    optimization: str | None = None
    batch_size: int | None = None


class Suite(_Strict):
    """A whole benchmark: datasets x models x presets x optimizations x batch sizes."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    plugins: list[str] = Field(default_factory=list)
    data_root: str = "data"
    output_dir: str = "results"
    datasets: list[DatasetEntry] = Field(min_length=1)
    models: list[ModelEntry] = Field(min_length=1)
    optimizations: list[str] = Field(min_length=1)
    baseline: str | None = None
    """The optimization that speedups and deltas are measured against (default: the one of ``optimizations``
    whose plugin declares itself the baseline)."""
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    input: InputSettings = Field(default_factory=InputSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    recipes: bool = True
    """Train each preset with its recipe (see ``vidbench models info``) where the model's own ``train:`` does not
    say otherwise; ``false``: every model trains under the suite's ``train:`` block and its own overrides only."""
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    exclude: list[ExcludeRule] = Field(default_factory=list)
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    extends: list[str] = Field(default_factory=list)
    """The suite files this one was built on, nearest first (a file's ``extends: other.yaml``; recorded by
    :func:`load_suite`, not written by hand)."""
    overrides: list[str] = Field(default_factory=list)
    """The command line's ``-o key.path=value`` settings applied on top, in order (recorded)."""

    @field_validator("batch_sizes")
    @classmethod
    def _positive_batches(cls, value: list[int]) -> list[int]:
        if not value or any(b < 1 for b in value):
            raise ValueError(f"batch sizes must be positive integers, got {value}")
        return value

    def digest(self) -> str:
        """A short hash of the suite's content, for env.json and cache keys."""
        return json_digest(self.model_dump(mode="json"), 16)

    def train_layers(self, entry: ModelEntry, recipe: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """The settings each layer sets, lowest precedence first: the suite's ``train:`` block, the preset's
        recipe (when ``recipes`` is on), the model's own ``train:``."""
        return {
            "suite": self.train.model_dump(exclude_unset=True),
            "recipe": dict(recipe or {}) if self.recipes else {},
            "model": dict(entry.train),
        }

    def train_for(self, entry: ModelEntry, recipe: Mapping[str, Any] | None = None) -> TrainSettings:
        """The train settings of one model preset: the suite's block, then the recipe, then the model's overrides."""
        merged: dict[str, Any] = {}
        for layer in self.train_layers(entry, recipe).values():
            merged.update(layer)
        return TrainSettings.model_validate(merged)


def train_sources(suite: Suite, entry: ModelEntry, recipe: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Where each train setting of a model preset comes from: ``suite``, ``recipe``, ``model`` or ``default``."""
    sources = dict.fromkeys(TrainSettings.model_fields, "default")
    for layer, settings in suite.train_layers(entry, recipe).items():
        sources.update(dict.fromkeys(settings, layer))
    return sources


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<suite>"


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the parent of ``loc``, to list beside an unknown key."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return sorted(current.model_fields) if isinstance(current, type) else []


def format_validation_error(exc: ValidationError, model: type[BaseModel], where: str) -> str:
    """Turn pydantic's first error into one line: where, field path, bad value, what is allowed."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = _allowed_fields(model, loc)
        message = f"unknown field; allowed: {', '.join(allowed)}" if allowed else "unknown field"
    value = err.get("input")
    shown = "" if err["type"] == "missing" else f" (got {value!r})"
    more = len(exc.errors()) - 1
    tail = f" [+{more} more error{'s' if more > 1 else ''}]" if more else ""
    return f"{where}: {_format_loc(loc)}: {message}{shown}{tail}"


def _unknown(where: str, loc: str, kind: str, value: str, known: list[str]) -> SuiteError:
    return SuiteError(f"{where}: {loc}: unknown {kind} {value!r}; allowed: {', '.join(sorted(known)) or '(none)'}")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a suite file as a mapping, with a one-line error for bad YAML."""
    if not path.is_file():
        raise SuiteError(f"{path}: suite file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"{path}: invalid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: <suite>: expected a mapping of suite fields, got {type(data).__name__}")
    return data


def merge_suites(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merged key by key, at any depth; lists and plain values replaced."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_suites(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_suite_data(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """A suite file's mapping with the suites it ``extends`` merged under it (their relative paths read from the
    extending file's folder, where the suite runs), and the chain of files it extends, nearest first."""
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data, []
    if not isinstance(parent, str):
        raise SuiteError(f"{path}: extends: the path of one suite file, relative to this one (got {parent!r})")
    parent_path = (path.parent / parent).resolve()
    if parent_path in (*chain, path.resolve()):
        raise SuiteError(f"{path}: extends: {parent!r} extends this file again (a cycle)")
    base, above = read_suite_data(parent_path, (*chain, path.resolve()))
    return merge_suites(base, data), [str(parent_path), *above]


def apply_override(data: dict[str, Any], text: str, where: str = "<suite>") -> dict[str, Any]:
    """``data`` with one ``key.path=value`` setting (the value read as YAML: ``3``, ``[1, 2]``, ``{a: 1}``;
    a number in the path indexes a list: ``models.0.train.lr=0.001``)."""
    path, equals, raw = text.partition("=")
    if not equals or not path:
        raise SuiteError(f"{where}: -o {text!r}: expected key.path=value, e.g. train.epochs=3")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise SuiteError(f"{where}: -o {text!r}: the value is not valid YAML") from None
    data = copy.deepcopy(data)
    node: Any = data
    keys = path.split(".")
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        at = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise SuiteError(f"{where}: -o {text!r}: {at}: a list of {len(node)}; give an index below it")
            key = int(key)  # type: ignore[assignment]
        elif not isinstance(node, dict):
            raise SuiteError(f"{where}: -o {text!r}: {at}: {'.'.join(keys[:depth])} is a value, not a mapping")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(key), dict | list):
                node[key] = {}
            node = node[key]
    return data


def parse_suite(data: dict[str, Any], where: str = "<suite>") -> Suite:
    """Validate the suite's structure (types, ranges, known fields)."""
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(format_validation_error(exc, Suite, where)) from None


def check_against_registry(
    suite: Suite, registry: Registry, where: str = "<suite>", base_dir: Path | None = None
) -> None:
    """Check every name the suite uses against the loaded plugins; dataset options by their schema."""
    for i, entry in enumerate(suite.datasets):
        if entry.name not in registry.datasets:
            raise _unknown(where, f"datasets[{i}].name", "dataset", entry.name, list(registry.datasets))
        options_model = registry.dataset(entry.name).options
        try:
            options_model.model_validate(entry.options)
        except ValidationError as exc:
            inner = format_validation_error(exc, options_model, where).split(": ", 1)[1]
            raise SuiteError(f"{where}: datasets[{i}].options.{inner}") from None
    for i, entry in enumerate(suite.models):
        if entry.name not in registry.models:
            raise _unknown(where, f"models[{i}].name", "model", entry.name, list(registry.models))
        presets = registry.model(entry.name).presets
        if entry.pretrained and not (Path(base_dir or ".") / entry.pretrained).is_file():
            raise SuiteError(f"{where}: models[{i}].pretrained: weights file not found: {entry.pretrained!r}")
        for j, preset in enumerate(entry.presets):
            if preset not in presets:
                raise _unknown(where, f"models[{i}].presets[{j}]", f"preset of {entry.name}", preset, list(presets))
        try:
            suite.train_for(entry)  # the suite's and the model's own settings, before any recipe
        except ValidationError as exc:
            inner = format_validation_error(exc, TrainSettings, where).split(": ", 1)[1]
            raise SuiteError(f"{where}: models[{i}].train.{inner}") from None
        for preset in entry.presets or list(presets)[:1]:
            _check_recipe(suite, entry, presets[preset], where)
        _check_trainer(suite, registry, i, where)
    for i, name in enumerate(suite.optimizations):
        if name not in registry.optimizations:
            raise _unknown(where, f"optimizations[{i}]", "optimization", name, list(registry.optimizations))
    if suite.baseline is not None and suite.baseline not in suite.optimizations:
        raise _unknown(where, "baseline", "baseline (not among optimizations)", suite.baseline, suite.optimizations)


class NoDefaultTrainer(ValueError):
    """A model names no trainer and not exactly one trainer plugin declares itself the default."""


def trainer_name(settings: TrainSettings, registry: Registry) -> str:
    """The trainer a model's train settings name, or the one that declares itself the default."""
    if settings.trainer is not None:
        return settings.trainer
    declared = registry.default_trainers()
    if len(declared) != 1:
        found = ", ".join(declared) or "none"
        raise NoDefaultTrainer(f"exactly one trainer plugin must declare itself the default (found: {found})")
    return declared[0]


def trainer_options(settings: TrainSettings, registry: Registry) -> Any:
    """The validated options of the trainer a model's train settings name."""
    return registry.trainer(trainer_name(settings, registry)).options.model_validate(settings.trainer_options)


def teacher_of(settings: TrainSettings, registry: Registry) -> str | None:
    """The ``model/preset`` a model's trainer learns from, or ``None``."""
    return registry.trainer(trainer_name(settings, registry)).teacher(trainer_options(settings, registry))


def _teacherless(settings: TrainSettings, registry: Registry) -> bool:
    try:
        return teacher_of(settings, registry) is None
    except (KeyError, ValueError):  # an unknown trainer, bad options, no default: reported at its own check
        return False


def _check_trainer(suite: Suite, registry: Registry, index: int, where: str) -> None:
    """The trainer a model names exists, its options fit its schema, and its teacher is a model of the suite
    trained without a teacher of its own."""
    entry = suite.models[index]
    settings = suite.train_for(entry)
    at = f"models[{index}].train"
    if settings.trainer is not None and settings.trainer not in registry.trainers:
        raise _unknown(where, f"{at}.trainer", "trainer", settings.trainer, list(registry.trainers))
    try:
        name = trainer_name(settings, registry)
    except NoDefaultTrainer as exc:
        raise SuiteError(f"{where}: {at}.trainer: unset, and {exc}; name one") from None
    try:
        teacher = teacher_of(settings, registry)
    except ValidationError as exc:
        options_model = registry.trainer(name).options
        inner = format_validation_error(exc, options_model, where).split(": ", 1)[1]
        raise SuiteError(f"{where}: {at}.trainer_options.{inner}") from None
    if teacher is None:
        return
    candidates = [
        f"{m.name}/{p}"
        for m in suite.models
        if m.name in registry.models and _teacherless(suite.train_for(m), registry)
        for p in (m.presets or list(registry.model(m.name).presets)[:1])
    ]
    if teacher not in candidates:
        raise SuiteError(
            f"{where}: {at}.trainer_options.teacher: {teacher!r} is not a model/preset of this suite trained without "
            f"a teacher; allowed: {', '.join(candidates) or '(none)'}"
        )


def _check_recipe(suite: Suite, entry: ModelEntry, preset: Any, where: str) -> None:
    """A plugin's recipe sets recipe fields only, with valid values."""
    if preset.recipe is None:
        return
    at = f"model {entry.name!r} preset {preset.name!r} recipe"
    extra = sorted(set(preset.recipe.settings) - RECIPE_FIELDS)
    if extra:
        raise SuiteError(
            f"{where}: {at}: {', '.join(extra)}: not a recipe field; allowed: {', '.join(sorted(RECIPE_FIELDS))}"
        )
    try:
        suite.train_for(entry, preset.recipe.settings)
    except ValidationError as exc:
        inner = format_validation_error(exc, TrainSettings, where).split(": ", 1)[1]
        raise SuiteError(f"{where}: {at}: {inner}") from None


def with_baseline(suite: Suite, registry: Registry, where: str = "<suite>") -> Suite:
    """The suite with ``baseline`` resolved: as given, else the one listed optimization whose plugin declares
    itself the baseline (``None`` when none does; several is an error that asks for ``baseline:``)."""
    if suite.baseline is not None:
        return suite
    declared = [name for name in suite.optimizations if registry.optimization(name).baseline]
    if len(declared) > 1:
        raise SuiteError(
            f"{where}: baseline: several optimizations declare themselves the baseline ({', '.join(declared)}); "
            "name one with baseline:"
        )
    return suite.model_copy(update={"baseline": declared[0] if declared else None})


def compose_suite(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> Suite:
    """A suite file with the files it ``extends`` under it and the ``-o`` ``overrides`` on top, validated in its
    structure (no plugin loaded); both are recorded in it. Raises :class:`SuiteError`."""
    where = str(path)
    data, chain = read_suite_data(path)
    for text in overrides:
        data = apply_override(data, text, where)
    for recorded in ("extends", "overrides"):
        if recorded in data:
            raise SuiteError(f"{where}: {recorded}: recorded by vidbench, not a setting (got {data[recorded]!r})")
    return parse_suite({**data, "extends": chain, "overrides": list(overrides)}, where)


def load_suite(
    path: str | Path, registry_loader: Any = None, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[Suite, Registry]:
    """Read a suite file (with the files it ``extends``, then the ``-o`` ``overrides``), validate and check it;
    load the plugins it needs. Raises :class:`SuiteError`."""
    from vidbench.plugins import PluginError, load_plugins

    path = Path(path)
    where = str(path)
    suite = compose_suite(path, overrides)
    try:
        registry = (registry_loader or load_plugins)(suite.plugins, base_dir=path.parent)
    except PluginError as exc:
        raise SuiteError(f"{where}: plugins: {exc}") from None
    check_against_registry(suite, registry, where, path.parent)
    return with_baseline(suite, registry, where), registry

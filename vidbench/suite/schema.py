"""A suite's schema: every setting, its type, range and default (pydantic), and the one-line error that names
the field path, the bad value and, where the set is known, the allowed values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from vidbench.hashing import json_digest


class SuiteError(Exception):
    """A suite file that cannot be run; the message is one line naming the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


INPUT_BOUNDS = {"frames": (1, 256), "crop": (8, 1024)}
"""The allowed range of each clip size setting (each value of a sweep's list)."""


class InputSettings(_Strict):
    """How clips are cut from a video; unset fields fall back to the model preset's input spec. ``frames`` and
    ``crop`` may be lists: an input-cost sweep, one job per frames x crop (trained and measured at that input)."""

    frames: int | list[int] | None = None
    crop: int | list[int] | None = None
    stride: int | None = Field(None, ge=1, le=64)
    sampling: Literal["uniform", "dense"] = "uniform"
    short: Literal["loop", "repeat_last", "pad"] = "repeat_last"
    """What a video shorter than the clip does: wrap around, hold its last frame, or pad with black."""

    @field_validator("frames", "crop")
    @classmethod
    def _in_range(cls, value: int | list[int] | None, info: ValidationInfo) -> int | list[int] | None:
        low, high = INPUT_BOUNDS[str(info.field_name)]
        values = value if isinstance(value, list) else [] if value is None else [value]
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a sweep needs one or more distinct values, e.g. [8, 16]")
        if any(not low <= v <= high for v in values):
            raise ValueError(f"each value must be {low} to {high}")
        return value


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
    decode_policy: list[str] = Field(default_factory=lambda: ["exact"], min_length=1)
    """How frames are decoded (``vidbench.data.decode.DecodePolicy``): a mode (exact, sequential, seek,
    keyframes, nonref), ``+scaled`` to scale at decode to the eval resize. The first trains and measures every
    cell; each further one adds cells of the baseline evaluated on the same trained model with that policy
    (``<baseline>@keyframes``): its accuracy cost, and its agreement with the first policy's logits."""
    decode_threads: int = Field(1, ge=1, le=64)
    """Decoder threads per file (FFmpeg threading; decord's ``num_threads``), in every row and ``env.json``."""

    @field_validator("decode_policy", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("decode_policy")
    @classmethod
    def _known_policies(cls, value: list[str]) -> list[str]:
        from vidbench.data.decode import policy_from_label

        for label in value:
            policy_from_label(label)  # raises with the allowed values
        if len(set(value)) != len(value):
            raise ValueError(f"decode_policy lists a policy twice: {value}")
        return value


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
    """Timed seconds per artifact and batch size, at most: an artifact past it sits out the remaining rounds
    once it has the 6 rounds an interval needs (bf16 on a CPU without fast bf16 convolutions: seconds a call).
    Also the cap of a timing outside the rounds (``benchmarks/retime_artifacts.py``)."""
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

    profile: Literal["none", "smallest", "all"] = "smallest"
    """Which batch sizes of each timed artifact get an operator profile from their engine's own profiler
    (torch.profiler, ONNX Runtime profiling, OpenVINO performance counters) once timed: the smallest, all, or
    none (the report's "where the time goes")."""
    profile_seconds: float = Field(1.0, gt=0)
    """Seconds of calls per profile, roughly (at least 3 calls, at most 50)."""

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


class _ConfidenceLever(_Strict):
    """What a cascade and an early exit share: the thresholds tried on validation, the test clips timed."""

    thresholds: list[float] | None = None
    """The softmax confidences tried on the validation split (default: 0, 0.02, ..., 1)."""
    timed_clips: int | None = Field(None, ge=1)
    """Test clips whose real sequence of calls is timed (default: the whole test split)."""
    max_drop: float | None = Field(None, ge=0, le=100)
    """The accuracy the lever may give up, in top-1 points below the slow path's on the validation split (a
    team's budget: ``1`` = one point); unset: as much as the slow path's 95 % interval allows (a tie)."""

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (not value or any(not 0.0 <= t <= 1.0 for t in value)):
            raise ValueError("thresholds are softmax confidences: one or more values from 0 to 1")
        return value


class CascadeSettings(_ConfidenceLever):
    """A cascade of two trained models of the suite: ``fast`` answers a clip when its softmax confidence clears
    the threshold, else ``slow`` runs too and answers. The threshold is chosen on the validation split (the
    cheapest whose top-1 lies inside the 95 % interval of ``slow``'s), then the cascade runs on the test clips."""

    fast: str = Field(pattern=r"^[^/]+/[^/]+$")
    """``model/preset`` of the suite (``x3d/tiny``; an input sweep's ``tiny@8x32``, a trainer's ``tiny+distill``)."""
    slow: str = Field(pattern=r"^[^/]+/[^/]+$")


class EarlyExitSettings(_ConfidenceLever):
    """A model of the suite with early exits (``r2plus1d/tiny-exit+early-exit``: the preset with an exit head,
    trained by the ``early-exit`` trainer) measured exiting when confident: at its exit it answers when its
    softmax confidence clears the threshold, else the rest of the network runs. The threshold is chosen on the
    validation split as a cascade's is, the exit in the role of the fast model, the whole network the slow one."""

    model: str = Field(pattern=r"^[^/]+/[^/]+$")


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
    cascades: list[CascadeSettings] = Field(default_factory=list)
    """Cascades of two of the suite's models (a production lever: docs/production-levers.md)."""
    early_exits: list[EarlyExitSettings] = Field(default_factory=list)
    """Models with early exits measured exiting when confident (docs/production-levers.md)."""
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

"""A suite checked against the loaded plugins: every dataset, model, preset, recipe, trainer, teacher and
optimization it names exists and its options fit the plugin's schema; the baseline resolved."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from vidbench.suite.schema import RECIPE_FIELDS, ModelEntry, Suite, SuiteError, TrainSettings, format_validation_error

if TYPE_CHECKING:  # annotations only: checking needs the loaded registry, not its module
    from vidbench.plugins import Registry


def _unknown(where: str, loc: str, kind: str, value: str, known: list[str]) -> SuiteError:
    return SuiteError(f"{where}: {loc}: unknown {kind} {value!r}; allowed: {', '.join(sorted(known)) or '(none)'}")


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
    for i, cascade in enumerate(suite.cascades):
        for role in ("fast", "slow"):
            _check_cascade_model(suite, getattr(cascade, role), f"cascades[{i}].{role}", where)
    for i, early in enumerate(suite.early_exits):
        _check_cascade_model(suite, early.model, f"early_exits[{i}].model", where)
    if suite.baseline is not None and suite.baseline not in suite.optimizations:
        raise _unknown(where, "baseline", "baseline (not among optimizations)", suite.baseline, suite.optimizations)


def _check_cascade_model(suite: Suite, name: str, loc: str, where: str) -> None:
    """A cascade's ``model/preset`` names a model and preset of the suite (before any ``+trainer`` or ``@input``)."""
    model, _, variant = name.partition("/")
    known: dict[str, list[str]] = {}
    for entry in suite.models:  # one model may have several entries (other presets, another trainer)
        known.setdefault(entry.name, []).extend(entry.presets)
    preset = re.split(r"[+@]", variant, maxsplit=1)[0]
    if model not in known or (known[model] and preset not in known[model]):
        allowed = [f"{m}/{p}" for m, presets in known.items() for p in presets or ["<preset>"]]
        raise _unknown(where, loc, "model/preset of this suite", name, allowed)


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

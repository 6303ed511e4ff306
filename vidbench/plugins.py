"""Plugin discovery: the ``vidbench`` entry-point group plus local modules named in a suite."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pluggy

from vidbench import hookspecs
from vidbench.specs import DatasetSpec, ModelSpec, OptimizationSpec, TrainerSpec

Kind = Literal["model", "dataset", "optimization", "trainer"]
_HOOKS: dict[Kind, str] = {
    "model": "vidbench_models",
    "dataset": "vidbench_datasets",
    "optimization": "vidbench_optimizations",
    "trainer": "vidbench_trainers",
}


class PluginError(Exception):
    """A plugin could not be loaded, or two plugins claim the same name."""


@dataclass(frozen=True)
class Registered:
    """One descriptor and where it came from (a package entry point or a file)."""

    kind: Kind
    spec: Any
    source: str


@dataclass
class Registry:
    """Every model, dataset, optimization and trainer the loaded plugins offer, by name."""

    models: dict[str, Registered] = field(default_factory=dict)
    datasets: dict[str, Registered] = field(default_factory=dict)
    optimizations: dict[str, Registered] = field(default_factory=dict)
    trainers: dict[str, Registered] = field(default_factory=dict)

    def table(self, kind: Kind) -> dict[str, Registered]:
        tables = {"model": self.models, "dataset": self.datasets, "optimization": self.optimizations}
        return {**tables, "trainer": self.trainers}[kind]

    def model(self, name: str) -> ModelSpec:
        return self.models[name].spec

    def dataset(self, name: str) -> DatasetSpec:
        return self.datasets[name].spec

    def optimization(self, name: str) -> OptimizationSpec:
        return self.optimizations[name].spec

    def trainer(self, name: str) -> TrainerSpec:
        return self.trainers[name].spec

    def default_trainers(self) -> list[str]:
        """The trainers that declare themselves the default (``TrainerSpec.default``): one, unless a plugin errs."""
        return sorted(name for name, r in self.trainers.items() if r.spec.default)

    def all(self) -> Iterable[Registered]:
        for kind in _HOOKS:
            yield from sorted(self.table(kind).values(), key=lambda r: r.spec.name)


def _entry_point_modules() -> list[tuple[str, object]]:
    loaded = []
    for ep in entry_points(group=hookspecs.PROJECT):
        dist = ep.dist.name if ep.dist is not None else "?"
        try:
            loaded.append((f"{dist}:{ep.value}", ep.load()))
        except Exception as exc:
            raise PluginError(f"plugin entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
    return loaded


def load_module_file(path: str | Path) -> ModuleType:
    """Import a plugin module from a file path (a suite's ``plugins:`` entry)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise PluginError(f"plugin file not found: {path}")
    name = f"vidbench_local_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import plugin file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise PluginError(f"plugin file {path} failed to import: {exc}") from exc
    return module


def _collect(registry: Registry, pm: pluggy.PluginManager) -> None:
    for kind, hook_name in _HOOKS.items():
        table = registry.table(kind)
        # pluggy calls the newest registration first; keep registration order for the messages.
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            for spec in impl.function() or []:
                if spec.name in table:
                    raise PluginError(
                        f"duplicate {kind} name {spec.name!r}: defined by {table[spec.name].source} "
                        f"and by {impl.plugin_name}"
                    )
                table[spec.name] = Registered(kind, spec, impl.plugin_name)


def load_plugins(local_files: Iterable[str | Path] = (), base_dir: Path | None = None) -> Registry:
    """Load every installed plugin and the given local plugin files into one registry."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    sources = _entry_point_modules()
    for path in local_files:
        resolved = Path(path) if base_dir is None or Path(path).is_absolute() else base_dir / path
        sources.append((str(resolved), load_module_file(resolved)))
    for source, plugin in sources:
        if not pm.is_registered(plugin):
            pm.register(plugin, name=source)
    _collect(registry, pm)
    return registry

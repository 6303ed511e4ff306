"""Composing a suite: its YAML (``safe_load``), the files it ``extends``, the ``-o`` overrides on top, then the
schema and the checks against the loaded plugins, before any work starts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from vidbench.suite.checks import check_against_registry, with_baseline
from vidbench.suite.schema import Suite, SuiteError, format_validation_error

if TYPE_CHECKING:  # annotations only: parsing a suite needs no plugin (and no torch)
    from vidbench.plugins import Registry


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
    path = Path(path)
    return with_plugins(compose_suite(path, overrides), path, registry_loader)


def with_plugins(suite: Suite, path: Path, registry_loader: Any = None) -> tuple[Suite, Registry]:
    """A composed suite (read from ``path``) checked against the plugins it needs, loaded here, with its baseline
    resolved. Raises :class:`SuiteError`."""
    from vidbench.plugins import PluginError, load_plugins

    where = str(path)
    try:
        registry = (registry_loader or load_plugins)(suite.plugins, base_dir=path.parent)
    except PluginError as exc:
        raise SuiteError(f"{where}: plugins: {exc}") from None
    check_against_registry(suite, registry, where, path.parent)
    return with_baseline(suite, registry, where), registry

"""The structure is checked by tools, not by memory: import-linter's contracts, no plugin named in the core,
and no run-directory path spelled outside :mod:`vidbench.rundir`."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

from tests.conftest import REPO

CORE = REPO / "vidbench"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

RUN_FILES = {
    "results.jsonl", "results.csv", "env.json", "suite.json", "skipped.csv", "summary.md", "report.md",
    "report.html", "job.json", "checkpoint.pt", "best.pt", "eval.npz", "train.json", "train_state.pt", "metrics.jsonl",
    "analysis.json", "confusion.csv", "embeddings.npy", "embedding_labels.npy", "tsne.png", "task.json",
    "log.txt", "error.txt", "card.json",
}  # fmt: skip
"""File names inside a run directory: spelled only in vidbench/rundir.py."""
RUN_FOLDERS = {
    "models", "logs", "artifacts", "datasets", "features", "serve", "report_files", "tensorboard", "samples", "phases"
}  # fmt: skip
"""Folder names inside a run directory: never joined onto a path outside vidbench/rundir.py."""


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def test_import_contracts_hold() -> None:
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "No import cycles between sibling modules KEPT" in proc.stdout


def test_a_plugin_importing_the_run_machinery_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(CORE, tmp_path / "vidbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "plugins", tmp_path / "vidbench_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "vidbench_plugins" / "models" / "sneaky.py").write_text("from vidbench.run import scheduler  # noqa\n")
    proc = lint_imports(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "Plugins import only the contract, the kit and vidbench.data BROKEN" in proc.stdout
    assert "vidbench_plugins.models.sneaky -> vidbench.run.scheduler" in proc.stdout


def _core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_core_names_no_plugin() -> None:
    """The baseline is declared by its plugin (``baseline=True``) or named by a suite, never by the core; so is the
    default trainer (``default=True``)."""
    plugin_names = {"eager", "vidbench_plugins", '"supervised"'}
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in _core_modules()
        for name in plugin_names
        if name in path.read_text().lower()
    ]
    assert not offenders, offenders


def _path_literals(path: Path) -> list[str]:
    """String literals of ``path`` that name a run-directory file, or a run-directory folder joined with ``/``."""
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
    ]
    found = []
    for i, token in enumerate(tokens):
        if token.type != tokenize.STRING:
            continue
        value = token.string.strip("\"'")
        joined = (i > 0 and tokens[i - 1].string == "/") or (i + 1 < len(tokens) and tokens[i + 1].string == "/")
        if value in RUN_FILES or (value in RUN_FOLDERS and joined):
            found.append(f"{path.relative_to(REPO)}:{token.start[0]}: {token.string}")
    return found


OWN_LAYOUTS = {"features.py"}
"""Modules that own a folder layout of their own whose file names happen to match a run directory's (the feature
store: ``embeddings.npy``, ``skipped.csv``); the store's folder, inside a run or not, is :class:`RunDir`'s."""


def test_no_run_directory_path_outside_rundir() -> None:
    scanned = [path for path in _core_modules() if path.name != "rundir.py" and path.name not in OWN_LAYOUTS]
    offenders = [hit for path in scanned for hit in _path_literals(path)]
    assert not offenders, offenders
    assert _path_literals(CORE / "rundir.py"), "the scan finds nothing even where the paths are spelled"


def test_the_design_doc_names_every_column_of_a_row() -> None:
    """``docs/design.md``'s result schema lists each column of ``results.Row`` under its group, so a column added
    to the code without a line in the design fails here."""
    import re

    from vidbench.results import ROW_GROUPS

    text = (REPO / "docs" / "design.md").read_text()
    section = text[text.index("## Result schema") :]
    section = section[: section.index("\n## ", 3)]
    for group, columns in ROW_GROUPS.items():
        listed = re.search(rf"^- \*\*{group}\*\* \(`Row{group.title()}`\):(.*?)(?=^- \*\*|\Z)", section, re.M | re.S)
        assert listed, f"design.md's result schema has no line for the {group} columns"
        named = set(re.findall(r"`([a-z0-9_]+)`", listed.group(1)))
        missing = sorted(set(columns.__annotations__) - named)
        assert not missing, f"design.md's {group} columns miss {missing}"
    overlap = [c for g in ROW_GROUPS.values() for c in g.__annotations__]
    assert len(overlap) == len(set(overlap)), "a column in two groups"

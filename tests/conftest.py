"""Shared fixtures: a tiny synthetic dataset generated once per session, and suite/CLI helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REAL_CLIPS = REPO.parent / "shared" / "data" / "real-clips"
TINY_DATA = {"size": "tiny", "resolution": 32, "length": 8}


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding the tiny synthetic-motion set (160 real MP4 files), made once."""
    from vidbench_plugins.datasets.synthetic import prepare

    root = tmp_path_factory.mktemp("data")
    prepare(root / "synthetic-motion", TINY_DATA)
    return root


def suite_dict(data_root: Path, **overrides: Any) -> dict[str, Any]:
    """A small, fast suite over the tiny dataset; keyword arguments replace top-level fields."""
    suite: dict[str, Any] = {
        "name": "t",
        "data_root": str(data_root),
        "output_dir": "results",
        "recipes": False,  # the presets' recipes train for minutes; tests keep the 1-epoch block below
        "datasets": [{"name": "synthetic-motion", "options": dict(TINY_DATA)}],
        "models": [{"name": "r2plus1d", "presets": ["tiny"]}],
        "optimizations": ["eager"],
        "batch_sizes": [1, 2],
        "input": {"frames": 4, "crop": 16},
        "train": {"epochs": 1, "batch_size": 16, "workers": 0, "timeout_s": 300},
        "measure": {
            "warmup": 1,
            "min_iters": 3,
            "min_seconds": 0.0,
            "eval_batch_size": 32,
            "threads": 1,
            "timeout_s": 120,
        },
    }
    suite.update(overrides)
    return suite


def write_suite(directory: Path, data_root: Path, **overrides: Any) -> Path:
    path = directory / "suite.yaml"
    path.write_text(yaml.safe_dump(suite_dict(data_root, **overrides), sort_keys=False))
    return path


def vidbench(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the real ``vidbench`` CLI in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "vidbench.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
        **kwargs,
    )


def only_run_dir(cwd: Path, suite: str = "t") -> Path:
    runs = sorted((cwd / "results" / suite).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def install_into(package: Path, site: Path) -> dict[str, str]:
    """pip-install a local package into its own folder (not the venv); returns the env that sees it."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
        timeout=300,
    )
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

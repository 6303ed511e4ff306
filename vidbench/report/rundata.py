"""Everything a report reads from a run directory, loaded once and tolerant of missing files.

A run directory holds ``results.jsonl`` (the rows), ``env.json``, ``suite.json`` and, per trained model
job, ``models/<dataset>__<model>__<preset>/`` with ``train.json``, ``metrics.jsonl`` (training history),
``analysis.json`` (per-class accuracy, confusion) and ``tsne.png``. Any of these may be absent (a
failed job, an older run): the loaders return ``None`` or empty values and the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vidbench.results import ResultStore

CELL_COLUMNS: tuple[str, ...] = ("dataset", "model", "preset", "optimization", "batch_size")
"""The columns that identify one cell (one result row) across runs."""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


@dataclass
class JobFiles:
    """The per-model-job files of a run (one trained dataset x model x preset)."""

    dataset: str
    model: str
    preset: str
    folder: Path
    train: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``model/preset``, the name the figures use."""
        return f"{self.model}/{self.preset}"

    @property
    def tsne_png(self) -> Path | None:
        """The t-SNE figure the evaluation wrote, if any."""
        path = self.folder / "tsne.png"
        return path if path.is_file() else None

    def missing_reason(self, what: str) -> str:
        """Why ``what`` is absent for this job, for a "not available" note."""
        if not self.folder.is_dir():
            return f"{self.label}: no model folder (training did not run or failed)"
        if self.train is None:
            return f"{self.label}: training did not finish (no train.json)"
        return f"{self.label}: no {what} in {self.folder.name}/"


def job_folder(run_dir: Path, dataset: str, model: str, preset: str) -> Path:
    """Where the run put a model job's files (the same layout as the worker's job directory)."""
    return run_dir / "models" / f"{dataset}__{model}__{preset}"


@dataclass
class RunData:
    """A run directory's rows, environment, suite and per-job files."""

    run_dir: Path
    frame: pd.DataFrame
    env: dict[str, Any]
    suite: dict[str, Any]
    jobs: list[JobFiles]

    @property
    def title(self) -> str:
        """``<suite> - run <run_id>``."""
        return f"{self.env.get('suite') or self.run_dir.parent.name} - run {self.run_dir.name}"

    @property
    def ok(self) -> pd.DataFrame:
        """The rows with status ``ok``."""
        return self.frame[self.frame["status"] == "ok"]

    def job(self, dataset: str, model: str, preset: str) -> JobFiles | None:
        """The job files of one model job, if the run has it."""
        return next((j for j in self.jobs if (j.dataset, j.model, j.preset) == (dataset, model, preset)), None)


def load_frame(run_dir: Path) -> pd.DataFrame:
    """A run's rows with numeric columns as floats (``None`` becomes NaN) and ``batch_size`` as int."""
    frame = ResultStore(run_dir).frame()
    for column in frame.columns:
        if column in ("batch_size", "threads", "frames", "crop"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        elif frame[column].dtype == object and column not in CELL_COLUMNS:
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.notna().sum() == frame[column].notna().sum() and converted.notna().any():
                frame[column] = converted.astype(float)
    frame["reason"] = frame["reason"].fillna("").astype(str)
    return frame


def load_run(run_dir: Path) -> RunData:
    """Load a run directory; raises ``FileNotFoundError`` when it has no ``results.jsonl``."""
    run_dir = Path(run_dir)
    if not (run_dir / "results.jsonl").exists():
        raise FileNotFoundError(f"{run_dir}: no results.jsonl here; expected a directory like results/<suite>/<run_id>")
    frame = load_frame(run_dir)
    jobs = []
    for dataset, model, preset in frame[["dataset", "model", "preset"]].drop_duplicates().itertuples(index=False):
        folder = job_folder(run_dir, dataset, model, preset)
        jobs.append(
            JobFiles(
                dataset,
                model,
                preset,
                folder,
                train=_read_json(folder / "train.json"),
                analysis=_read_json(folder / "analysis.json"),
                history=_read_jsonl(folder / "metrics.jsonl"),
            )
        )
    return RunData(
        run_dir=run_dir,
        frame=frame,
        env=_read_json(run_dir / "env.json") or {},
        suite=_read_json(run_dir / "suite.json") or {},
        jobs=jobs,
    )

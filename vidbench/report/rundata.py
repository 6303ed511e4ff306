"""Everything a report reads from a run directory, loaded once and tolerant of missing files.

A run directory (:class:`vidbench.rundir.RunDir`) holds the rows, the environment, the suite and, per
trained model job, its summary, its training history, its analysis (per-class accuracy, confusion) and
its t-SNE figure. Any of these may be absent (a failed job, an older run): the loaders return ``None``
or empty values and the report says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vidbench.rundir import JobDir, RunDir, job_slug, read_json

CELL_COLUMNS: tuple[str, ...] = ("dataset", "model", "preset", "optimization", "batch_size")
"""The columns that identify one cell (one result row) across runs."""


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
    files: JobDir
    train: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    seed: int | None = None
    """The training seed, when the suite trained this model under several (``train.seeds``)."""

    @property
    def label(self) -> str:
        """``model/preset`` (and ``seed n`` for one of several seeds), the name the figures use."""
        return f"{self.model}/{self.preset}" + (f" seed {self.seed}" if self.seed is not None else "")

    @property
    def converged(self) -> bool | None:
        """Whether training stopped at a validation plateau (``False``: a budget stopped it; ``None``: unknown)."""
        value = (self.train or {}).get("converged")
        return None if value is None else bool(value)

    @property
    def tsne_png(self) -> Path | None:
        """The t-SNE figure the evaluation wrote, if any."""
        return self.files.tsne if self.files.tsne.is_file() else None

    def missing_reason(self, what: str) -> str:
        """Why ``what`` is absent for this job, for a "not available" note."""
        if not self.files.root.is_dir():
            return f"{self.label}: no model folder (training did not run or failed)"
        if self.train is None:
            return f"{self.label}: training did not finish (no {self.files.summary.name})"
        return f"{self.label}: no {what} in {self.files.slug}/"


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
    def baseline(self) -> str | None:
        """The optimization speedups and deltas are measured against (the suite's, resolved at run time)."""
        return self.suite.get("baseline")

    @property
    def ok(self) -> pd.DataFrame:
        """The rows with status ``ok``."""
        return self.frame[self.frame["status"] == "ok"]

    def job(self, dataset: str, model: str, preset: str) -> JobFiles | None:
        """The job files of one model job, if the run has it."""
        return next((j for j in self.jobs if (j.dataset, j.model, j.preset) == (dataset, model, preset)), None)

    def latency_samples(self, job: str, task: str, batch_size: int) -> np.ndarray | None:
        """Every timed call's milliseconds of one cell at one batch size (``task``: the row's ``measure_task``, its
        optimization in runs before thread sweeps), or ``None`` when not kept."""
        path = RunDir(self.run_dir).task(job, task).latency_samples(batch_size)
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None

    def cascade_records(self) -> list[dict[str, Any]]:
        """Every cascade's record (``cascades/*.json``; a failed one carries its reason), by name."""
        records = (read_json(path) for path in RunDir(self.run_dir).cascades())
        return [record for record in records if record is not None]

    def operator_profile(self, job: str, task: str, batch_size: int) -> dict[str, Any] | None:
        """One cell's operator profile record at one batch size (the profile and the row's p50, or the reason
        there is none), or ``None`` when the run took none."""
        return read_json(RunDir(self.run_dir).task(job, task).operator_profile(batch_size))


def load_frame(run_dir: Path) -> pd.DataFrame:
    """A run's rows with numeric columns as floats (``None`` becomes NaN) and ``batch_size`` as int."""
    frame = RunDir(run_dir).store().frame()
    for column in frame.columns:
        if column in ("batch_size", "threads", "frames", "crop"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        elif frame[column].dtype == object and column not in CELL_COLUMNS:
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.notna().sum() == frame[column].notna().sum() and converted.notna().any():
                frame[column] = converted.astype(float)
    frame["reason"] = frame["reason"].fillna("").astype(str)
    return frame


def _job_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Dataset, model, preset, job folder and, for one of several seeds (a folder named with it), the seed of
    every row (rows written before ``job`` was recorded name the folder of their one seed)."""
    columns = frame[["dataset", "model", "preset"]].copy()
    plain = [job_slug(d, m, p) for d, m, p in columns.itertuples(index=False)]
    slugs = list(frame["job"]) if "job" in frame else plain
    slugs = [j if isinstance(j, str) and j else s for j, s in zip(slugs, plain, strict=True)]
    seeds = list(frame["seed"]) if "seed" in frame else [None] * len(frame)
    per_seed = [int(seed) if slug != p else None for slug, p, seed in zip(slugs, plain, seeds, strict=True)]
    return columns.assign(job=slugs, seed=per_seed)


def load_run(run_dir: Path) -> RunData:
    """Load a run directory; raises ``FileNotFoundError`` when it has no ``results.jsonl``."""
    run = RunDir(run_dir)
    if not run.exists():
        raise FileNotFoundError(f"{run_dir}: no results here; expected a directory like results/<suite>/<run_id>")
    frame = load_frame(run.root)
    jobs = []
    for dataset, model, preset, slug, seed in _job_columns(frame).drop_duplicates().itertuples(index=False):
        files = run.job(slug)
        jobs.append(
            JobFiles(
                dataset,
                model,
                preset,
                files,
                train=files.read_summary(),
                analysis=read_json(files.analysis),
                history=_read_jsonl(files.metrics),
                seed=None if seed is None or pd.isna(seed) else int(seed),
            )
        )
    return RunData(run_dir=run.root, frame=frame, env=run.read_env(), suite=run.read_suite(), jobs=jobs)

"""``vidbench export``: a run's results in the formats other tools read.

- ``parquet``: the result table with typed columns (numbers as float64 or int64, flags as booleans, text as
  strings) for pandas, DuckDB or Spark.
- ``mlflow``: one MLflow run for the vidbench run (its report, table, summary and environment as artifacts) and
  one nested run per cell (identity as params, measurements as metrics, status and reason as tags), into a
  local store by default (``sqlite:///<run_dir>/mlflow/mlflow.db``, artifacts beside it), or any tracking URI.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from vidbench.report.rundata import load_frame
from vidbench.rundir import RunDir

PARAM_COLUMNS = (
    "dataset", "model", "preset", "optimization", "batch_size", "threads", "frames", "crop", "device", "trainer",
    "seed", "measure_task",
)  # fmt: skip
"""The columns that identify a cell: MLflow params (the rest of a row's numbers are metrics)."""
TAG_COLUMNS = ("status", "reason", "cell_key", "run_id", "suite", "notes", "stopped_by")


def typed_frame(run_dir: Path) -> pd.DataFrame:
    """The run's rows with one type per column: numbers, booleans, or strings (missing stays missing)."""
    frame = load_frame(run_dir)
    for column in frame.columns:
        values = frame[column].dropna()
        if frame[column].dtype != object or values.empty:
            continue
        if values.map(lambda v: isinstance(v, bool)).all():
            frame[column] = frame[column].astype("boolean")
        else:
            frame[column] = frame[column].map(lambda v: None if v is None or v != v else str(v)).astype("string")
    return frame


def to_parquet(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``results.parquet`` (to ``out``, default: the run directory) and return its path."""
    path = Path(out) if out else RunDir(run_dir).parquet
    path.parent.mkdir(parents=True, exist_ok=True)
    typed_frame(run_dir).to_parquet(path, index=False)
    return path


def default_tracking_uri(run_dir: Path) -> str:
    """A local MLflow store inside the run directory (no server)."""
    return f"sqlite:///{RunDir(run_dir).mlflow_db.resolve()}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def to_mlflow(run_dir: Path, tracking_uri: str | None = None, experiment: str | None = None) -> dict[str, Any]:
    """Log the run to MLflow; returns the tracking URI, experiment id, parent run id and cell count."""
    from mlflow.tracking import MlflowClient

    run = RunDir(run_dir)
    uri = tracking_uri or default_tracking_uri(run.root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    env = run.read_env()
    name = experiment or f"vidbench/{env.get('suite') or run.root.parent.name}"
    found = client.get_experiment_by_name(name)
    artifacts = run.mlflow_artifacts.resolve().as_uri()
    experiment_id = found.experiment_id if found else client.create_experiment(name, artifact_location=artifacts)
    frame = typed_frame(run.root)
    parent = client.create_run(experiment_id, run_name=run.run_id, tags={"vidbench.run_dir": str(run.root)})
    for key in ("cpu", "device", "git_commit", "suite_hash", "env_hash"):
        if env.get(key) is not None:
            client.set_tag(parent.info.run_id, f"env.{key}", str(env[key])[:5000])
    for file in (run.report_html, run.results_csv, run.summary, run.env):
        if Path(file).is_file():
            client.log_artifact(parent.info.run_id, str(file))
    for row in frame.to_dict("records"):
        cell = "/".join(str(row.get(k)) for k in ("model", "preset", "optimization")) + f"/b{row.get('batch_size')}"
        tags = {"mlflow.parentRunId": parent.info.run_id}
        tags.update({k: str(row[k])[:5000] for k in TAG_COLUMNS if k in row and not pd.isna(row[k])})
        child = client.create_run(experiment_id, run_name=cell, tags=tags)
        for key in PARAM_COLUMNS:
            if key in row and not pd.isna(row[key]):
                client.log_param(child.info.run_id, key, row[key])
        for key, value in row.items():
            number = _number(value)
            if key not in PARAM_COLUMNS and number is not None:
                client.log_metric(child.info.run_id, key, number)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent.info.run_id,
            "cells": len(frame)}  # fmt: skip

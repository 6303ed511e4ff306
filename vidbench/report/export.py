"""``vidbench export``: a run's results in the formats other tools read.

- ``parquet``: the result table with typed columns (numbers as float64 or int64, flags as booleans, text as
  strings) for pandas, DuckDB or Spark.
- ``mlflow``: one MLflow run for the vidbench run (its report, table, summary and environment as artifacts) and
  one nested run per cell (identity as params, measurements as metrics, status and reason as tags), into a
  local store by default (``sqlite:///<run_dir>/mlflow/mlflow.db``, artifacts beside it), or any tracking URI.
- ``wandb``: Weights & Biases in offline mode (nothing leaves the machine; ``wandb sync`` uploads later): one
  W&B run per cell (identity as config, measurements as summary, status as a tag, the reason as notes) and one
  for the vidbench run holding the report, table, summary and environment as an artifact, all in one group.
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


def _cell_name(row: dict[str, Any]) -> str:
    return "/".join(str(row.get(k)) for k in ("model", "preset", "optimization")) + f"/b{row.get('batch_size')}"


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in PARAM_COLUMNS if k in row and not pd.isna(row[k])}


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    numbers = {key: _number(value) for key, value in row.items() if key not in PARAM_COLUMNS}
    return {key: value for key, value in numbers.items() if value is not None}


def _run_files(run: RunDir) -> list[Path]:
    return [Path(f) for f in (run.report_html, run.results_csv, run.summary, run.env) if Path(f).is_file()]


def to_wandb(run_dir: Path, out: Path | None = None, project: str | None = None) -> dict[str, Any]:
    """Write the run as offline W&B runs under ``out`` (default: in the run directory); returns the folder,
    project, group and the offline run folders written (cells first, then the run's own)."""
    import wandb

    run = RunDir(run_dir)
    env = run.read_env()
    root = Path(out) if out else run.wandb_dir
    root.mkdir(parents=True, exist_ok=True)
    project = project or f"vidbench-{env.get('suite') or run.root.parent.name}"
    settings = wandb.Settings(console="off", x_disable_stats=True, x_disable_meta=True, silent=True)

    def start(name: str, job_type: str, **fields: Any) -> Any:
        return wandb.init(
            mode="offline", dir=root, project=project, group=run.run_id, name=name, job_type=job_type,
            settings=settings, reinit="create_new", **fields,
        )  # fmt: skip

    written = []
    for row in typed_frame(run.root).to_dict("records"):
        notes = None if pd.isna(row.get("reason")) else str(row.get("reason"))
        cell = start(_cell_name(row), "cell", config=_identity(row), tags=[str(row.get("status"))], notes=notes)
        cell.summary.update(_metrics(row))
        written.append(cell.dir)
        cell.finish()
    whole = start(
        run.run_id,
        "run",
        config={
            k: str(env[k]) for k in ("cpu", "device", "git_commit", "suite_hash", "env_hash") if env.get(k) is not None
        },
    )
    report = wandb.Artifact(f"vidbench-{run.run_id}", type="report")
    for file in _run_files(run):
        report.add_file(str(file))
    whole.log_artifact(report)
    written.append(whole.dir)
    whole.finish()
    return {"dir": str(root), "project": project, "group": run.run_id,
            "runs": [str(Path(d).parent) for d in written]}  # fmt: skip


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
    for file in _run_files(run):
        client.log_artifact(parent.info.run_id, str(file))
    for row in frame.to_dict("records"):
        tags = {"mlflow.parentRunId": parent.info.run_id}
        tags.update({k: str(row[k])[:5000] for k in TAG_COLUMNS if k in row and not pd.isna(row[k])})
        child = client.create_run(experiment_id, run_name=_cell_name(row), tags=tags)
        for key, value in _identity(row).items():
            client.log_param(child.info.run_id, key, value)
        for key, value in _metrics(row).items():
            client.log_metric(child.info.run_id, key, value)
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent.info.run_id,
            "cells": len(frame)}  # fmt: skip

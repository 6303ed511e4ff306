"""Executors: where a suite's tasks run. The suite's per-job loop (:mod:`vidbench.run.scheduler`) submits each task
with a callback; an executor runs it and calls back with the outcome and any rows that travelled back.

``local`` runs each task here, in a child process, at once (so a job's tasks run in order: training, then
each optimization); ``ray`` (:mod:`vidbench.run.ray_executor`) runs them as Ray tasks on a cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vidbench.results import ResultStore, Row
from vidbench.run.launch import Outcome, StatusFn, launch
from vidbench.run.progress import Progress
from vidbench.rundir import TaskDir
from vidbench.suite.cells import ModelJob

Done = Callable[[Outcome, list[Row]], None]
"""Called once a task ended: its outcome and the rows it settled (read back from its task folder)."""


def run_step(
    task: dict[str, Any], folder: TaskDir, timeout_s: float, status: StatusFn | None = None, cwd: Path | None = None
) -> tuple[Outcome, list[Row]]:
    """Run ``task``'s child process (here: on this machine or a Ray worker) and read back the rows it settled in
    its task folder (a measure task's ``rows_file``), whatever way it ended: the parent's ledger writes them."""
    outcome = launch(task, folder, timeout_s, status, cwd)
    rows_file = task.get("rows_file")
    rows = ResultStore(Path(rows_file)).rows() if rows_file and Path(rows_file).exists() else []
    return outcome, rows


@dataclass(frozen=True)
class TaskStep:
    """One child process to run: its task, its log folder, its time limit, and a label for the progress display."""

    kind: str
    """``train`` or ``measure``."""
    job: ModelJob
    task: dict[str, Any]
    folder: TaskDir
    timeout_s: float
    label: str


class Executor(Protocol):
    """Runs submitted tasks; ``wait`` returns when every task (and any task a callback submitted) has ended."""

    def submit(self, step: TaskStep, done: Done) -> None:
        """Run ``step`` (now or later) and call ``done`` when it ends."""

    def wait(self) -> None:
        """Block until nothing is left to run."""


class LocalExecutor:
    """Each task in a child process on this machine, one at a time, run as soon as it is submitted."""

    def __init__(self, progress: Progress, cwd: Path | None = None) -> None:
        self.progress, self.cwd = progress, cwd

    def submit(self, step: TaskStep, done: Done) -> None:
        self.progress.stage(step.label)
        status = lambda line: self.progress.stage(f"{step.label}: {line}")  # noqa: E731
        done(*run_step(step.task, step.folder, step.timeout_s, status, self.cwd))

    def wait(self) -> None:
        """Nothing is ever pending: every task ran inside :meth:`submit`."""

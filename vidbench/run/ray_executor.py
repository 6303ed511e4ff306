"""The Ray executor (``vidbench run --executor ray``): a suite's tasks as Ray tasks.

Each task is the very child process the local executor runs (the same timeout, kill and error handling,
:func:`vidbench.run.launch.launch`), started by a Ray task on a node with the resources the suite declares
(``resources:`` cpus, gpus, memory). A measure task's rows come back in the Ray task's return value and the
driver writes them as each task finishes, so the store has one writer. The suite's loop runs each job in a
driver thread, which submits the job's measure tasks once its training has ended; the checkpoint, the
reference logits and the job summary are shared through the run directory, which must therefore be on a
filesystem every node sees (so must the data root). Ray is imported only here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ray

from vidbench.cluster import connect
from vidbench.results import Row
from vidbench.run.launch import Ended, Outcome, TaskStep, run_step
from vidbench.run.progress import Progress
from vidbench.rundir import TaskDir
from vidbench.suite.cells import ModelJob
from vidbench.suite.schema import Suite


def run_task(task: dict[str, Any], task_dir: str, timeout_s: float, cwd: str) -> tuple[Outcome, list[Row]]:
    """On a Ray worker: run ``task``'s child process as the local executor does; the rows it settled travel
    back with the outcome to the driver's ledger."""
    return run_step(task, TaskDir(Path(task_dir)), timeout_s, cwd=Path(cwd) if Path(cwd).is_dir() else None)


def task_options(suite: Suite, threads: int, step: TaskStep) -> dict[str, Any]:
    """The Ray resources of one task: the suite's ``resources:``, else ``measure.threads`` CPUs and one GPU per
    process when measuring on CUDA. A task that dies is not retried: it becomes ``failed`` rows."""
    settings = suite.resources
    nproc = step.job.train_settings().nproc if step.kind == "train" else 1
    gpus = settings.gpus if settings.gpus is not None else float(suite.measure.device.startswith("cuda"))
    options: dict[str, Any] = {"num_cpus": settings.cpus or float(threads), "num_gpus": gpus * nproc}
    if settings.memory_gb:
        options["memory"] = int(settings.memory_gb * 2**30)
    return {**options, "max_retries": 0}


def infeasible(options: dict[str, Any]) -> str:
    """Why no live node of the cluster could ever run a task asking for ``options`` ('' when one can)."""
    wanted = {"CPU": options["num_cpus"], "GPU": options["num_gpus"], "memory": options.get("memory", 0)}
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(name, 0) >= amount for name, amount in wanted.items() if amount) for node in nodes):
        return ""
    asked = ", ".join(f"{amount:g} {name}" for name, amount in wanted.items() if amount)
    return f"no Ray node has {asked} (set resources: or measure.threads in the suite)"


class RayExecutor:
    """A step's tasks go to the cluster at once and come back as they end (``ray.wait``); jobs run side by side,
    each in a thread of the driver that waits on its own tasks."""

    def __init__(self, suite: Suite, threads: int, progress: Progress) -> None:
        connect()
        self.suite, self.threads, self.progress = suite, threads, progress
        self.remote = ray.remote(run_task)
        self.cwd = os.getcwd()

    def run(self, steps: Sequence[TaskStep]) -> Iterator[Ended]:
        pending: dict[Any, TaskStep] = {}
        for step in steps:
            options = task_options(self.suite, self.threads, step)
            why = infeasible(options)
            if why:
                yield step, Outcome(False, why), []
                continue
            remote = self.remote.options(**options)
            pending[remote.remote(step.task, str(step.folder.root), step.timeout_s, self.cwd)] = step
        while pending:
            self.progress.stage(f"ray: {len(pending)} task(s) of this step queued or running")
            ready, _ = ray.wait(list(pending), num_returns=1)
            step = pending.pop(ready[0])
            try:
                outcome, rows = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()]
                outcome, rows = Outcome(False, f"ray task failed: {lines[0] if lines else type(exc).__name__}"), []
            yield step, outcome, rows

    def each(self, jobs: Sequence[ModelJob], work: Callable[[ModelJob], None]) -> None:
        """Each job in a daemon thread of the driver; joined in short waits, so a Ctrl-C reaches this thread at
        once (and the driver's exit ends the jobs' threads and, with the driver, their Ray tasks)."""
        errors: list[BaseException] = []

        def guarded(job: ModelJob) -> None:
            try:
                work(job)
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(job,), name=f"job {job.slug}", daemon=True) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
        if errors:
            raise errors[0]

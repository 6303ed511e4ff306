"""The Ray executor (``vidbench run --executor ray``): a suite's tasks as Ray tasks.

Each task is the very child process the local executor runs (``python -m vidbench.worker TASK.json``,
the same timeout, kill and error handling, :func:`vidbench.runner.launch`), started by a Ray task on a
node with the resources the suite declares (``resources:`` cpus, gpus, memory). A measure task's rows
come back in the Ray task's return value and the driver writes them, as each task finishes, so the
store has one writer. A job's train task runs once, and its measure tasks are submitted only when it has
finished; the checkpoint, the eager logits and ``train.json`` are shared through the run directory, which
must therefore be on a filesystem every node sees (so must the data root). Ray is imported only here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from vidbench.cells import ModelJob
from vidbench.results import ResultStore
from vidbench.runner import MeasureStep, Outcome, Progress, SuiteRun, launch

Done = Callable[[Outcome, list[dict[str, Any]]], None]


def connect() -> None:
    """Join the cluster at ``RAY_ADDRESS`` when it is set, else start a local Ray with this machine's cores."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)


def run_task(task: dict[str, Any], task_dir: str, timeout_s: float, cwd: str) -> tuple[Outcome, list[dict[str, Any]]]:
    """On a Ray worker: run ``task``'s child process as the local executor does. A measure task writes its
    rows into its own task folder; they are read back and returned with the outcome."""
    folder = Path(task_dir)
    rows_file = folder / "results.jsonl"
    rows_file.unlink(missing_ok=True)  # rows of an earlier attempt of this task
    if task["kind"] == "measure":
        task = {**task, "results_dir": task_dir}
    outcome = launch(task, folder, timeout_s, cwd=Path(cwd) if Path(cwd).is_dir() else None)
    rows = ResultStore(folder).rows() if rows_file.exists() else []
    return outcome, rows


def task_options(run: SuiteRun, kind: str, job: ModelJob) -> dict[str, Any]:
    """The Ray resources of one task: the suite's ``resources:``, else ``measure.threads`` CPUs and one GPU per
    process when measuring on CUDA. A task that dies is not retried: it becomes ``failed`` rows."""
    settings = run.suite.resources
    nproc = job.train_settings().nproc if kind == "train" else 1
    gpus = settings.gpus if settings.gpus is not None else float(run.suite.measure.device.startswith("cuda"))
    options: dict[str, Any] = {"num_cpus": settings.cpus or float(run.threads), "num_gpus": gpus * nproc}
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


class RayRun:
    """The driver of one suite run on Ray: trains each job once, then measures it; writes rows as tasks end."""

    def __init__(self, run: SuiteRun, skip: set[str], progress: Progress) -> None:
        self.run, self.skip, self.progress = run, skip, progress
        self.remote = ray.remote(run_task)
        self.pending: dict[Any, Done] = {}
        self.cwd = os.getcwd()

    def submit(self, kind: str, job: ModelJob, task: dict[str, Any], task_dir: Path, timeout_s: float, done: Done):
        """Start one task on the cluster; ``done`` gets its outcome and rows when it ends."""
        options = task_options(self.run, kind, job)
        why = infeasible(options)
        if why:
            done(Outcome(False, why), [])
            return
        self.pending[self.remote.options(**options).remote(task, str(task_dir), timeout_s, self.cwd)] = done

    def start(self) -> None:
        """Submit every job's train task (or its measure tasks when it is trained already)."""
        for job in self.run.jobs:
            summary = self.run.trained(job)
            if summary is not None:
                self.measure(job, Outcome(True), summary)
                continue
            task, task_dir, timeout_s = self.run.train_step(job)
            self.submit("train", job, task, task_dir, timeout_s, lambda outcome, _, job=job: self.trained(job, outcome))

    def trained(self, job: ModelJob, outcome: Outcome) -> None:
        """A train task ended: measure the job, or fail its cells with the reason."""
        try:
            outcome, summary = self.run.train_result(job, outcome)
        except OSError as exc:
            shared = "is the run directory on a filesystem every node sees?"
            outcome, summary = (
                Outcome(False, f"training failed: its summary is not readable here ({exc}); {shared}"),
                {},
            )
        self.measure(job, outcome, summary)

    def measure(self, job: ModelJob, outcome: Outcome, summary: dict[str, Any]) -> None:
        """Submit one measure task per optimization of a trained job (failed rows when it did not train)."""
        job_cells = [c for c in self.run.cells if c.job == job]
        for optimization in dict.fromkeys(c.optimization for c in job_cells):
            cells = [c for c in job_cells if c.optimization == optimization]
            if not outcome.ok:
                self.run.fail_untrained(cells, outcome.reason, self.skip)
                self.progress.advance(len(cells))
                continue
            step = self.run.measure_step(job, optimization, cells, summary, self.skip)
            if step is None or step.task is None:
                self.progress.advance(len(cells))
                continue
            timeout_s = self.run.suite.measure.timeout_s
            finish = self._measured(step, len(cells))
            self.submit("measure", job, step.task, step.task_dir, timeout_s, finish)

    def _measured(self, step: MeasureStep, count: int) -> Done:
        def finish(outcome: Outcome, rows: list[dict[str, Any]]) -> None:
            for row in rows:
                self.run.store.append(row)
            self.run.measure_result(step, outcome)
            self.progress.advance(count)

        return finish

    def wait(self) -> None:
        """Collect the tasks as they finish (``ray.wait``), until none is left."""
        while self.pending:
            self.progress.stage(f"ray: {len(self.pending)} task(s) queued or running")
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            done = self.pending.pop(ready[0])
            try:
                outcome, rows = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()]
                outcome, rows = Outcome(False, f"ray task failed: {lines[0] if lines else type(exc).__name__}"), []
            done(outcome, rows)


def run_on_ray(run: SuiteRun, skip: set[str], progress: Progress) -> None:
    """Run the suite's tasks on Ray (connecting first); returns when every cell has its row."""
    connect()
    driver = RayRun(run, skip, progress)
    driver.start()
    driver.wait()

"""Run a suite: train each model job once, measure each optimization in its own child process.

A child that raises, dies on a signal or outlives its timeout becomes ``failed`` rows with the
reason; the suite goes on. Rows are written the moment a cell ends, so a killed run keeps them,
and ``resume`` skips every cell whose key (cell config + environment hash + checkpoint hash) is
already in the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import multiprocessing
import multiprocessing.context
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidbench.cells import Cell, ModelJob, expand
from vidbench.config import Suite
from vidbench.data.loader import read_skip_log
from vidbench.data.scan import DatasetError, save_prepared, write_skipped
from vidbench.distributed import torchrun_command
from vidbench.measure.env import collect_env, env_hash, git_commit
from vidbench.measure.peak import matmul_peak_gmacs
from vidbench.plugins import Registry
from vidbench.results import KEY_COLUMN, ResultStore, cell_key
from vidbench.worker import job_dir, job_to_dict

StatusFn = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How a child process ended: ``ok``, or the one-line reason it did not."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class MeasureStep:
    """One job x optimization to measure: the row of each batch size still to do, the child's task (None
    when nothing has to run: the rows are already written as unsupported) and the store's length before."""

    rows: dict[str, dict[str, Any]]
    task: dict[str, Any] | None
    task_dir: Path
    rows_before: int


def _die_with_parent() -> None:
    """In the child: its own session (so a timeout kills its whole group) and death if the parent dies."""
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 2048))
            lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""
    except OSError:
        return ""


def task_processes(task: dict[str, Any]) -> int:
    """How many processes a task runs as: ``train.nproc`` for a train task (under ``torchrun``), else 1."""
    return int(dict(task["job"]["train"]).get("nproc", 1)) if task["kind"] == "train" else 1


def launch(
    task: dict[str, Any], task_dir: Path, timeout_s: float, status: StatusFn | None = None, cwd: Path | None = None
) -> Outcome:
    """Run ``vidbench.worker`` on ``task`` in a child process; wait at most ``timeout_s`` seconds.

    The child is forked from a pre-imported fork server (a multi-process training runs under ``torchrun``
    instead): a fresh process per task, without paying the imports each time."""
    task_dir.mkdir(parents=True, exist_ok=True)
    task_file, log_file, error_file = task_dir / "task.json", task_dir / "log.txt", task_dir / "error.txt"
    error_file.unlink(missing_ok=True)
    task_file.write_text(json.dumps(task, indent=2, default=str))
    nproc = task_processes(task)
    child: _ForkedChild | _Subprocess = (
        _Subprocess(torchrun_command([str(task_file)], nproc), log_file, cwd)
        if nproc > 1
        else _ForkedChild(task_file, log_file, cwd)
    )
    deadline = time.monotonic() + timeout_s
    while (code := child.poll()) is None:
        if time.monotonic() > deadline:
            child.kill()
            return Outcome(False, f"timeout after {timeout_s:g} s")
        if status is not None:
            status(_last_line(log_file))
        time.sleep(0.2)
    if code == 0:
        return Outcome(True)
    if code < 0:
        return Outcome(False, f"killed by signal {signal.Signals(-code).name} (see {log_file})")
    reason = error_file.read_text().strip() if error_file.exists() else _last_line(log_file)
    return Outcome(False, reason or f"exit code {code}")


class _Subprocess:
    """A child started with ``subprocess`` (``torchrun``), in its own session, output to the log."""

    def __init__(self, command: list[str], log_file: Path, cwd: Path | None) -> None:
        with open(log_file, "w") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class _ForkedChild:
    """A child forked from the run's fork server (see :mod:`vidbench.worker_preload`)."""

    def __init__(self, task_file: Path, log_file: Path, cwd: Path | None) -> None:
        where = str(cwd or Path.cwd())
        self.proc = _fork_server().Process(
            target=_forked_worker, args=(str(task_file), str(log_file), where, dict(os.environ)), daemon=False
        )
        with _main_module_hidden():
            self.proc.start()

    def poll(self) -> int | None:
        return self.proc.exitcode

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the child's session: its loader workers too
        except ProcessLookupError:
            self.proc.kill()  # killed before it made its own session
        self.proc.join()


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While a child is started: multiprocessing would re-import the launcher's ``__main__`` in the child (a
    Ray worker's, pytest's, a user's script without a main guard); the worker needs none of it."""
    main = sys.modules["__main__"]
    saved = {name: getattr(main, name) for name in ("__spec__", "__file__") if hasattr(main, name)}
    main.__spec__ = None
    if "__file__" in saved:
        del main.__file__
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


@functools.cache
def _fork_server() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["vidbench.worker_preload"])
    return context


def _forked_worker(task_file: str, log_file: str, cwd: str, environ: dict[str, str]) -> None:
    """In the forked child: the launcher's environment and directory, output to the log, then the worker."""
    _die_with_parent()
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    multiprocessing.set_start_method("fork", force=True)  # the server's own method would reach DataLoader workers
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115  (lives as long as the process)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    from vidbench import worker

    sys.exit(worker.main([task_file]))  # multiprocessing flushes, runs its finalizers and exits with the code


def latest_run_dir(suite_dir: Path) -> Path | None:
    """The newest run directory of a suite, by name (run ids sort by time)."""
    runs = sorted(p for p in suite_dir.glob("*") if (p / "env.json").exists())
    return runs[-1] if runs else None


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


class SuiteRun:
    """One execution of a suite into one run directory."""

    def __init__(self, suite: Suite, registry: Registry, suite_path: Path, run_dir: Path, run_id: str) -> None:
        self.suite = suite
        self.registry = registry
        self.suite_path = suite_path
        self.run_dir = run_dir
        self.run_id = run_id
        self.store = ResultStore(run_dir)
        self.threads = suite.measure.threads or os.cpu_count() or 1
        self.env = collect_env(self.threads, suite.measure.device)
        self.peak_gmacs: float | None = None
        self.env_hash = env_hash(self.env)
        self.jobs, self.cells = expand(suite, registry, suite_path.parent)
        self.plugin_files = [str((suite_path.parent / p).resolve()) for p in suite.plugins]

    def write_env(self) -> None:
        if self.peak_gmacs is None:
            self.peak_gmacs = matmul_peak_gmacs(self.threads, device=self.suite.measure.device)
        env = {
            "fp32_matmul_gmacs_per_s": self.peak_gmacs,
            **self.env,
            "env_hash": self.env_hash,
            "git_commit": git_commit(Path(__file__).parent),
            "suite": self.suite.name,
            "suite_hash": self.suite.digest(),
            "suite_file": str(self.suite_path),
            "run_id": self.run_id,
            "started_utc": datetime.now(UTC).isoformat(),
        }
        self.store.write_json("env.json", env)
        self.store.write_json("suite.json", self.suite.model_dump(mode="json"))

    def task(self, kind: str, job: ModelJob, **extra: Any) -> dict[str, Any]:
        """The JSON task a child process (or an in-process command) runs."""
        return {
            "dataset_file": str(self.dataset_file(job.dataset, dict(job.dataset_options))),
            "kind": kind,
            "suite": self.suite.model_dump(mode="json"),
            "plugins": self.plugin_files,
            "run_dir": str(self.run_dir),
            "job": job_to_dict(job),
            "threads": self.threads,
            **extra,
        }

    def _row_base(self, cell: Cell, key: str, train_s: float | None) -> dict[str, Any]:
        job = cell.job
        return {
            "suite": self.suite.name,
            "run_id": self.run_id,
            "dataset": job.dataset,
            "model": job.model,
            "preset": job.preset,
            "optimization": cell.optimization,
            "device": self.suite.measure.device,
            "threads": self.threads,
            "frames": job.frames,
            "crop": job.crop,
            "batch_size": cell.batch_size,
            "train_s": train_s,
            KEY_COLUMN: key,
        }

    def _key(self, cell: Cell, checkpoint_sha: str) -> str:
        return cell_key(cell.identity(self.suite.measure.model_dump()), self.env_hash, checkpoint_sha)

    def train(self, job: ModelJob, status: StatusFn) -> tuple[Outcome, dict[str, Any]]:
        """Train ``job`` in a child unless its checkpoint and eager evaluation are already on disk."""
        summary = self.trained(job)
        if summary is not None:
            return Outcome(True), summary
        return self.train_result(job, launch(*self.train_step(job), status))

    def trained(self, job: ModelJob) -> dict[str, Any] | None:
        """The summary of a job already trained and evaluated in this run (``train.json``), else None."""
        summary_file = job_dir(self.run_dir, job) / "train.json"
        return json.loads(summary_file.read_text()) if summary_file.exists() else None

    def train_step(self, job: ModelJob) -> tuple[dict[str, Any], Path, float]:
        """The train task of ``job``, its task folder and its timeout."""
        return self.task("train", job), self.run_dir / "logs" / job.slug / "train", job.train_settings().timeout_s

    def train_result(self, job: ModelJob, outcome: Outcome) -> tuple[Outcome, dict[str, Any]]:
        """How the train task ended, with the job's summary when it trained."""
        if not outcome.ok:
            return Outcome(False, f"training failed: {outcome.reason}"), {}
        return outcome, json.loads((job_dir(self.run_dir, job) / "train.json").read_text())

    def measure(
        self,
        job: ModelJob,
        optimization: str,
        cells: list[Cell],
        summary: dict[str, Any],
        skip: set[str],
        status: StatusFn,
    ) -> int:
        """Measure one optimization of a trained job; returns how many rows were written."""
        step = self.measure_step(job, optimization, cells, summary, skip)
        if step is None:
            return 0
        if step.task is not None:
            self.measure_result(step, launch(step.task, step.task_dir, self.suite.measure.timeout_s, status))
        return len(step.rows)

    def measure_step(
        self, job: ModelJob, optimization: str, cells: list[Cell], summary: dict[str, Any], skip: set[str]
    ) -> MeasureStep | None:
        """What measuring one optimization of a trained job takes; None when every cell is stored already.
        An optimization unsupported on the device gets its rows here and no task."""
        keyed = {c.batch_size: (c, self._key(c, summary["checkpoint_sha"])) for c in cells}
        todo = {bs: ck for bs, ck in keyed.items() if ck[1] not in skip}
        if not todo:
            return None
        rows = {str(bs): self._row_base(c, key, summary.get("train_s")) for bs, (c, key) in todo.items()}
        task_dir = self.run_dir / "logs" / job.slug / optimization
        supported, why = self.registry.optimization(optimization).supported(self.suite.measure.device)
        if not supported:
            for row in rows.values():
                self.store.append({**row, "status": "unsupported", "reason": why})
            return MeasureStep(rows, None, task_dir, 0)
        task = self.task(
            "measure", job, optimization=optimization, batch_sizes=sorted(todo), rows=rows, peak_gmacs=self.peak_gmacs
        )
        return MeasureStep(rows, task, task_dir, len(self.store.rows()))

    def measure_result(self, step: MeasureStep, outcome: Outcome) -> None:
        """A ``failed`` row for every cell of ``step`` that was not written since it started."""
        written = {row.get(KEY_COLUMN) for row in self.store.rows()[step.rows_before :]}
        for row in step.rows.values():
            if row[KEY_COLUMN] not in written:
                reason = outcome.reason if not outcome.ok else "child exited without writing this row"
                self.store.append({**row, "status": "failed", "reason": reason})

    def execute(self, resume: bool, retry_failed: bool, progress: Progress, executor: str = "local") -> None:
        """Train and measure every cell not in the store (with ``resume``); ``executor`` ``local`` runs the
        tasks one after another in child processes here, ``ray`` as Ray tasks (vidbench/ray_executor.py)."""
        self.write_env()
        skip = self.store.keys(("ok", "unsupported") if retry_failed else ("ok", "unsupported", "failed"))
        if not resume:
            skip = set()
        progress.start(len(self.cells))
        self.prepare_datasets(progress)
        if executor == "ray":
            from vidbench.ray_executor import run_on_ray

            run_on_ray(self, skip, progress)
            progress.stop()
            return
        for job in self.jobs:
            job_cells = [c for c in self.cells if c.job == job]
            label = f"{job.model}/{job.preset}"
            progress.stage(f"training {label}")
            outcome, summary = self.train(job, lambda line, label=label: progress.stage(f"training {label}: {line}"))
            for optimization in dict.fromkeys(c.optimization for c in job_cells):
                cells = [c for c in job_cells if c.optimization == optimization]
                if not outcome.ok:
                    self.fail_untrained(cells, outcome.reason, skip)
                    progress.advance(len(cells))
                    continue
                progress.stage(f"measuring {label} {optimization}")
                self.measure(
                    job,
                    optimization,
                    cells,
                    summary,
                    skip,
                    lambda line, o=optimization, lb=label: progress.stage(f"measuring {lb} {o}: {line}"),
                )
                progress.advance(len(cells))
        progress.stop()

    def prepare_datasets(self, progress: Progress) -> None:
        """Prepare each dataset once (raises DatasetError before any training), save its index for the
        children, and start ``skipped.csv`` with the files left out at preparation."""
        skipped: list[tuple[str, str]] = []
        for ds in self.suite.datasets:
            progress.stage(f"preparing dataset {ds.name}")
            spec = self.registry.dataset(ds.name)
            options = spec.options.model_validate(ds.options)
            prepared = spec.prepare(Path(self.suite.data_root).resolve() / ds.name, options)
            for split, samples in prepared.splits.items():
                if not samples:
                    raise DatasetError(f"dataset {ds.name}: split {split!r} has no readable videos")
            save_prepared(prepared, self.dataset_file(ds.name, ds.options))
            skipped += prepared.skipped
        existing = read_skip_log(self.run_dir / "skipped.csv")
        write_skipped(self.run_dir / "skipped.csv", sorted(set(existing) | set(skipped)))

    def dataset_file(self, name: str, options: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return self.run_dir / "datasets" / f"{name}-{digest}.json"

    def fail_untrained(self, cells: list[Cell], reason: str, skip: set[str]) -> None:
        """A ``failed`` row, with the training's reason, for each cell of a job that did not train."""
        for cell in cells:
            key = self._key(cell, "untrained")
            if key not in skip:
                self.store.append({**self._row_base(cell, key, None), "status": "failed", "reason": reason})


class Progress:
    """A rich progress display (cells done / total, current stage, elapsed), or plain lines when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        if self.quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._progress = RichProgress(
            TextColumn("[bold]cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("starting", total=total)

    def stage(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text[:90])

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description="done")
            self._progress.stop()


def run_suite(
    suite: Suite,
    registry: Registry,
    suite_path: Path,
    resume: bool = False,
    retry_failed: bool = False,
    quiet: bool = False,
    run_id: str | None = None,
    executor: str = "local",
) -> Path:
    """Execute a validated suite (``executor``: ``local`` or ``ray``); returns its run directory."""
    suite_dir = Path(suite.output_dir) / suite.name
    run_dir = None
    if run_id:
        run_dir = suite_dir / run_id
    elif resume:
        run_dir = latest_run_dir(suite_dir)
    if run_dir is None:
        run_dir = suite_dir / new_run_id()
    run = SuiteRun(suite, registry, suite_path, run_dir.resolve(), run_dir.name)
    run.execute(resume, retry_failed, Progress(quiet), executor)
    return run.run_dir

"""Run a suite: train each model job once, measure each optimization in its own child process.

A child that raises, dies on a signal or outlives its timeout becomes ``failed`` rows with the
reason; the suite goes on. Rows are written the moment their task ends, so a killed run keeps them,
and ``resume`` skips every cell whose key (cell config + environment hash + checkpoint hash) is
already in the store. Where the tasks run is the executor's business (:mod:`vidbench.run.launch`).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vidbench.data.decode import resolve_backend
from vidbench.data.loader import read_skip_log
from vidbench.data.scan import DatasetError, save_prepared, write_skipped
from vidbench.job.card import add_latency
from vidbench.job.cascade import Lever, levers
from vidbench.job.context import job_record
from vidbench.measure.env import collect_env, env_hash, git_commit
from vidbench.measure.latency import RoundPlan
from vidbench.measure.peak import Peak, matmul_peaks
from vidbench.plugins import Registry
from vidbench.results import KEY_COLUMN, Ledger, Row, keys_of
from vidbench.run.interleave import ProfilePlan, Untimed, time_job
from vidbench.run.launch import Executor, LocalExecutor, Outcome, TaskStep, wait_for_fork_server
from vidbench.run.progress import Progress, Silent
from vidbench.rundir import RunDir, read_json, write_json_atomic
from vidbench.suite.cells import Cell, ModelJob, expand, select, trained_weights
from vidbench.suite.schema import Suite


@dataclass(frozen=True)
class MeasureStep:
    """One job x optimization to measure: the row of each batch size still to do, and the child's task (None
    when nothing has to run: the rows are already written as unsupported)."""

    rows: dict[str, Row]
    task: TaskStep | None


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


class SuiteRun:
    """One execution of a suite into one run directory."""

    def __init__(
        self, suite: Suite, registry: Registry, suite_path: Path, run: RunDir, only: dict[str, set[str]] | None = None
    ) -> None:
        self.suite = suite
        self.registry = registry
        self.suite_path = suite_path
        self.rundir = run
        self.ledger = Ledger(run.store())
        self.threads = max(suite.measure.thread_counts(os.cpu_count() or 1))  # training, and every unswept cell
        self.env = collect_env(self.threads, suite.measure.device, resolve_backend(suite.data.backend))
        self.env["decode"] = {"policies": suite.data.decode_policy, "threads": suite.data.decode_threads}
        self.peaks: dict[str, Peak] | None = None
        """This machine's matmul peak per precision, measured once per run (the rows' roofline ceilings)."""
        self.env_hash = env_hash(self.env)
        self.jobs, self.cells = select(*expand(suite, registry, suite_path.parent), only)
        self.timing = threading.Lock()
        """Held by a job's timing step: timed rounds never share this machine with another job's."""
        self.plugin_files = [str((suite_path.parent / p).resolve()) for p in suite.plugins]

    def write_env(self) -> None:
        if self.peaks is None:
            wait_for_fork_server()  # the peaks are timed on a CPU that nothing else imports on
            self.peaks = matmul_peaks(self.threads, device=self.suite.measure.device)
        fp32 = self.peaks.get("fp32")
        env = {
            "fp32_matmul_gmacs_per_s": fp32.gmacs_per_s if fp32 else None,
            "matmul_peaks": {name: asdict(peak) for name, peak in self.peaks.items()},
            **self.env,
            "env_hash": self.env_hash,
            "git_commit": git_commit(Path(__file__).parent),
            "suite": self.suite.name,
            "suite_hash": self.suite.digest(),
            "suite_file": str(self.suite_path),
            "run_id": self.rundir.run_id,
            "started_utc": datetime.now(UTC).isoformat(),
        }
        write_json_atomic(self.rundir.env, env)
        write_json_atomic(self.rundir.suite, self.suite.model_dump(mode="json"))

    def task(self, kind: str, job: ModelJob, **extra: Any) -> dict[str, Any]:
        """The JSON task a child process (or an in-process command) runs."""
        return {
            "kind": kind,
            "suite": self.suite.model_dump(mode="json"),
            "plugins": self.plugin_files,
            "run_dir": str(self.rundir.root),
            "job": job.to_dict(),
            "threads": self.threads,
            **extra,
        }

    def write_job_file(self, job: ModelJob) -> None:
        """``job.json``: what rebuilds the job later (serve, embed) without its log folder."""
        write_json_atomic(self.rundir.job(job.slug).job_file, job_record(self.task("train", job)))

    def _key(self, cell: Cell, checkpoint_sha: str) -> str:
        measure = self.suite.measure.model_dump()
        if measure.get("views") is None:
            measure.pop("views", None)  # single view, as before views existed: earlier keys hold
        return cell.key(measure, self.env_hash, checkpoint_sha)

    def _row(self, cell: Cell, key: str, summary: dict[str, Any] | None) -> Row:
        return cell.row(self.suite, self.rundir.run_id, self.threads, key, summary or {})

    def train_step(self, job: ModelJob) -> TaskStep:
        """The train task of ``job`` (with its teacher's folder and weights' hash when it learns from one)."""
        label = f"training {job.model}/{job.variant}"
        folder = self.rundir.task(job.slug, "train")
        extra: dict[str, Any] = {}
        if job.teacher is not None:
            teacher = self.trained(job.teacher) or {}
            extra["teacher"] = {"slug": job.teacher, "checkpoint_sha": teacher.get("checkpoint_sha")}
        task = self.task("train", job, **extra)
        return TaskStep("train", job, task, folder, job.train_settings().timeout_s, label)

    def trained(self, slug: str) -> dict[str, Any] | None:
        """The summary of the job in folder ``slug``, when trained and evaluated in this run, else None."""
        return self.rundir.job(slug).read_summary()

    def train_result(self, job: ModelJob, outcome: Outcome) -> tuple[Outcome, dict[str, Any]]:
        """How the train task ended, with the job's summary when it trained."""
        if not outcome.ok:
            return Outcome(False, f"training failed: {outcome.reason}"), {}
        summary = self.trained(job.slug)
        if summary is None:
            where = self.rundir.job(job.slug).summary
            reason = f"training failed: its summary {where} is not readable here (on a cluster: is the run "
            return Outcome(False, reason + "directory on a filesystem every node sees?)"), {}
        return outcome, summary

    def measure_step(
        self, job: ModelJob, optimization: str, cells: list[Cell], summary: dict[str, Any], skip: set[str]
    ) -> MeasureStep | None:
        """What measuring one optimization of a trained job takes; None when every cell is stored already.
        An optimization unsupported on the device gets its rows here and no task."""
        keyed = {c.batch_size: (c, self._key(c, trained_weights(summary))) for c in cells}
        todo = {bs: ck for bs, ck in keyed.items() if ck[1] not in skip}
        if not todo:
            return None
        rows = {str(bs): self._row(c, key, summary) for bs, (c, key) in todo.items()}
        supported, why = self.registry.optimization(optimization).supported(self.suite.measure.device)
        if not supported:
            for row in rows.values():
                self.ledger.unsupported(row, why)
            return MeasureStep(rows, None)
        threads, decode, task_name = cells[0].threads, cells[0].decode, cells[0].task_name
        task = self.task(
            "measure", job, optimization=optimization, batch_sizes=sorted(todo), rows=rows, task_name=task_name,
            **({} if threads is None else {"threads": threads}), **({} if decode is None else {"decode": decode}),
        )  # fmt: skip
        label = f"measuring {job.model}/{job.variant} {optimization}" + (f" ({threads} threads)" if threads else "")
        label += f" (decode {decode})" if decode else ""
        folder = self.rundir.task(job.slug, task_name)
        folder.untimed.unlink(missing_ok=True)  # an earlier attempt's rows that never got timed
        folder.rows.unlink(missing_ok=True)  # and the rows it settled
        task["rows_file"] = str(folder.rows)  # the child's rows come back to the ledger from there
        step = TaskStep("measure", job, task, folder, self.suite.measure.timeout_s, label)
        return MeasureStep(rows, step)

    def measure_result(self, step: MeasureStep, outcome: Outcome, settled: list[Row]) -> Untimed | None:
        """Write the rows the child settled (``settled``), and a ``failed`` row for every cell of ``step`` that it
        neither settled (matched by cell key, not by position: a torn line must not shift which rows count) nor
        left to be timed; returns what waits for the job's timing."""
        self.ledger.write_all(settled)
        untimed = Untimed.read(step.task.folder, step.task.task) if step.task is not None else None
        done = keys_of(settled) | (keys_of(untimed.rows.values()) if untimed else set())
        for row in step.rows.values():
            if row[KEY_COLUMN] not in done:
                reason = outcome.reason if not outcome.ok else "child exited without writing this row"
                self.ledger.failed(row, reason)
        return untimed

    def time_job(self, job: ModelJob, untimed: list[Untimed], progress: Progress) -> None:
        """Time the job's artifacts that passed their gates, in interleaved rounds, and write their rows (one
        job's timing at a time on this machine, even when jobs run side by side on a cluster)."""
        if not untimed:
            return
        measure = self.suite.measure
        plan = RoundPlan.spread(
            measure.rounds, measure.warmup, measure.min_iters, measure.min_seconds, measure.max_seconds
        )
        label = f"timing {job.model}/{job.variant}: {len(untimed)} artifact(s) in {plan.rounds} interleaved rounds"
        with self.timing:
            progress.stage(label)
            peaks = {name: peak.gmacs_per_s for name, peak in (self.peaks or {}).items()}
            profile = ProfilePlan(measure.profile, measure.profile_seconds)
            rows = time_job(untimed, self.suite.baseline, plan, measure.timeout_s, peaks, profile)
        self.ledger.write_all(rows)
        for item in untimed:
            item.folder.untimed.unlink(missing_ok=True)
            keys = {row[KEY_COLUMN] for row in item.rows.values()}
            card = self.rundir.artifact_card(job.slug, item.task["task_name"])
            add_latency(*card, [r for r in rows if r[KEY_COLUMN] in keys])

    def execute(self, resume: bool, retry_failed: bool, progress: Progress, executor: Executor | None = None) -> None:
        """Train and measure every cell not in the store (with ``resume``), each task on ``executor`` (default:
        child processes here, one after another)."""
        self.write_env()
        torn = self.ledger.unreadable_lines()
        if torn:
            print(
                f"warning: {self.ledger.store.jsonl}: lines {torn} are not rows (a torn write); skipped",
                file=sys.stderr,
            )
        skip = self.ledger.keys(("ok", "unsupported") if retry_failed else ("ok", "unsupported", "failed"))
        if not resume:
            skip = set()
        progress.start(len(self.cells))
        self.prepare_datasets(progress)
        executor = executor or LocalExecutor(progress)
        roots = [job for job in self.jobs if job.teacher is None]
        executor.each(roots, lambda job: self.run_job(job, executor, skip, progress))
        self.run_cascades(executor, resume, progress)
        progress.stop()

    def _named_job(self, name: str, dataset: str) -> ModelJob | None:
        """The run's job that ``model/preset`` (its variant: ``tiny@8x32``, ``tiny+distill``) names on a dataset;
        of several seeds, the first."""
        return next((j for j in self.jobs if f"{j.model}/{j.variant}" == name and j.dataset == dataset), None)

    def run_cascades(self, executor: Executor, resume: bool, progress: Progress) -> None:
        """Each cascade and early exit of the suite (:func:`~vidbench.job.cascade.levers`) on each dataset: a
        ``cascade`` task, its record in ``cascades/``; one that cannot run (a job missing or untrained, a child
        that failed) gets a record with ``status: failed`` and the reason. With ``resume`` an ``ok`` record of
        the same weights is kept."""
        for lever in levers(self.suite):
            for dataset in self.suite.datasets:
                step = self._lever_step(lever, dataset.name, resume)
                if step is None:
                    continue
                progress.stage(step.label)
                for _, outcome, _ in executor.run([step]):
                    if not outcome.ok:
                        self._lever_failed(lever, dataset.name, outcome.reason)

    def _lever_failed(self, lever: Lever, dataset: str, reason: str) -> None:
        record = {**lever.identity(dataset), "status": "failed", "reason": reason}
        write_json_atomic(self.rundir.cascade(lever.name(dataset)), record)

    def _lever_step(self, lever: Lever, dataset: str, resume: bool) -> TaskStep | None:
        """The lever's task on ``dataset``; None when it cannot run (its failed record written) or, resumed, ran
        already on the same weights."""
        fast, slow = self._named_job(lever.fast, dataset), self._named_job(lever.slow, dataset)
        missing = [n for n, j in ((lever.fast, fast), (lever.slow, slow)) if not j or not self.trained(j.slug)]
        if missing or fast is None or slow is None:
            self._lever_failed(lever, dataset, f"no trained job {' or '.join(sorted(set(missing)))} on {dataset}")
            return None
        record = self.rundir.cascade(lever.name(dataset))
        checkpoints = {j.slug: (self.trained(j.slug) or {}).get("checkpoint_sha") for j in (fast, slow)}
        earlier = read_json(record) if resume else None
        if earlier and earlier.get("status") == "ok" and earlier.get("checkpoints") == checkpoints:
            return None
        task_name = f"{lever.kind}-{fast.model}-{fast.variant}"
        extra = {"lever": lever.as_dict(), "fast_job": fast.to_dict(), "task_name": task_name}
        task = self.task("cascade", slow, **extra, record_file=str(record), checkpoints=checkpoints)
        folder = self.rundir.task(slow.slug, task_name)
        return TaskStep("cascade", slow, task, folder, self.suite.measure.timeout_s, lever.label(dataset))

    def run_job(self, job: ModelJob, executor: Executor, skip: set[str], progress: Progress) -> None:
        """A job from start to end: train it (unless this run trained it already), measure each optimization,
        time the artifacts that passed their gates; then the jobs that learn from it."""
        self.write_job_file(job)
        outcome, summary = self.train(job, executor)
        untimed = self.measure_job(job, outcome, summary, executor, skip, progress)
        self.time_job(job, untimed, progress)
        if outcome.ok:
            executor.each(self.students_of(job), lambda student: self.run_job(student, executor, skip, progress))
        else:
            self.fail_students(job, outcome.reason, skip, progress)

    def train(self, job: ModelJob, executor: Executor) -> tuple[Outcome, dict[str, Any]]:
        """How ``job``'s training ended, with its summary when it trained (at once when this run trained it)."""
        if self.trained(job.slug) is not None:
            return self.train_result(job, Outcome(True))
        [(_, outcome, _)] = list(executor.run([self.train_step(job)]))
        return self.train_result(job, outcome)

    def measure_job(
        self, job: ModelJob, outcome: Outcome, summary: dict[str, Any], executor: Executor, skip: set[str],
        progress: Progress,
    ) -> list[Untimed]:  # fmt: skip
        """One measure task per optimization of a trained job (``failed`` rows when it did not train); returns
        the artifacts that passed their gates, for the job's timing."""
        job_cells = [c for c in self.cells if c.job == job]
        if not outcome.ok:
            self.fail_cells(job_cells, outcome.reason, skip, progress)
            return []
        steps: dict[Path, tuple[MeasureStep, int]] = {}
        for task_name in dict.fromkeys(c.task_name for c in job_cells):
            cells = [c for c in job_cells if c.task_name == task_name]
            step = self.measure_step(job, cells[0].optimization, cells, summary, skip)
            if step is None or step.task is None:
                progress.advance(len(cells))
                continue
            steps[step.task.folder.root] = (step, len(cells))
        untimed: list[Untimed] = []
        for task, ended, settled in executor.run([step.task for step, _ in steps.values() if step.task]):
            step, cells_n = steps[task.folder.root]
            progress.advance(cells_n)
            item = self.measure_result(step, ended, settled)
            if item is not None:
                untimed.append(item)
        return untimed

    def fail_job(self, job: ModelJob, reason: str, skip: set[str], progress: Progress) -> None:
        """A job that cannot train (its teacher did not): a ``failed`` row with ``reason`` for each of its cells,
        and so for the jobs that learn from it."""
        self.write_job_file(job)
        self.fail_cells([c for c in self.cells if c.job == job], reason, skip, progress)
        self.fail_students(job, reason, skip, progress)

    def fail_students(self, teacher: ModelJob, reason: str, skip: set[str], progress: Progress) -> None:
        """Fail every job that learns from ``teacher``, which did not train for ``reason``."""
        for student in self.students_of(teacher):
            why = f"teacher {teacher.model}/{teacher.variant} did not train: {reason}"
            self.fail_job(student, why, skip, progress)

    def students_of(self, job: ModelJob) -> list[ModelJob]:
        """The jobs that learn from ``job``."""
        return [other for other in self.jobs if other.teacher == job.slug]

    def prepare_datasets(self, progress: Progress) -> None:
        """Prepare each dataset once (raises DatasetError before any training), save its index for the
        children, and start the run's list of skipped files with the files left out at preparation."""
        skipped: list[tuple[str, str]] = []
        for ds in self.suite.datasets:
            progress.stage(f"preparing dataset {ds.name}")
            spec = self.registry.dataset(ds.name)
            options = spec.options.model_validate(ds.options)
            prepared = spec.prepare(Path(self.suite.data_root).resolve() / ds.name, options)
            for split, samples in prepared.splits.items():
                if not samples:
                    raise DatasetError(f"dataset {ds.name}: split {split!r} has no readable videos")
            save_prepared(prepared, self.rundir.dataset_index(ds.name, ds.options))
            skipped += prepared.skipped
        existing = read_skip_log(self.rundir.skipped)
        write_skipped(self.rundir.skipped, sorted(set(existing) | set(skipped)))

    def fail_cells(self, cells: list[Cell], reason: str, skip: set[str], progress: Progress) -> None:
        """A ``failed`` row, with the training's reason, for each cell of a job that did not train."""
        for cell in cells:
            key = self._key(cell, "untrained")
            if key not in skip:
                self.ledger.failed(self._row(cell, key, None), reason)
        progress.advance(len(cells))


def run_suite(
    suite: Suite,
    registry: Registry,
    suite_path: Path,
    resume: bool = False,
    retry_failed: bool = False,
    progress: Progress | None = None,
    run_id: str | None = None,
    executor: str = "local",
    only: dict[str, set[str]] | None = None,
) -> Path:
    """Execute a validated suite (``executor``: ``local`` or ``ray``; ``only``: the cells to run, as
    :func:`~vidbench.suite.cells.select` takes them); returns its run directory."""
    run = None
    if run_id:
        run = RunDir.for_suite(suite.output_dir, suite.name, run_id)
    elif resume:
        run = RunDir.latest(suite.output_dir, suite.name)
    if run is None:
        run = RunDir.new(suite.output_dir, suite.name, new_run_id())
    run = RunDir(run.root.resolve())
    with run.writer():  # one writer per run directory: a second run or resume into it stops here
        progress = progress or Silent()
        suite_run = SuiteRun(suite, registry, suite_path, run, only)
        chosen: Executor | None = None
        if executor == "ray":
            from vidbench.run.ray_executor import RayExecutor

            chosen = RayExecutor(suite, suite_run.threads, progress)
        suite_run.execute(resume, retry_failed, progress, chosen)
    return suite_run.rundir.root

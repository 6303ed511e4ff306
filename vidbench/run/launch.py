"""Launching: one task in one fresh child process, with a timeout, a kill of its whole group, and a reason;
the executors that run a suite's steps that way (``local``: here, one task after another; ``ray``:
:mod:`vidbench.run.ray_executor`); and the warm timing processes of a job's timing step.

A child is forked from a pre-imported fork server (:mod:`vidbench.run.preload`): a fresh process per task
without paying the imports each time. A multi-process training runs under ``torchrun`` as a plain
subprocess instead. Each child has its own session (a timeout kills its DataLoader workers too) and
``PR_SET_PDEATHSIG`` (it dies with its parent). Its output goes to the task's ``log.txt``; an exception's
last line to ``error.txt``, which becomes the reason of its rows.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.forkserver
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vidbench.results import ResultStore, Row
from vidbench.run.lifeline import lifeline_env, mark_launcher
from vidbench.run.progress import Progress
from vidbench.rundir import TaskDir
from vidbench.suite.cells import ModelJob

StatusFn = Callable[[str], None]
WORKER_MODULE = "vidbench.run.worker"


@dataclass(frozen=True)
class Outcome:
    """How a child process ended: ``ok``, or the one-line reason it did not."""

    ok: bool
    reason: str = ""


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


def write_task(task: dict[str, Any], folder: TaskDir) -> Path:
    """Write ``task.json`` into the task's folder (and forget an earlier attempt's error); returns its path."""
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.error.unlink(missing_ok=True)
    folder.task_file.write_text(json.dumps(task, indent=2, default=str))
    return folder.task_file


def failure_reason(folder: TaskDir, code: int) -> str:
    """Why a child that exited with ``code`` failed: its exception line, else its last log line."""
    reason = folder.error.read_text().strip() if folder.error.exists() else _last_line(folder.log)
    return reason or f"exit code {code}"


def launch(
    task: dict[str, Any], folder: TaskDir, timeout_s: float, status: StatusFn | None = None, cwd: Path | None = None
) -> Outcome:
    """Run the worker on ``task`` in a child process; wait at most ``timeout_s`` seconds."""
    task_file = write_task(task, folder)
    log_file = folder.log
    nproc = task_processes(task)
    child: _ForkedChild | _Subprocess = (
        _Subprocess(torchrun_command([str(task_file)], nproc), log_file, cwd)
        if nproc > 1
        else _ForkedChild(task_file, log_file, cwd)
    )
    deadline = time.monotonic() + timeout_s
    try:
        while (code := child.poll()) is None:
            if time.monotonic() > deadline:
                child.kill()
                return Outcome(False, f"timeout after {timeout_s:g} s")
            if status is not None:
                status(_last_line(log_file))
            time.sleep(0.2)
    except BaseException:  # Ctrl-C, SIGTERM turned into an exception: the child must not outlive the wait
        child.kill()
        raise
    if code == 0:
        return Outcome(True)
    if code < 0:
        return Outcome(False, f"killed by signal {signal.Signals(-code).name} (see {log_file})")
    return Outcome(False, failure_reason(folder, code))


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
                env=lifeline_env(),
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


class _ForkedChild:
    """A child forked from the run's fork server (see :mod:`vidbench.run.preload`); a timer's gets its pipe."""

    def __init__(self, task_file: Path, log_file: Path, cwd: Path | None, channel: Any = None) -> None:
        where = str(cwd or Path.cwd())
        self.proc = _fork_server().Process(
            target=_forked_worker, args=(str(task_file), str(log_file), where, lifeline_env(), channel), daemon=False
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


_started_early: list[bool] = []


def start_fork_server() -> None:
    """Start the run's fork server now, in the background: its imports (seconds of torch and the plugins)
    overlap the caller's own instead of following them at the first launch."""
    _fork_server()
    multiprocessing.forkserver.ensure_running()
    _started_early.append(True)


def wait_for_fork_server() -> None:
    """Return once a fork server started by :func:`start_fork_server` has finished its imports (the server
    accepts a child only then), so that a measurement does not share the CPU with them; else at once."""
    if not _started_early:
        return
    child = _fork_server().Process(target=_nothing, daemon=False)
    with _main_module_hidden():
        child.start()
    child.join()


def _nothing() -> None:
    """The child that :func:`wait_for_fork_server` starts."""


@functools.cache
def _fork_server() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["vidbench.run.preload"])
    mark_launcher()  # the fork server, spawned with this environment, follows this process too
    return context


def _forked_worker(task_file: str, log_file: str, cwd: str, environ: dict[str, str], conn: Any = None) -> None:
    """In the forked child: the launcher's environment and directory, output to the log, then the worker (a
    timer task talks over ``conn``, the pipe's end)."""
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
    from vidbench.run import worker

    channel = None if conn is None else _PipeChannel(conn)
    sys.exit(worker.main([task_file], channel))  # multiprocessing flushes, runs its finalizers and exits with the code


class _PipeChannel:
    """A timer's end of its pipe to the run (:class:`~vidbench.measure.latency.Channel`)."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self.conn = conn

    def receive(self) -> dict[str, Any] | None:
        try:
            return self.conn.recv()
        except EOFError:
            return None

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send(message)


def torchrun_command(
    args: list[str], nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None, rdzv_id: str = "vidbench"
) -> list[str]:
    """``python -m torch.distributed.run ... -m vidbench.run.worker ARGS``: standalone (a free local port) on one
    node, a c10d rendezvous at ``rdzv_endpoint`` across several."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if nnodes > 1 or rdzv_endpoint:
        if not rdzv_endpoint:
            raise ValueError("several nodes need a rendezvous endpoint (host:port of one of them)")
        command += [f"--nnodes={nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
        command += [f"--rdzv_id={rdzv_id}"]
    else:
        command.append("--standalone")
    return [*command, "-m", WORKER_MODULE, *args]


def torchrun_attached(
    task: dict[str, Any], folder: TaskDir, nproc: int, nnodes: int = 1, rdzv_endpoint: str | None = None
) -> Outcome:
    """Run ``task`` under ``torchrun`` with its output on this terminal (``vidbench train --nproc``); raises
    ``ValueError`` for a bad rendezvous setting."""
    command = torchrun_command([str(write_task(task, folder))], nproc, nnodes, rdzv_endpoint)
    code = subprocess.call(command)
    return Outcome(True) if code == 0 else Outcome(False, failure_reason(folder, code))


# --- executors: where a step's tasks run ----------------------------------------------------------------------
def run_step(
    task: dict[str, Any], folder: TaskDir, timeout_s: float, status: StatusFn | None = None, cwd: Path | None = None
) -> tuple[Outcome, list[Row]]:
    """Run ``task``'s child process (here: on this machine or a Ray worker) and read back the rows it settled in
    its task folder (a measure task's ``rows_file``), whatever way it ended: the parent's ledger writes them."""
    outcome = launch(task, folder, timeout_s, status, cwd)
    rows_file = task.get("rows_file")
    rows = ResultStore(Path(rows_file)).rows() if rows_file and Path(rows_file).exists() else []
    return outcome, rows  # type: ignore[return-value]


@dataclass(frozen=True)
class TaskStep:
    """One child process to run: its task, its log folder, its time limit, and a label for the progress display."""

    kind: str
    """``train``, ``measure`` or ``cascade``."""
    job: ModelJob
    task: dict[str, Any]
    folder: TaskDir
    timeout_s: float
    label: str


Ended = tuple[TaskStep, Outcome, list[Row]]
"""A task that ended: the step, how it ended, and the rows it settled (read back from its task folder)."""


class Executor(Protocol):
    """Runs tasks for the suite's loop."""

    def run(self, steps: Sequence[TaskStep]) -> Iterator[Ended]:
        """Run ``steps``; yield each as it ends (here one after another; on a cluster side by side)."""

    def each(self, jobs: Sequence[ModelJob], work: Callable[[ModelJob], None]) -> None:
        """``work`` on every job of ``jobs``; returns when all are done."""


class LocalExecutor:
    """Each task in a child process on this machine, one at a time, and the jobs one after another."""

    def __init__(self, progress: Progress, cwd: Path | None = None) -> None:
        self.progress, self.cwd = progress, cwd

    def run(self, steps: Sequence[TaskStep]) -> Iterator[Ended]:
        for step in steps:
            self.progress.stage(step.label)
            status = lambda line, step=step: self.progress.stage(f"{step.label}: {line}")  # noqa: E731
            yield (step, *run_step(step.task, step.folder, step.timeout_s, status, self.cwd))

    def each(self, jobs: Sequence[ModelJob], work: Callable[[ModelJob], None]) -> None:
        for job in jobs:
            work(job)


class TimerError(RuntimeError):
    """A warm timing process died, hung or answered nonsense; the message carries why."""


class TimerProcess:
    """One artifact's warm timing process (:class:`~vidbench.measure.latency.RoundTimer`), driven one command
    at a time (:func:`~vidbench.measure.latency.serve_rounds`); what else it prints goes to ``folder``'s log.
    Its own session and lifeline, like a task's child; killed on :meth:`stop` when it does not exit.

    Two ways to start one: :meth:`command` (a plain subprocess talking JSON lines on its stdin / stdout: an
    engine file's process, which must not import torch) and :meth:`forked` (a ``timer`` task of the worker,
    forked from the run's fork server, which has torch imported already, over a pipe)."""

    def __init__(self, folder: TaskDir, timeout_s: float) -> None:
        folder.root.mkdir(parents=True, exist_ok=True)
        folder.error.unlink(missing_ok=True)
        self.folder, self.timeout_s = folder, timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.child: _ForkedChild | None = None
        self.conn: multiprocessing.connection.Connection | None = None

    @classmethod
    def command(cls, command: list[str], folder: TaskDir, timeout_s: float, cwd: Path | None = None) -> TimerProcess:
        """``command`` in a subprocess, commands on its stdin and replies on its stdout."""
        timer = cls(folder, timeout_s)
        with open(folder.log, "w") as log:
            timer.proc = subprocess.Popen(
                command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                preexec_fn=_die_with_parent, env=lifeline_env(),
            )  # fmt: skip
        return timer

    @classmethod
    def forked(cls, task: dict[str, Any], folder: TaskDir, timeout_s: float, cwd: Path | None = None) -> TimerProcess:
        """The worker on ``task`` (kind ``timer``) in a child of the fork server, over a pipe."""
        timer = cls(folder, timeout_s)
        task_file = write_task(task, folder)
        timer.conn, child_end = _fork_server().Pipe()
        timer.child = _ForkedChild(task_file, folder.log, cwd, child_end)
        child_end.close()
        return timer

    def ready(self) -> None:
        """Wait until the process has loaded its artifact (``ready``), or raise why it did not."""
        self._answer()

    def warm(self, batch: int, calls: int) -> float:
        return float(self._ask({"op": "warm", "batch": batch, "calls": calls})["cold_ms"])

    def round(self, batch: int, seconds: float, min_calls: int, warmup: int) -> list[float]:
        reply = self._ask({"op": "round", "batch": batch, "seconds": seconds, "min_calls": min_calls, "warmup": warmup})
        return [float(x) for x in reply["samples_ms"]]

    def profile(self, batch: int, calls: int) -> dict[str, Any]:
        """Its operator profile at ``batch``; :class:`TimerError` with the process's reason when it has none."""
        reply = self._ask({"op": "profile", "batch": batch, "calls": calls})
        if "profile" not in reply:
            raise TimerError(str(reply.get("profile_error", "no profile in the reply")))
        return dict(reply["profile"])

    def stop(self) -> None:
        """Ask it to exit; kill its whole session when it has not within a few seconds."""
        with contextlib.suppress(OSError, ValueError, BrokenPipeError):
            self._send({"op": "stop"})
        deadline = time.monotonic() + 5
        while self._exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._exit_code() is None:
            self.stop_now()
        if self.conn is not None:
            self.conn.close()

    def stop_now(self) -> None:
        """Kill its whole session at once."""
        if self.child is not None:
            self.child.kill()
        elif self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def _send(self, message: dict[str, Any]) -> None:
        if self.conn is not None:
            self.conn.send(message)
        elif self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        try:
            self._send(command)
        except (OSError, ValueError) as exc:
            raise TimerError(self._why_gone(f"its input is closed ({exc})")) from None
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        """The next reply, checking once a second that the process is still there."""
        deadline = time.monotonic() + self.timeout_s
        while not self._readable(min(1.0, max(0.0, deadline - time.monotonic()))):
            if self._exit_code() is not None:
                raise TimerError(self._why_gone("it exited"))
            if time.monotonic() >= deadline:
                self.stop_now()
                raise TimerError(f"timing process gave no answer in {self.timeout_s:g} s")
        try:
            reply = self._read()
        except EOFError:
            raise TimerError(self._why_gone("it exited")) from None
        if not isinstance(reply, dict):
            raise TimerError(f"timing process answered {str(reply)[:120]!r}, not a message")
        return reply

    def _readable(self, timeout: float) -> bool:
        if self.conn is not None:
            return self.conn.poll(timeout)
        assert self.proc is not None and self.proc.stdout is not None
        return bool(select.select([self.proc.stdout], [], [], timeout)[0])

    def _read(self) -> object:
        if self.conn is not None:
            return self.conn.recv()
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            return line.strip()

    def _exit_code(self) -> int | None:
        if self.child is not None:
            return self.child.poll()
        return self.proc.poll() if self.proc is not None else None

    def _why_gone(self, what: str) -> str:
        deadline = time.monotonic() + 10
        while (code := self._exit_code()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if code is None:
            self.stop_now()
            return f"timing process {what} and did not end"
        if code < 0:
            return f"timing process killed by signal {signal.Signals(-code).name} (see {self.folder.log})"
        return f"timing process {what}: {failure_reason(self.folder, code)}"

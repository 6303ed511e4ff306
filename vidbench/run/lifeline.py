"""A child of a run dies with the process that launched it, whatever killed that process (SIGKILL included).

The launcher puts ``<pid>:<start time>`` in the child's environment (:func:`lifeline_env`); the child's
worker calls :func:`follow_launcher`, whose daemon thread waits on a pidfd of the launcher and kills the
child's process group (the child, its DataLoader workers) the moment the launcher exits. A torchrun
worker inherits the variable through torchrun, so it follows the runner too. ``PR_SET_PDEATHSIG`` is not
enough: a forked child's parent is the fork server, which outlives a killed runner.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable

import psutil

LIFELINE_ENV = "VIDBENCH_LAUNCHER"
"""Environment variable a child finds its launcher by: ``<pid>:<start time>`` (the start time tells a reused pid)."""


def _process_start(pid: int) -> float:
    return psutil.Process(pid).create_time()


def lifeline_env() -> dict[str, str]:
    """The environment of a child to launch: this process's, with the lifeline to this process."""
    pid = os.getpid()
    return {**os.environ, LIFELINE_ENV: f"{pid}:{_process_start(pid)!r}", "PYTHONUNBUFFERED": "1"}


def _kill_own_group() -> None:
    with contextlib.suppress(OSError):
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os._exit(137)


def _exit_alone() -> None:
    os._exit(137)


def _watch_launcher(pid: int, started: float, die: Callable[[], None]) -> None:
    try:
        handle = os.pidfd_open(pid)
        alive = _process_start(pid) == started  # not a later process that got the same pid
    except (OSError, psutil.Error):  # gone already
        alive = False
    if alive:
        select.select([handle], [], [])  # a pidfd turns readable when its process exits
    die()


def follow_launcher(group: bool = True) -> None:
    """In a child: exit as soon as the process that launched it exits, killing this process's whole group
    with it when ``group`` (a cell: itself and its DataLoader workers; not the fork server, which shares the
    launcher's group). Nothing happens when :data:`LIFELINE_ENV` is absent (a worker run by hand) or names
    this very process."""
    token = os.environ.get(LIFELINE_ENV)
    if not token or os.getpid() == int(token.split(":")[0]):
        return
    pid, started = token.split(":")
    die = _kill_own_group if group else _exit_alone
    threading.Thread(target=_watch_launcher, args=(int(pid), float(started), die), daemon=True, name="lifeline").start()


def mark_launcher() -> None:
    """Put this process's lifeline in its own environment, for processes it starts by other means than
    :func:`lifeline_env` (the fork server, which multiprocessing spawns with this environment)."""
    os.environ[LIFELINE_ENV] = lifeline_env()[LIFELINE_ENV]

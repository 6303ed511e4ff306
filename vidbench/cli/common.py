"""What every command shares: the consoles, the one way to fail, and the executor choice."""

from __future__ import annotations

import importlib.util
from enum import IntEnum, StrEnum
from typing import Annotated

import typer
from rich.console import Console

console = Console()
if not console.is_terminal:
    # Piped or in CI: do not fold the result table into an 80-column strip.
    console = Console(width=200)
err_console = Console(stderr=True)


class ExitCode(IntEnum):
    """Every exit status of ``vidbench`` (the README's table): 2 is for usage and suite errors only, as click
    reserves it; a runtime failure has its own code so a CI script can tell them apart."""

    OK = 0
    FAILED = 1  # a cell or the report failed (run), a rule broke (compare), a job failed (train)
    USAGE = 2  # bad option, bad suite, a file or run directory that is not there
    DATA = 3  # the dataset or a video could not be read or prepared
    BUSY = 4  # another vidbench process is writing the run directory
    INTERNAL = 70  # a bug: an exception nothing expected (sysexits' EX_SOFTWARE); the traceback is printed
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit (status ``code``, 2 unless said) to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(int(code))


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (for CI and logs).")]
"""``--quiet``: every command that shows progress (``run``, ``embed``) drops it; results are still printed."""

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout instead of the table.")]
"""``--json``: the command prints one JSON document on stdout and nothing else."""


class ExecutorChoice(StrEnum):
    """Where a suite's (or an embedding run's) tasks run."""

    local = "local"
    ray = "ray"


class DecodeBackend(StrEnum):
    """Which decoder reads the videos: ``auto`` is decord where it is installed, else PyAV."""

    auto = "auto"
    decord = "decord"
    pyav = "pyav"


def require_executor(executor: ExecutorChoice) -> None:
    """Fail with the install line when ``--executor ray`` is asked for without Ray installed."""
    if executor is ExecutorChoice.ray and importlib.util.find_spec("ray") is None:
        raise fail("--executor ray needs Ray: pip install 'vidbench[ray]'")

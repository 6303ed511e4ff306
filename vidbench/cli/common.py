"""What every command shares: the consoles, the one way to fail, and the executor choice."""

from __future__ import annotations

import importlib.util
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

console = Console()
if not console.is_terminal:
    # Piped or in CI: do not fold the result table into an 80-column strip.
    console = Console(width=200)
err_console = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit (status 2) for the caller to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout instead of the table.")]
"""``--json``: the command prints one JSON document on stdout and nothing else."""


class Executor(StrEnum):
    """Where a suite's (or an embedding run's) tasks run."""

    local = "local"
    ray = "ray"


class DecodeBackend(StrEnum):
    """Which decoder reads the videos: ``auto`` is decord where it is installed, else PyAV."""

    auto = "auto"
    decord = "decord"
    pyav = "pyav"


def require_executor(executor: Executor) -> None:
    """Fail with the install line when ``--executor ray`` is asked for without Ray installed."""
    if executor is Executor.ray and importlib.util.find_spec("ray") is None:
        raise fail("--executor ray needs Ray: pip install 'vidbench[ray]'")

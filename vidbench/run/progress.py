"""How a suite run reports its progress: a small protocol the CLI implements with a display."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives a run's progress: the number of cells, what is happening now, and cells done."""

    def start(self, total: int) -> None:
        """The run has ``total`` cells to account for."""

    def stage(self, text: str) -> None:
        """What the run is doing now (a task's latest log line included)."""

    def advance(self, cells: int) -> None:
        """``cells`` more cells have their rows."""

    def stop(self) -> None:
        """The run ended."""


class Silent:
    """A :class:`Progress` that shows nothing (library use, tests, ``--quiet``)."""

    def start(self, total: int) -> None:
        pass

    def stage(self, text: str) -> None:
        pass

    def advance(self, cells: int) -> None:
        pass

    def stop(self) -> None:
        pass

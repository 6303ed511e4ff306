"""The progress display of ``vidbench run``: a rich bar (cells done / total, current stage, elapsed)."""

from __future__ import annotations

from typing import Any


class RichProgress:
    """Implements :class:`vidbench.run.progress.Progress` with a rich progress bar."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        self._progress = Bar(
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

    def advance(self, cells: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, cells)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description="done")
            self._progress.stop()

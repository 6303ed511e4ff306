"""The ledger: the one writer of a run's rows, in the parent process, whatever executor ran the tasks.

A measure task writes the rows it settles (unsupported, failed at the parity gate) into its own task folder
(``TaskDir.rows``) and leaves the rows that passed in ``untimed.json``; the parent reads both back once the
child has ended (:func:`vidbench.run.executor.run_step`, on this machine or a Ray worker), and every row of the
run passes through :class:`Ledger` into ``results.jsonl``, fsynced at once, mirrored to ``results.csv``.
"""

from __future__ import annotations

from collections.abc import Iterable

from vidbench.results import KEY_COLUMN, ResultStore, Row


class Ledger:
    """Appends rows to the run's store (``results.jsonl``, mirrored to ``results.csv``); the stored keys."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def write(self, row: Row) -> None:
        """Append one finished row (its ``status`` set)."""
        self.store.append(row)

    def write_all(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.write(row)

    def failed(self, row: Row, reason: str) -> None:
        """Append ``row`` as ``failed`` with ``reason``."""
        self.write(Row(**{**row, "status": "failed", "reason": reason}))  # type: ignore[typeddict-item]

    def unsupported(self, row: Row, reason: str) -> None:
        """Append ``row`` as ``unsupported`` (the optimization cannot run here) with ``reason``."""
        self.write(Row(**{**row, "status": "unsupported", "reason": reason}))  # type: ignore[typeddict-item]

    def keys(self, statuses: tuple[str, ...]) -> set[str]:
        """The cell keys already stored with one of ``statuses`` (what ``--resume`` skips)."""
        return self.store.keys(statuses)

    def unreadable_lines(self) -> list[int]:
        return self.store.unreadable_lines()


def keys_of(rows: Iterable[Row]) -> set[str]:
    """The cell keys of ``rows``."""
    return {str(row.get(KEY_COLUMN)) for row in rows}

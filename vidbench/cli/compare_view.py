"""How `vidbench compare` prints a comparison: environment warning, deltas table, verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vidbench.report.compare import Comparison, Rule, wide_table


def deltas_rich_table(result: Comparison, title: str) -> Table:
    """The per-cell deltas as a rich table, cells with a broken rule in red."""
    wide = wide_table(result.table)
    broken_cells = {message.split(":", 1)[0] for message in result.broken}
    table = Table(title=title)
    for column in wide.columns:
        table.add_column(column, justify="left" if column == "cell" else "right", overflow="fold")
    for row in wide.itertuples(index=False):
        table.add_row(*[str(v) for v in row], style="red" if row[0] in broken_cells else None)
    return table


def print_comparison(
    result: Comparison, run_a: Path, run_b: Path, rules: list[Rule], out: Console, err: Console
) -> None:
    """Print everything a reader (or a CI log) needs, the verdict last."""
    if result.env_diffs:
        err.print(
            "[bold yellow]warning: the runs' environments differ[/] (timing deltas may come from the machine or the "
            "library versions, not from the change): " + "; ".join(result.env_diffs),
            highlight=False,
            soft_wrap=True,
        )
    if result.suites_differ:
        err.print(
            "[yellow]note: the runs come from different suite definitions (suite_hash differs)[/]", soft_wrap=True
        )
    out.print(deltas_rich_table(result, f"A = {run_a}  ->  B = {run_b}"))
    for label, cells in (("only in A", result.only_a), ("only in B", result.only_b)):
        if cells:
            out.print(f"{label}: {', '.join(cells)}", highlight=False, soft_wrap=True)
    for change in result.status_changes:
        out.print(f"[yellow]status regression[/]: {change}", highlight=False, soft_wrap=True)
    if not rules:
        out.print("no --fail-on rule given: deltas only, exit 0")
        return
    if result.broken:  # the verdict is the command's output (stdout); the exit status carries it too
        out.print(f"[bold red]FAIL[/]: {len(result.broken)} rule violation(s)", highlight=False)
        for message in result.broken:
            out.print(f"  {message}", highlight=False, soft_wrap=True)
        return
    out.print(f"[green]PASS[/]: no cell breaks {', '.join(repr(r.text) for r in rules)}", highlight=False)


def comparison_document(result: Comparison, run_a: Path, run_b: Path, rules: list[Rule]) -> dict[str, Any]:
    """The comparison as one JSON-ready document (``compare --json``): the verdict, what broke it, every delta."""
    verdict = "FAIL" if result.broken else "PASS" if rules else "none"
    deltas = json.loads(result.table.to_json(orient="records"))  # NaN becomes null
    return {
        "run_a": str(run_a), "run_b": str(run_b), "rules": [r.text for r in rules], "verdict": verdict,
        "broken": result.broken, "status_changes": result.status_changes, "env_diffs": result.env_diffs,
        "suites_differ": result.suites_differ, "only_a": result.only_a, "only_b": result.only_b, "deltas": deltas,
    }  # fmt: skip

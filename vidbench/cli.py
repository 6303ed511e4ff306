"""The ``vidbench`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vidbench.config import SuiteError, load_suite
from vidbench.plugins import PluginError, load_plugins
from vidbench.report.table import rich_table, write_summary
from vidbench.results import ResultStore

app = typer.Typer(
    help="Benchmark video-understanding models: train, optimize, measure, compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
plugins_app = typer.Typer(help="Inspect the installed plugins.", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")
console = Console()
if not console.is_terminal:
    # Piped or in CI: do not fold the result table into an 80-column strip.
    console = Console(width=200)
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def run(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML file.")],
    resume: Annotated[bool, typer.Option(help="Continue the latest run of this suite; skip stored cells.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="With --resume, run failed cells again.")] = False,
    run_id: Annotated[str | None, typer.Option(help="Write into (or resume) this run id.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (for CI).")] = False,
) -> None:
    """Run a suite: train each model once, measure every optimization, write the result table."""
    from vidbench.runner import run_suite

    try:
        suite, registry = load_suite(suite_file)
    except SuiteError as exc:
        raise _fail(str(exc)) from None
    run_dir = run_suite(
        suite, registry, suite_file, resume=resume, retry_failed=retry_failed, quiet=quiet, run_id=run_id
    )
    summary = write_summary(run_dir)
    frame = ResultStore(run_dir).frame()
    console.print(rich_table(frame, title=f"{suite.name} / {run_dir.name}"))
    counts = frame["status"].value_counts().to_dict()
    console.print(f"cells: {len(frame)} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    console.print(f"results: {run_dir / 'results.csv'}\nsummary: {summary}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory: results/<suite>/<run_id>.")]) -> None:
    """Re-print a run's result table from disk and rewrite its summary.md."""
    if not (run_dir / "results.jsonl").exists():
        raise _fail(f"{run_dir}: no results.jsonl here; expected a directory like results/<suite>/<run_id>")
    summary = write_summary(run_dir)
    console.print(rich_table(ResultStore(run_dir).frame(), title=str(run_dir)))
    console.print(f"summary: {summary}")


@plugins_app.command("list")
def plugins_list(
    suite_file: Annotated[Path | None, typer.Option("--suite", help="Also load this suite's local plugins.")] = None,
) -> None:
    """List every model, dataset and optimization with where it comes from."""
    try:
        registry = load_suite(suite_file)[1] if suite_file else load_plugins()
    except (SuiteError, PluginError) as exc:
        raise _fail(str(exc)) from None
    table = Table(title="vidbench plugins")
    for column in ("kind", "name", "source", "presets / support", "description"):
        table.add_column(column, overflow="fold")
    for item in registry.all():
        spec = item.spec
        if item.kind == "model":
            detail = ", ".join(spec.presets)
        elif item.kind == "optimization":
            ok, why = spec.supported("cpu")
            detail = "cpu: supported" if ok else f"cpu: unsupported ({why})"
        else:
            detail = ", ".join(spec.options.model_fields)
        table.add_row(item.kind, spec.name, item.source, detail, spec.description)
    console.print(table)


if __name__ == "__main__":
    app()

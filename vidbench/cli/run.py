"""``vidbench run``, ``report`` and ``compare``: run a suite, re-render a run, gate one run against another."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vidbench.cli.common import (
    ExecutorChoice,
    ExitCode,
    JsonOpt,
    QuietOpt,
    console,
    err_console,
    fail,
    require_executor,
)
from vidbench.rundir import RunDir, RunDirBusy


def run(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML file.")],
    resume: Annotated[bool, typer.Option(help="Continue the latest run of this suite; skip stored cells.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="With --resume, run failed cells again.")] = False,
    run_id: Annotated[str | None, typer.Option(help="Write into (or resume) this run id.")] = None,
    quiet: QuietOpt = False,
    executor: Annotated[
        ExecutorChoice,
        typer.Option(help="local: child processes here; ray: Ray tasks (RAY_ADDRESS, else a local Ray)."),
    ] = ExecutorChoice.local,
    override: Annotated[
        list[str] | None,
        typer.Option("--override", "-o", help="KEY.PATH=VALUE on top of the suite (YAML value), e.g. train.epochs=3."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Run only the cells with KEY=VALUE (dataset, model, preset, optimization, batch_size)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="List the cells (with their last measured time) and stop.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="No progress; one JSON document (files, counts, rows) on stdout at the end.")
    ] = False,
    exit_zero: Annotated[
        bool, typer.Option(help="Exit 0 even when a cell or the report failed (exploratory runs).")
    ] = False,
) -> None:
    """Run a suite: train each model once, measure every optimization, write the result table.

    Exit status: 0 every cell ok or unsupported; 1 a cell or the report failed (0 with --exit-zero);
    2 a usage or suite error; 3 the dataset could not be read; 4 the run directory is busy; 130 Ctrl-C."""
    if retry_failed and not resume:
        raise fail("--retry-failed re-runs the failed cells of an earlier run: add --resume")
    from vidbench.suite.compose import compose_suite, with_plugins
    from vidbench.suite.schema import SuiteError

    try:
        composed = compose_suite(suite_file, list(override or []))  # the one read of the file: no plugin, no torch
    except SuiteError as exc:
        raise fail(str(exc)) from None
    _refuse_a_busy_run_dir(composed, resume, run_id)  # first: a refusal should not wait for torch
    if not dry_run and executor is ExecutorChoice.local:
        from vidbench.run.launch import start_fork_server

        start_fork_server()  # its imports run beside this process's own (the suite's plugins)
    from vidbench.cli.progress import RichProgress
    from vidbench.data.loader import read_skip_log
    from vidbench.data.scan import DatasetError
    from vidbench.report.table import rich_table, write_summary
    from vidbench.run.progress import Silent
    from vidbench.run.scheduler import run_suite
    from vidbench.suite.cells import parse_only

    require_executor(executor)
    try:
        suite, registry = with_plugins(composed, suite_file)
        chosen = parse_only(only or [])
    except (SuiteError, ValueError) as exc:
        raise fail(str(exc)) from None
    if dry_run:
        _print_plan(suite, registry, suite_file, chosen)
        return
    try:
        run_dir = run_suite(
            suite,
            registry,
            suite_file,
            resume=resume,
            retry_failed=retry_failed,
            progress=Silent() if quiet or as_json else RichProgress(),
            run_id=run_id,
            executor=executor.value,
            only=chosen,
        )
    except DatasetError as exc:
        raise fail(str(exc), ExitCode.DATA) from None
    except RunDirBusy as exc:
        raise fail(str(exc), ExitCode.BUSY) from None
    files = RunDir(run_dir)
    summary = write_summary(run_dir)
    if as_json:
        import json

        report_files = write_report_files(run_dir, quiet=True)
        print(json.dumps(_run_document(files, summary, report_files), indent=2))
        _exit_on_failures(files, report_files is not None, exit_zero)
        return
    frame = files.store().frame()
    console.print(rich_table(frame, title=f"{suite.name} / {files.run_id}"))
    counts = frame["status"].value_counts().to_dict()
    console.print(f"cells: {len(frame)} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    skipped = read_skip_log(files.skipped)
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} unreadable file(s)[/]: {files.skipped}")
    console.print(f"results: {files.results_csv}\nsummary: {summary}")
    _exit_on_failures(files, write_report_files(run_dir) is not None, exit_zero)


def _exit_on_failures(files: RunDir, reported: bool, exit_zero: bool) -> None:
    """Exit 1 when a cell of the run's table failed (this run's or one stored before a ``--resume``) or the
    report did not render, saying so on stderr; ``--exit-zero`` says it and exits 0."""
    failed = int((files.store().frame()["status"] == "failed").sum())
    problems = ([f"{failed} cell(s) failed (their reasons are in {files.results_csv})"] if failed else []) + (
        [] if reported else ["the report failed"]
    )
    if not problems:
        return
    status = ExitCode.OK if exit_zero else ExitCode.FAILED
    err_console.print(f"{'; '.join(problems)}: exit {int(status)}", highlight=False, soft_wrap=True)
    if status is ExitCode.FAILED:
        raise typer.Exit(int(status))


def _print_plan(suite: Any, registry: Any, suite_file: Path, only: dict[str, set[str]]) -> None:
    """``--dry-run``: the cells a run would measure, the jobs it would train, and each cell's time in the latest
    earlier run of the suite (its measuring child's wall time) where there is one."""
    from vidbench.suite.cells import expand, select

    jobs, cells = select(*expand(suite, registry, suite_file.parent), only)
    earlier = RunDir.latest(suite.output_dir, suite.name)
    seconds: dict[tuple[str, str, str, int], float] = {}
    if earlier is not None:
        frame = earlier.store().frame()
        for row in frame.to_dict("records"):
            wall = row.get("cell_wall_s")
            if isinstance(wall, int | float) and wall == wall:
                seconds[(row["model"], row["preset"], row["optimization"], int(row["batch_size"]))] = float(wall)
    table = Table(title=f"{suite.name}: {len(cells)} cells, {len(jobs)} jobs to train (dry run)")
    for column in ("dataset", "model", "preset", "optimization", "batch", "threads", "last s"):
        table.add_column(column)
    for cell in cells:
        job = cell.job
        last = seconds.get((job.model, job.variant, cell.optimization, cell.batch_size))
        threads = "-" if cell.threads is None else str(cell.threads)
        shown = "-" if last is None else f"{last:.1f}"
        table.add_row(job.dataset, job.model, job.variant, cell.optimization, str(cell.batch_size), threads, shown)
    console.print(table)
    console.print(_training_plan(suite, registry, jobs))
    known = [
        seconds[k] for k in ((c.job.model, c.job.variant, c.optimization, c.batch_size) for c in cells) if k in seconds
    ]
    where = f" (from {earlier.root})" if earlier is not None else ""
    console.print(f"cells: {len(cells)}; jobs: {len(jobs)}; measured before: {len(known)}{where}")


PLANNED_TRAIN_SETTINGS = ("epochs", "until", "schedule", "lr", "batch_size", "early_stop_patience", "max_minutes")
"""The train settings ``--dry-run`` shows for each job, each with where it comes from."""


def _training_plan(suite: Any, registry: Any, jobs: list[Any]) -> Table:
    """Each job's main train settings and where each comes from (the suite's ``train:``, the preset's recipe, the
    model's own ``train:``, or the default): why a model trains as long as it does."""
    from vidbench.suite.schema import train_sources

    table = Table(title="training of each job: value (from)")
    for column in ("model", "preset", *PLANNED_TRAIN_SETTINGS):
        table.add_column(column)
    for job in jobs:
        entry = next(e for e in suite.models if e.name == job.model)
        recipe = registry.model(job.model).presets[job.preset].recipe if suite.recipes else None
        sources = train_sources(suite, entry, recipe and recipe.settings)
        settings = job.train_settings()
        values = [f"{getattr(settings, name)} ({sources[name]})" for name in PLANNED_TRAIN_SETTINGS]
        table.add_row(job.model, job.variant, *values)
    return table


def _refuse_a_busy_run_dir(suite: Any, resume: bool, run_id: str | None) -> None:
    """Fail at once, before the plugins load, when the run directory to resume is being written."""
    if not (resume or run_id):
        return
    run = (
        RunDir.for_suite(suite.output_dir, suite.name, run_id)
        if run_id
        else RunDir.latest(suite.output_dir, suite.name)
    )
    holder = run.writer_pid() if run is not None else None
    if run is not None and holder is not None:
        raise fail(str(run.busy(holder)), ExitCode.BUSY)


def write_report_files(run_dir: Path, quiet: bool = False) -> Any:
    """Write report.md and report.html and print their paths (report.html last) unless ``quiet``; returns the
    written files, or ``None`` after an error, which is printed (stderr), never raised, so the results already
    on disk and the caller's exit status stay as they are."""
    from vidbench.report.output import write_report

    try:
        files = write_report(run_dir)
    except Exception as exc:  # the results are on disk; the report can be rewritten later
        err_console.print(f"[bold red]report failed:[/] {type(exc).__name__}: {exc} (retry: vidbench report {run_dir})")
        return None
    if not quiet:
        console.print(f"report (markdown): {files.markdown}\nreport: {files.html}", highlight=False, soft_wrap=True)
    return files


def _run_document(files: RunDir, summary: Path, report: Any) -> dict[str, Any]:
    """A run as one JSON-ready document (``run --json``, ``report --json``): where its files are, how many
    cells ended how, and every row of its table."""
    import json

    frame = files.store().frame()
    return {
        "run_dir": str(files.root), "run_id": files.run_id, "cells": len(frame),
        "statuses": {str(k): int(v) for k, v in frame["status"].value_counts().items()},
        "results_csv": str(files.results_csv), "summary": str(summary),
        "report_html": str(report.html) if report else None,
        "report_markdown": str(report.markdown) if report else None,
        "rows": json.loads(frame.to_json(orient="records")),
    }  # fmt: skip


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory: results/<suite>/<run_id>.")],
    as_json: JsonOpt = False,
) -> None:
    """Re-print a run's result table from disk; rewrite its summary.md, report.md and report.html."""
    import json

    from vidbench.report.table import rich_table, write_summary

    files = RunDir(run_dir)
    if not files.exists():
        raise fail(f"{run_dir}: no results here; expected a directory like results/<suite>/<run_id>")
    summary = write_summary(run_dir)
    if as_json:
        written = write_report_files(run_dir, quiet=True)
        print(json.dumps(_run_document(files, summary, written), indent=2))
        if written is None:
            raise typer.Exit(1)
        return
    console.print(rich_table(files.store().frame(), title=str(run_dir)))
    console.print(f"summary: {summary}")
    if not write_report_files(run_dir):
        raise typer.Exit(1)


def compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="Candidate run directory (B).")],
    fail_on: Annotated[
        list[str] | None,
        typer.Option(help="Rule that breaks the gate, e.g. 'top1<-1' (points) or 'latency_ms_p50>+10%'. Repeatable."),
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Metric column to show (repeatable).")] = None,
    require_same_env: Annotated[bool, typer.Option(help="Exit 1 when the environments differ.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Per-cell deltas from A to B; exit 1 when a --fail-on rule is broken (a CI gate), 2 on bad input."""
    import json

    from vidbench.cli.compare_view import comparison_document, print_comparison
    from vidbench.report.compare import compare_runs, parse_rule

    try:
        rules = [parse_rule(text) for text in fail_on or []]
        result = compare_runs(run_a, run_b, rules, metric or None)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(comparison_document(result, run_a, run_b, rules), indent=2))
    else:
        print_comparison(result, run_a, run_b, rules, console, err_console)
    if result.failed or (require_same_env and result.env_diffs):
        raise typer.Exit(1)


class ExportFormat(StrEnum):
    """What ``vidbench export`` writes."""

    parquet = "parquet"
    mlflow = "mlflow"
    wandb = "wandb"


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory: results/<suite>/<run_id>.")],
    to: Annotated[
        ExportFormat,
        typer.Option(help="parquet: a typed table; mlflow: one MLflow run per cell; wandb: offline W&B runs."),
    ],
    out: Annotated[
        Path | None, typer.Option(help="parquet: the file; wandb: the folder (default: in the run directory).")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="mlflow: where to log (default: a local sqlite store in the run directory).")
    ] = None,
    experiment: Annotated[str | None, typer.Option(help="mlflow: experiment name (default: vidbench/<suite>).")] = None,
    project: Annotated[str | None, typer.Option(help="wandb: project name (default: vidbench-<suite>).")] = None,
) -> None:
    """Export a run's results for other tools: a Parquet table, MLflow runs, or offline W&B runs."""
    import importlib.util

    from vidbench.report.export import to_mlflow, to_parquet, to_wandb

    if not RunDir(run_dir).exists():
        raise fail(f"{run_dir}: no results here; expected a directory like results/<suite>/<run_id>")
    if to is ExportFormat.parquet:
        line = f"parquet: {to_parquet(run_dir, out)}"
    elif importlib.util.find_spec(to.value) is None:
        raise fail(f"--to {to.value} needs {to.value}: pip install 'vidbench[track]'")
    elif to is ExportFormat.wandb:
        written = to_wandb(run_dir, out, project)
        line = (
            f"wandb (offline): {len(written['runs'])} runs in project {written['project']}, group {written['group']}"
            f", under {written['dir']}\nupload: wandb sync {written['dir']}/wandb/offline-run-*"
        )
    else:
        logged = to_mlflow(run_dir, tracking_uri, experiment)
        line = (
            f"mlflow: {logged['cells']} cell runs under run {logged['parent_run_id']} (experiment "
            f"{logged['experiment_id']}) at {logged['tracking_uri']}"
        )
    console.print(line, highlight=False, soft_wrap=True)

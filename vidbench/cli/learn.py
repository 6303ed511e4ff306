"""``vidbench train`` and ``evaluate``: one model job of a suite, outside a suite run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from vidbench.cli.common import ExitCode, console, fail

if TYPE_CHECKING:
    from vidbench.run.scheduler import SuiteRun
    from vidbench.suite.cells import ModelJob


def _select_job(
    suite_file: Path, model: str, preset: str | None, out: Path | None, trainer: str | None = None
) -> tuple[SuiteRun, ModelJob]:
    """The suite's run machinery for one model job, writing into ``out``."""
    from vidbench.data.scan import DatasetError
    from vidbench.run.progress import Silent
    from vidbench.run.scheduler import SuiteRun
    from vidbench.rundir import RunDir
    from vidbench.suite.cells import expand
    from vidbench.suite.compose import load_suite
    from vidbench.suite.schema import SuiteError

    try:
        suite, registry = load_suite(suite_file)
    except SuiteError as exc:
        raise fail(str(exc)) from None
    jobs, _ = expand(suite, registry, suite_file.parent)
    matches = [
        j for j in jobs
        if j.model == model and preset in (None, j.preset) and trainer in (None, j.trainer_name)
    ]  # fmt: skip
    if not matches:
        known = ", ".join(sorted({f"{j.model}/{j.variant}" for j in jobs}))
        wanted = f"{model!r}{f' preset {preset!r}' if preset else ''}{f' trainer {trainer!r}' if trainer else ''}"
        raise fail(f"{suite_file}: no model {wanted} in the suite; it has: {known}")
    job = matches[0]
    run = RunDir(out) if out else RunDir.for_suite(suite.output_dir, suite.name, f"train-{job.model}-{job.variant}")
    suite_run = SuiteRun(suite, registry, suite_file, RunDir(run.root.resolve()))
    try:
        suite_run.prepare_datasets(Silent())
    except DatasetError as exc:
        raise fail(str(exc), ExitCode.DATA) from None
    suite_run.write_job_file(job)
    return suite_run, job


def train(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML: dataset, input and train settings.")],
    model: Annotated[str, typer.Option(help="Model name in the suite.")],
    preset: Annotated[str | None, typer.Option(help="Preset (default: the suite's first for this model).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default results/<suite>/train-<model>-<preset>).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the folder's last checkpoint.")] = False,
    nproc: Annotated[
        int | None, typer.Option(min=1, help="DDP processes per node via torchrun (default: the suite's train.nproc).")
    ] = None,
    nnodes: Annotated[int, typer.Option(min=1, help="Nodes, each running this command (needs --rdzv-endpoint).")] = 1,
    rdzv_endpoint: Annotated[str | None, typer.Option(help="host:port of the torchrun rendezvous.")] = None,
    trainer: Annotated[
        str | None, typer.Option(help="The trainer of the model's entry to train (default: its first entry's).")
    ] = None,
) -> None:
    """Train one model of a suite outside the suite run: checkpoints every epoch, TensorBoard, analysis."""
    from vidbench.job.context import Context
    from vidbench.job.train import run_train
    from vidbench.run.launch import torchrun_attached

    run, job = _select_job(suite_file, model, preset, out, trainer)
    files = run.rundir.job(job.slug)
    if job.teacher is not None and run.trained(job.teacher) is None:
        raise fail(
            f"{job.model}/{job.variant} learns from {job.teacher}, not trained in {run.rundir.root}: train its teacher "
            "first with the same --out"
        )
    if files.train_state.exists() and not resume:
        raise fail(f"{files.train_state} exists: pass --resume to continue it, or choose another --out")
    files.summary.unlink(missing_ok=True)
    run.write_env()
    nproc = nproc or job.train_settings().nproc
    if nproc > 1 or nnodes > 1:
        try:
            outcome = torchrun_attached(
                run.train_step(job).task, run.rundir.task(job.slug, "train"), nproc, nnodes, rdzv_endpoint
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
        if not outcome.ok:
            raise fail(f"distributed training failed: {outcome.reason}", ExitCode.FAILED)
    else:
        run_train(Context(run.train_step(job).task))
    console.print(f"trained: {files.root}\ncheckpoint: {files.checkpoint}\nanalysis: {files.analysis}")


def evaluate(
    suite_file: Annotated[Path, typer.Argument(help="The suite the model was trained with.")],
    model: Annotated[str, typer.Option(help="Model name in the suite.")],
    preset: Annotated[str | None, typer.Option(help="Preset (default: the suite's first for this model).")] = None,
    out: Annotated[Path | None, typer.Option(help="The folder `vidbench train` wrote.")] = None,
) -> None:
    """Evaluate a trained model on the test split: accuracy, calibration, temporal probes, retrieval, errors."""
    import json

    from vidbench.job.context import Context
    from vidbench.job.train import evaluate_job

    run, job = _select_job(suite_file, model, preset, out)
    files = run.rundir.job(job.slug)
    if not files.checkpoint.exists():
        raise fail(f"{files.checkpoint} not found: train it first (vidbench train)")
    summary = evaluate_job(Context(run.task("train", job)))
    table = Table(title=f"{job.model}/{job.preset} on the {job.dataset} test split")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console.print(table)
    details = json.loads(files.analysis.read_text())
    for pair in details.get("most_confused", [])[:5]:
        console.print(f"confused: {pair['true']} -> {pair['predicted']} ({pair['count']}, {pair['share']:.0%})")
    console.print(f"analysis: {files.analysis}")

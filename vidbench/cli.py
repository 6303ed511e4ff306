"""The ``vidbench`` command line."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vidbench.config import SuiteError, load_suite
from vidbench.data.loader import read_skip_log
from vidbench.data.scan import DatasetError
from vidbench.plugins import PluginError, load_plugins
from vidbench.report.table import rich_table, write_summary
from vidbench.results import ResultStore
from vidbench.serve.commands import register as register_production

app = typer.Typer(
    help="Benchmark video-understanding models: train, optimize, measure, compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
plugins_app = typer.Typer(help="Inspect the installed plugins.", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")
models_app = typer.Typer(help="Inspect the model plugins.", no_args_is_help=True)
app.add_typer(models_app, name="models")
data_app = typer.Typer(help="Look at video files: metadata, decode speed, sampled frames.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
if not console.is_terminal:
    # Piped or in CI: do not fold the result table into an 80-column strip.
    console = Console(width=200)
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


class Executor(StrEnum):
    """Where a suite's (or an embedding run's) tasks run."""

    local = "local"
    ray = "ray"


def _require_executor(executor: Executor) -> None:
    """Fail with the install line when ``--executor ray`` is asked for without Ray installed."""
    import importlib.util

    if executor is Executor.ray and importlib.util.find_spec("ray") is None:
        raise _fail("--executor ray needs Ray: pip install 'vidbench[ray]'")


@app.command()
def run(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML file.")],
    resume: Annotated[bool, typer.Option(help="Continue the latest run of this suite; skip stored cells.")] = False,
    retry_failed: Annotated[bool, typer.Option(help="With --resume, run failed cells again.")] = False,
    run_id: Annotated[str | None, typer.Option(help="Write into (or resume) this run id.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (for CI).")] = False,
    executor: Annotated[
        Executor, typer.Option(help="local: child processes here; ray: Ray tasks (RAY_ADDRESS, else a local Ray).")
    ] = Executor.local,
) -> None:
    """Run a suite: train each model once, measure every optimization, write the result table."""
    from vidbench.runner import run_suite

    _require_executor(executor)
    try:
        suite, registry = load_suite(suite_file)
    except SuiteError as exc:
        raise _fail(str(exc)) from None
    try:
        run_dir = run_suite(
            suite,
            registry,
            suite_file,
            resume=resume,
            retry_failed=retry_failed,
            quiet=quiet,
            run_id=run_id,
            executor=executor.value,
        )
    except DatasetError as exc:
        raise _fail(str(exc)) from None
    summary = write_summary(run_dir)
    frame = ResultStore(run_dir).frame()
    console.print(rich_table(frame, title=f"{suite.name} / {run_dir.name}"))
    counts = frame["status"].value_counts().to_dict()
    console.print(f"cells: {len(frame)} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    skipped = read_skip_log(run_dir / "skipped.csv")
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} unreadable file(s)[/]: {run_dir / 'skipped.csv'}")
    console.print(f"results: {run_dir / 'results.csv'}\nsummary: {summary}")
    _write_report(run_dir)


def _write_report(run_dir: Path) -> bool:
    """Write report.md and report.html and print their paths (report.html last); an error is printed, never
    raised, so the results already on disk and the caller's exit status stay as they are."""
    from vidbench.report.document import write_report

    try:
        files = write_report(run_dir)
    except Exception as exc:  # the results are on disk; the report can be rewritten later
        err_console.print(f"[bold red]report failed:[/] {type(exc).__name__}: {exc} (retry: vidbench report {run_dir})")
        return False
    console.print(f"report (markdown): {files.markdown}\nreport: {files.html}", highlight=False, soft_wrap=True)
    return True


def _select_job(suite_file: Path, model: str, preset: str | None, out: Path | None):
    """The suite's run machinery for one model job, writing into ``out``."""
    from vidbench.cells import expand
    from vidbench.runner import Progress, SuiteRun

    try:
        suite, registry = load_suite(suite_file)
    except SuiteError as exc:
        raise _fail(str(exc)) from None
    jobs, _ = expand(suite, registry, suite_file.parent)
    matches = [j for j in jobs if j.model == model and (preset is None or j.preset == preset)]
    if not matches:
        known = ", ".join(sorted({f"{j.model}/{j.preset}" for j in jobs}))
        raise _fail(
            f"{suite_file}: no model {model!r}{f' preset {preset!r}' if preset else ''} in the suite; it has: {known}"
        )
    job = matches[0]
    out = out or Path(suite.output_dir) / suite.name / f"train-{job.model}-{job.preset}"
    run = SuiteRun(suite, registry, suite_file, out.resolve(), out.name)
    try:
        run.prepare_datasets(Progress(quiet=True))
    except DatasetError as exc:
        raise _fail(str(exc)) from None
    return run, job


@app.command()
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
) -> None:
    """Train one model of a suite outside the suite run: checkpoints every epoch, TensorBoard, analysis."""
    from vidbench.train import STATE_FILE
    from vidbench.worker import Context, job_dir, run_train

    run, job = _select_job(suite_file, model, preset, out)
    folder = job_dir(run.run_dir, job)
    if (folder / STATE_FILE).exists() and not resume:
        raise _fail(f"{folder / STATE_FILE} exists: pass --resume to continue it, or choose another --out")
    (folder / "train.json").unlink(missing_ok=True)
    run.write_env()
    nproc = nproc or job.train_settings().nproc
    if nproc > 1 or nnodes > 1:
        task_dir = run.run_dir / "logs" / job.slug / "train"
        _train_distributed(run.task("train", job), task_dir, nproc, nnodes, rdzv_endpoint)
    else:
        run_train(Context(run.task("train", job)))
    console.print(f"trained: {folder}\ncheckpoint: {folder / 'checkpoint.pt'}\nanalysis: {folder / 'analysis.json'}")


def _train_distributed(task: dict, task_dir: Path, nproc: int, nnodes: int, rdzv_endpoint: str | None) -> None:
    """Run the train task under torchrun (output to this terminal); fail with the ranks' error line."""
    import json
    import subprocess

    from vidbench.distributed import torchrun_command

    task_dir.mkdir(parents=True, exist_ok=True)
    task_file, error_file = task_dir / "task.json", task_dir / "error.txt"
    error_file.unlink(missing_ok=True)
    task_file.write_text(json.dumps(task, indent=2, default=str))
    try:
        command = torchrun_command([str(task_file)], nproc, nnodes, rdzv_endpoint)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    code = subprocess.call(command)
    if code != 0:
        reason = error_file.read_text().strip() if error_file.exists() else f"torchrun exit code {code}"
        raise _fail(f"distributed training failed: {reason}")


@app.command()
def evaluate(
    suite_file: Annotated[Path, typer.Argument(help="The suite the model was trained with.")],
    model: Annotated[str, typer.Option(help="Model name in the suite.")],
    preset: Annotated[str | None, typer.Option(help="Preset (default: the suite's first for this model).")] = None,
    out: Annotated[Path | None, typer.Option(help="The folder `vidbench train` wrote.")] = None,
) -> None:
    """Evaluate a trained model on the test split: accuracy, calibration, temporal probes, retrieval, errors."""
    import json

    from vidbench.worker import Context, evaluate_job, job_dir

    run, job = _select_job(suite_file, model, preset, out)
    folder = job_dir(run.run_dir, job)
    if not (folder / "checkpoint.pt").exists():
        raise _fail(f"{folder / 'checkpoint.pt'} not found: train it first (vidbench train)")
    summary = evaluate_job(Context(run.task("train", job)))
    table = Table(title=f"{job.model}/{job.preset} on the {job.dataset} test split")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console.print(table)
    details = json.loads((folder / "analysis.json").read_text())
    for pair in details.get("most_confused", [])[:5]:
        console.print(f"confused: {pair['true']} -> {pair['predicted']} ({pair['count']}, {pair['share']:.0%})")
    console.print(f"analysis: {folder / 'analysis.json'}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory: results/<suite>/<run_id>.")]) -> None:
    """Re-print a run's result table from disk; rewrite its summary.md, report.md and report.html."""
    if not (run_dir / "results.jsonl").exists():
        raise _fail(f"{run_dir}: no results.jsonl here; expected a directory like results/<suite>/<run_id>")
    summary = write_summary(run_dir)
    console.print(rich_table(ResultStore(run_dir).frame(), title=str(run_dir)))
    console.print(f"summary: {summary}")
    if not _write_report(run_dir):
        raise typer.Exit(1)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="Baseline run directory (A).")],
    run_b: Annotated[Path, typer.Argument(help="Candidate run directory (B).")],
    fail_on: Annotated[
        list[str] | None,
        typer.Option(help="Rule that breaks the gate, e.g. 'top1<-1' (points) or 'latency_ms_p50>+10%'. Repeatable."),
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Metric column to show (repeatable).")] = None,
    require_same_env: Annotated[bool, typer.Option(help="Exit 1 when the environments differ.")] = False,
) -> None:
    """Per-cell deltas from A to B; exit 1 when a --fail-on rule is broken (a CI gate), 2 on bad input."""
    from vidbench.report.compare import compare_runs, parse_rule
    from vidbench.report.compare_cli import print_comparison

    try:
        rules = [parse_rule(text) for text in fail_on or []]
        result = compare_runs(run_a, run_b, rules, metric or None)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    print_comparison(result, run_a, run_b, rules, console, err_console)
    if result.failed or (require_same_env and result.env_diffs):
        raise typer.Exit(1)


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


@models_app.command("info")
def models_info(
    name: Annotated[str | None, typer.Argument(help="One model; all when omitted.")] = None,
    flops: Annotated[bool, typer.Option(help="Count fvcore GFLOPs (slow for the large presets).")] = True,
    num_classes: Annotated[int, typer.Option(help="Head size for the counts (published figures use 400).")] = 400,
) -> None:
    """Per model and preset: params, fvcore GFLOPs at the preset's input, published figures and the
    difference, input spec, ONNX exportability."""
    import torch

    from vidbench.measure.complexity import count_params, gflops_per_clip

    registry = load_plugins()
    names = [name] if name else sorted(registry.models)
    if name and name not in registry.models:
        raise _fail(f"unknown model {name!r}; allowed: {', '.join(sorted(registry.models))}")
    table = Table(
        title=f"vidbench models (GFLOPs: fvcore, one multiply-add = one FLOP, batch 1, {num_classes} classes)"
    )
    for column in (
        "model",
        "preset",
        "input T x crop",
        "params M",
        "published M",
        "diff %",
        "GFLOPs",
        "published",
        "diff %",
        "K400 top-1",
        "ONNX",
        "source",
    ):
        table.add_column(column, overflow="fold")
    for model_name in names:
        spec = registry.model(model_name)
        for preset in spec.presets.values():
            model = spec.build(preset, num_classes).eval()
            params = count_params(model)
            gflops = None
            if flops:
                clip = torch.zeros(1, 3, preset.input.frames, preset.input.crop, preset.input.crop)
                gflops = gflops_per_clip(model, clip)
            pub = preset.published

            def diff(ours: float | None, theirs: float | None) -> str:
                return f"{(ours - theirs) / theirs * 100:+.2f}" if ours is not None and theirs else "-"

            exportable = "yes" if spec.onnx_exportable is True else f"no: {spec.onnx_exportable}"
            table.add_row(
                model_name,
                preset.name,
                f"{preset.input.frames} x {preset.input.crop}",
                f"{params / 1e6:.3f}",
                f"{pub.params / 1e6:.2f}" if pub and pub.params else "-",
                diff(params, pub and pub.params),
                f"{gflops:.3f}" if gflops is not None else "-",
                f"{pub.gflops:g}" if pub and pub.gflops else "-",
                diff(gflops, pub and pub.gflops),
                f"{pub.top1:g}" if pub and pub.top1 else "-",
                exportable,
                pub.source if pub else preset.description,
            )
            del model
    console.print(table)


def _video_files(path: Path) -> list[Path]:
    from vidbench.data.scan import VIDEO_EXTENSIONS

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise _fail(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise _fail(f"{path}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return files


@data_app.command("inspect")
def data_inspect(
    path: Annotated[Path, typer.Argument(help="A video file or a folder (searched recursively).")],
    decode: Annotated[bool, typer.Option(help="Also decode every frame (finds damaged packet data).")] = False,
) -> None:
    """Metadata of each file (container, codec, range, size, rotation, SAR, fps, frames, VFR) and its problems."""
    from vidbench.data.scan import decode_all, probe_files

    files = _video_files(path)
    good, bad = probe_files(files, workers=1)
    if decode:
        for file in list(good):
            problem = decode_all(file, good[file].frames)
            if problem:
                bad.append((str(file), problem))
                del good[file]
    table = Table(title=f"{path}: {len(files)} file(s), {len(bad)} unreadable")
    for column in (
        "file",
        "container",
        "codec",
        "pix_fmt",
        "range",
        "coded",
        "display",
        "rot",
        "SAR",
        "fps",
        "frames",
        "dur s",
        "VFR",
        "keyframes",
        "problems",
    ):
        table.add_column(column, overflow="fold")
    base = path if path.is_dir() else path.parent
    for file in files:
        name = str(file.relative_to(base))
        if file not in good:
            reason = next(r for p, r in bad if p == str(file))
            table.add_row(name, *["-"] * 13, f"[red]unreadable: {reason}[/]")
            continue
        m = good[file]
        w, h = m.display_size
        table.add_row(
            name,
            m.container,
            m.codec,
            m.pix_fmt,
            m.color_range,
            f"{m.coded_width}x{m.coded_height}",
            f"{w}x{h}",
            str(m.rotation),
            str(m.sar),
            f"{m.fps:.2f}",
            f"{m.frames} ({m.frames_from})",
            f"{m.duration_s:.2f}",
            "yes" if m.vfr else "no",
            str(m.keyframes),
            "; ".join(m.problems()),
        )
    console.print(table)


@data_app.command("bench")
def data_bench(
    path: Annotated[Path, typer.Argument(help="A video file or a folder of them.")],
    frames: Annotated[int, typer.Option(help="Frames per clip (uniform over the whole video).")] = 16,
    crop: Annotated[int, typer.Option(help="Crop size of the eval transforms.")] = 112,
    rounds: Annotated[int, typer.Option(help="Passes over the files per backend.")] = 3,
    threads: Annotated[int, typer.Option(help="torch threads for the transforms.")] = 1,
) -> None:
    """Decode + transform clips/s per backend, pytorchvideo's EncodedVideo as the reference, same files."""
    import torch

    from vidbench.data.bench import REFERENCE, bench_backend, decoders

    torch.set_num_threads(threads)
    files = _video_files(path)
    results = [bench_backend(name, fn, files, frames, crop, rounds=rounds) for name, fn in decoders().items()]
    reference = next(r for r in results if r.backend == REFERENCE)
    table = Table(title=f"{len(files)} file(s) x {rounds} round(s), {frames} frames uniform, {crop}px eval transforms")
    for column in (
        "backend",
        "clips",
        "failed",
        "clips/s",
        "frames/s",
        "decode ms/clip",
        "transform ms/clip",
        "collate ms/clip",
        f"x {REFERENCE}",
    ):
        table.add_column(column, justify="right")
    for r in results:
        per = 1000 / max(r.clips, 1)
        ratio = r.clips_per_s / reference.clips_per_s if reference.clips_per_s else float("nan")
        table.add_row(
            r.backend,
            str(r.clips),
            str(r.failed),
            f"{r.clips_per_s:.1f}",
            f"{r.frames_per_s:.0f}",
            f"{r.decode_s * per:.1f}",
            f"{r.transform_s * per:.1f}",
            f"{r.collate_s * per:.2f}",
            f"{ratio:.2f}",
        )
    console.print(table)


@data_app.command("preview")
def data_preview(
    path: Annotated[Path, typer.Argument(help="A video file.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("preview.png"),
    frames: Annotated[int, typer.Option(help="Frames to sample.")] = 8,
    crop: Annotated[int, typer.Option(help="Crop size of the eval transforms.")] = 112,
    backend: Annotated[str, typer.Option(help="decord or pyav.")] = "decord",
) -> None:
    """Write a PNG contact sheet of a clip's sampled frames, as decoded and after the transforms."""
    from vidbench.data.decode import DecodeError
    from vidbench.data.preview import contact_sheet

    try:
        written = contact_sheet(path, out, frames, crop, backend)  # type: ignore[arg-type]
    except (DecodeError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"preview: {written}")


register_production(app)  # embed, index build|query, serve (vidbench/serve/commands.py)

if __name__ == "__main__":
    app()

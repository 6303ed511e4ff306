"""``vidbench embed``, ``index build|query`` and ``serve``: production from a measured run.

Heavy imports (torch models, FAISS, FastAPI, uvicorn) happen inside the commands so ``vidbench --help``
stays fast.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from vidbench.cli.common import ExecutorChoice, JsonOpt, QuietOpt, console, fail, require_executor
from vidbench.data.decode import DecodeLimits, policy_from_label

if TYPE_CHECKING:
    from vidbench.serve.artifact import ServedModel

index_app = typer.Typer(help="Build and query a FAISS index over a feature store.", no_args_is_help=True)

ArtifactOpt = Annotated[
    str,
    typer.Option(
        "--artifact",
        help="RUN_DIR/model@optimization (model: job slug, model name or model__preset; no @: the run's baseline).",
    ),
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model of the run, when --artifact is RUN_DIR@opt.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="torch / ONNX Runtime threads (default: the run's).")]


class IndexKind(StrEnum):
    """What ``index build`` builds."""

    auto = "auto"
    flat = "flat"
    ivfpq = "ivfpq"


def load_artifact(artifact: str, model: str | None, threads: int | None, prepare: bool = True) -> ServedModel:
    """Resolve and load ``--artifact`` (``prepare=False``: the PyTorch model only, for embeddings); a bad
    reference is a clear one-line error."""
    from vidbench.serve.artifact import ArtifactError, load_served, parse_ref

    try:
        return load_served(parse_ref(artifact, model), threads, prepare=prepare)
    except ArtifactError as exc:
        raise fail(str(exc)) from None


def _inputs(source: str, served: ServedModel) -> list[tuple[Path, str]]:
    """A folder's video files (label: sub-folder name), or the run's dataset (``name`` or ``name:split``)."""
    from vidbench.serve.features import list_inputs

    path = Path(source)
    if path.is_dir():
        files = list_inputs(path)
        base = path.resolve()
        return [(p, "" if p.parent == base else p.parent.name) for p, _ in files]
    name, _, split = source.partition(":")
    dataset = served.ctx.dataset
    if name != served.ctx.job.dataset:
        raise fail(f"{source}: not a folder, nor the run's dataset {served.ctx.job.dataset!r}")
    splits = [split] if split else list(dataset.splits)
    unknown = [s for s in splits if s not in dataset.splits]
    if unknown:
        raise fail(f"{source}: no split {unknown[0]!r}; splits: {', '.join(dataset.splits)}")
    out = []
    for s in splits:
        for sample in dataset.splits[s]:
            label = sample.label if isinstance(sample.label, int) else sample.label[0] if sample.label else None
            out.append((Path(sample.path).resolve(), dataset.class_names[label] if label is not None else ""))
    return out


def embed(
    source: Annotated[str, typer.Argument(help="A folder of videos (recursive), or the run's dataset: NAME[:SPLIT].")],
    artifact: ArtifactOpt,
    model: ModelOpt = None,
    out: Annotated[Path | None, typer.Option(help="Feature store folder (default RUN_DIR/features/<job>).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips per model call.")] = 16,
    workers: Annotated[int, typer.Option(min=0, help="Decoding processes (DataLoader workers).")] = 2,
    threads: ThreadsOpt = None,
    executor: Annotated[
        ExecutorChoice,
        typer.Option(help="local: a DataLoader here; ray: ray.data actors (RAY_ADDRESS, else a local Ray)."),
    ] = ExecutorChoice.local,
    quiet: QuietOpt = False,
) -> None:
    """Embed every video into a feature store keyed by file hash: a re-run decodes only new or changed files."""
    from rich.progress import Progress

    from vidbench.serve.artifact import EMBED_NOTE
    from vidbench.serve.features import StoreError, embed_files, summary_line

    require_executor(executor)
    served = load_artifact(artifact, model, threads, prepare=False)
    inputs = _inputs(source, served)
    if not inputs:
        raise fail(f"{source}: no video files")
    store = out or served.ref.run.features(served.slug)
    where = " on Ray" if executor is ExecutorChoice.ray else ""
    console.print(f"embedding {len(inputs)} file(s) with {served.slug}{where} ({EMBED_NOTE})")
    with Progress(console=console, disable=quiet or not console.is_terminal) as bar:
        task = bar.add_task("embedding", total=None)
        step = {"next": 0.1}

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if not quiet and not console.is_terminal and done >= step["next"] * total:  # a log line per 10 % when piped
                console.print(f"embedded {done}/{total}")
                step["next"] = (done // max(total / 10, 1) + 1) / 10

        try:
            report = embed_files(served, inputs, store, batch_size, workers, progress=progress, executor=executor.value)
        except StoreError as exc:
            raise fail(str(exc)) from None
    console.print(summary_line(report))
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)
    console.print(f"store: {store}")


@index_app.command("build")
def index_build(
    store: Annotated[Path, typer.Argument(help="A feature store folder written by `vidbench embed`.")],
    out: Annotated[Path | None, typer.Option(help="Index folder (default STORE/index).")] = None,
    kind: Annotated[
        IndexKind, typer.Option(help="auto: flat below --ivfpq-above vectors, else IVF-PQ.")
    ] = IndexKind.auto,
    ivfpq_above: Annotated[int | None, typer.Option(help="Vector count above which auto picks IVF-PQ.")] = None,
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF cells visited per query (default nlist/4).")] = None,
) -> None:
    """Build a cosine-similarity FAISS index (flat, or IVF-PQ above a size threshold) and save it."""
    from vidbench.serve.features import StoreError
    from vidbench.serve.index import DEFAULT_IVFPQ_ABOVE, VectorIndex, VectorIndexError

    try:
        index = VectorIndex.from_store(store, kind.value, ivfpq_above or DEFAULT_IVFPQ_ABOVE, nprobe)  # type: ignore[arg-type]
    except (StoreError, VectorIndexError) as exc:
        raise fail(str(exc)) from None
    folder = index.save(out or store / "index")
    info = index.info
    line = f"{info.kind} index: {info.count} x {info.dim}, cosine"
    if info.kind == "ivfpq":
        line += f", nlist {info.nlist}, m {info.m}, nbits {info.nbits}, nprobe {info.nprobe}"
        line += f"; recall@10 vs flat {info.recall_at_10:.3f} ({info.count} queries)"
    console.print(line)
    console.print(f"index: {folder}")


@index_app.command("query")
def index_query(
    index_dir: Annotated[Path, typer.Argument(help="An index folder written by `vidbench index build`.")],
    video: Annotated[Path, typer.Argument(help="The query video file.")],
    k: Annotated[int, typer.Option("-k", min=1, help="Neighbours to list.")] = 10,
    artifact: Annotated[str | None, typer.Option(help="RUN_DIR/model (default: the index's own model).")] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the stored videos most similar to VIDEO (cosine similarity of the embeddings)."""
    from vidbench.data.decode import DecodeError
    from vidbench.serve.features import identity_diff
    from vidbench.serve.index import VectorIndex, VectorIndexError

    try:
        index = VectorIndex.load(index_dir)
    except VectorIndexError as exc:
        raise fail(str(exc)) from None
    identity = index.info.identity
    ref = artifact or f"{identity.get('run_dir', '')}/{identity.get('job', '')}"
    served = load_artifact(ref, None, threads, prepare=False)
    if identity and identity_diff(served.identity(), identity):
        raise fail(f"{ref} is not the model the index was built with ({identity.get('job')})")
    try:
        vector = served.embed(served.load_clip(video).unsqueeze(0)).float().numpy()
    except DecodeError as exc:
        raise fail(str(exc)) from None
    hits = index.search(vector, k)[0]
    if as_json:
        neighbours = [{"rank": rank, "score": float(hit.score), "label": hit.label, "path": hit.path}
                      for rank, hit in enumerate(hits, 1)]  # fmt: skip
        document = {"query": str(video), "index": str(index_dir), "kind": index.info.kind, "neighbours": neighbours}
        print(json.dumps(document, indent=2))
        return
    table = Table(title=f"{video.name}: {k} nearest in {index_dir} ({index.info.kind}, cosine)")
    for column in ("rank", "score", "label", "path"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.4f}", hit.label, hit.path)
    console.print(table)


_LIMITS = DecodeLimits()


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def serve(
    artifact: ArtifactOpt,
    model: ModelOpt = None,
    index: Annotated[Path | None, typer.Option(help="Index folder for /v1/similar.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, help="Most clips per model call.")] = 8,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for a batch to fill.")] = 5.0,
    batching: Annotated[bool, typer.Option(help="Dynamic batching; --no-batching: one model call per request.")] = True,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest accepted upload.")] = 50.0,
    max_duration_s: Annotated[float, typer.Option(min=0.1, help="Longest accepted video.")] = 120.0,
    containers: Annotated[str, typer.Option(help="Accepted demuxer names, comma separated.")] = "mov,matroska,avi,webm",
    codecs: Annotated[str, typer.Option(help="Accepted FFmpeg decoders, comma separated.")] = ",".join(_LIMITS.codecs),
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest frame, width x height.")] = _LIMITS.max_pixels,
    max_aspect: Annotated[float, typer.Option(min=1, help="Longest side over shortest.")] = _LIMITS.max_aspect,
    max_frames: Annotated[int, typer.Option(min=1, help="Most frames, counted from packets.")] = _LIMITS.max_frames,
    decode_workers: Annotated[int, typer.Option(min=1, help="Processes that decode uploads.")] = 2,
    decode_timeout_s: Annotated[float, typer.Option(min=0.1, help="Longest decode of one upload.")] = 10.0,
    decode_memory_mb: Annotated[int, typer.Option(min=64, help="Memory a decode process may add.")] = 1024,
    max_in_flight: Annotated[int, typer.Option(min=1, help="Uploads handled at once; more get 503.")] = 16,
    show_paths: Annotated[bool, typer.Option(help="Show absolute paths in /healthz and /v1/similar.")] = False,
    decode_policy: Annotated[
        str,
        typer.Option(
            help="How uploads are decoded: 'auto' (the fastest policy the run measured whose top-1 ties the run's "
            "own, docs/serving.md), 'run' (as the run evaluated), or a policy (exact, keyframes+scaled, ...)."
        ),
    ] = "auto",
    threads: ThreadsOpt = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve a measured artifact over HTTP: /v1/classify, /v1/embed, /v1/similar, /healthz, /metrics, /docs."""
    import uvicorn

    from vidbench.serve.app import ServeSettings, create_app
    from vidbench.serve.artifact import chosen_decode_policy
    from vidbench.serve.batcher import BatchSettings
    from vidbench.serve.decoding import DecodeSettings, UploadPolicy
    from vidbench.serve.index import VectorIndex, VectorIndexError

    if decode_policy not in ("auto", "run"):
        try:
            policy_from_label(decode_policy)
        except ValueError as exc:
            raise fail(f"--decode-policy: {exc}; or auto, run") from None
    served = load_artifact(artifact, model, threads)
    why = f"{decode_policy}: given"
    if decode_policy == "auto":
        decode_policy, why = chosen_decode_policy(served.ref.run_dir, served.ctx)
    elif decode_policy == "run":
        decode_policy, why = served.ctx.suite.data.decode_policy[0], "as the run evaluated the model"
    loaded = None
    if index is not None:
        try:
            loaded = VectorIndex.load(index)
        except VectorIndexError as exc:
            raise fail(str(exc)) from None
    limits = DecodeLimits(max_pixels, max_aspect, max_frames, _names(codecs))
    settings = ServeSettings(
        max_upload_bytes=int(max_upload_mb * 2**20),
        upload=UploadPolicy(limits, _names(containers), max_duration_s),
        decode=DecodeSettings(decode_workers, decode_timeout_s, decode_memory_mb),
        batch=BatchSettings(
            max_batch if batching else 1, max_wait_ms if batching else 0.0, max_queue=4 * max_in_flight
        ),
        max_in_flight=max_in_flight,
        show_paths=show_paths,
        decode_policy=decode_policy,
    )
    try:
        app = create_app(served, settings, loaded)
    except ValueError as exc:
        raise fail(str(exc)) from None
    knobs = f"max {settings.batch.max_batch} clips / {settings.batch.max_wait_ms:g} ms" if batching else "off"
    console.print(
        f"serving {served.slug}@{served.optimization} (prepared in {served.prepare_s:.1f} s, max |dlogit| "
        f"vs the checkpoint {served.parity['max_abs_logit_diff']:.2g}); batching {knobs}; decoding {why}"
    )
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)

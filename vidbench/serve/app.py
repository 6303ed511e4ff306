"""The inference server: a FastAPI app over a :class:`ServedModel`, with dynamic batching and limits.

Endpoints: ``POST /v1/classify`` (top-k labels), ``POST /v1/embed`` (the clip's embedding),
``POST /v1/similar`` (nearest stored videos from a FAISS index), ``GET /healthz``, ``GET /metrics``
(Prometheus text) and the OpenAPI docs at ``/docs``. Uploads are multipart field ``file``.

Each upload is copied to a temporary file, probed (container, duration), decoded and transformed in
a thread pool, so the event loop keeps serving; the model runs in one more thread, fed by a
:class:`DynamicBatcher` per model function. A bad upload is answered with a 4xx and a JSON body
``{"error": CODE, "detail": MESSAGE}``; nothing about it reaches the model.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from vidbench.data.decode import DecodeError
from vidbench.serve.artifact import ServedModel
from vidbench.serve.batcher import BatchSettings, DynamicBatcher
from vidbench.serve.metrics import MetricsMiddleware, ServerMetrics

DEFAULT_CONTAINERS = ("mov", "matroska", "avi", "webm")
"""PyAV's demuxer names: ``mov`` covers .mp4/.mov/.m4v, ``matroska`` .mkv and .webm."""


@dataclass(frozen=True)
class ServeSettings:
    """Limits and knobs of one server."""

    max_upload_bytes: int = 50 * 2**20
    containers: tuple[str, ...] = DEFAULT_CONTAINERS
    max_duration_s: float = 120.0
    batch: BatchSettings = field(default_factory=BatchSettings)
    decode_workers: int = 2
    default_k: int = 5


class ServeError(Exception):
    """A request the server refuses: HTTP status, a short code, and what was wrong."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class Label(BaseModel):
    """One class and its score."""

    label: str
    index: int
    score: float


class ClassifyResponse(BaseModel):
    """Top-k labels of one uploaded video."""

    labels: list[Label]
    job: str
    optimization: str
    decode_ms: float
    total_ms: float


class EmbedResponse(BaseModel):
    """The embedding of one uploaded video (from the PyTorch model of the served checkpoint)."""

    embedding: list[float]
    dim: int
    job: str
    decode_ms: float
    total_ms: float


class NeighbourOut(BaseModel):
    """One stored video similar to the upload."""

    path: str
    label: str
    score: float


class SimilarResponse(BaseModel):
    """The nearest stored videos, best first (score: cosine similarity)."""

    neighbours: list[NeighbourOut]
    index_kind: str
    job: str
    decode_ms: float
    total_ms: float


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes gets 413 before the app parses it.

    A declared ``Content-Length`` over the limit is refused at once (the body is drained, up to
    ``drain_factor`` times the limit, so an ordinary client reads the answer instead of a reset).
    A body without a length is counted while it arrives and refused once it passes the limit.
    """

    def __init__(self, app: Any, limit: int, drain_factor: int = 8) -> None:
        self.app = app
        self.limit = limit
        self.drain_factor = drain_factor

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            if int(length) <= self.limit * self.drain_factor:
                await _drain(receive)
            await _too_large(send, int(length), self.limit)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await _drain(receive)
                await _too_large(send, size, self.limit)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict[str, Any]:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


async def _drain(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _too_large(send: Any, size: int, limit: int) -> None:
    body = JSONResponse(
        {"error": "too_large", "detail": f"request body of {size} bytes is over the limit of {limit} bytes"}, 413
    )
    await body(scope={"type": "http"}, receive=None, send=send)  # type: ignore[arg-type]


class Engine:
    """What the endpoints share: the model, the batchers, the thread pools, the index, the metrics."""

    def __init__(self, served: ServedModel, settings: ServeSettings, index: Any, metrics: ServerMetrics) -> None:
        self.served, self.settings, self.index, self.metrics = served, settings, index, metrics
        self.model_pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.decode_pool = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")
        self.classifier = DynamicBatcher(served.classify, settings.batch, self.model_pool, metrics.observer("classify"))
        self.embedder = DynamicBatcher(served.embed, settings.batch, self.model_pool, metrics.observer("embed"))

    def start(self) -> None:
        """Start the batchers on the running loop."""
        self.classifier.start()
        self.embedder.start()

    async def stop(self) -> None:
        """Stop the batchers and the pools."""
        await self.classifier.stop()
        await self.embedder.stop()
        self.model_pool.shutdown(wait=False, cancel_futures=True)
        self.decode_pool.shutdown(wait=False, cancel_futures=True)

    def reject(self, status: int, code: str, detail: str) -> ServeError:
        """Count a refused request and make its error."""
        self.metrics.rejected.labels(code).inc()
        return ServeError(status, code, detail)

    def _decode(self, path: Path, name: str) -> torch.Tensor:
        """Probe, check the limits, decode and transform (runs in the decode pool)."""
        try:
            dataset, meta = self.served.probe(path)
        except DecodeError as exc:
            raise self.reject(415, "not_a_video", f"{name}: not a readable video: {_tail(exc, path, name)}") from None
        if meta.container not in self.settings.containers:
            allowed = ", ".join(self.settings.containers)
            raise self.reject(415, "container", f"{name}: container {meta.container!r} is not accepted ({allowed})")
        if meta.duration_s > self.settings.max_duration_s:
            limit = self.settings.max_duration_s
            raise self.reject(422, "too_long", f"{name}: {meta.duration_s:.1f} s is over the {limit:g} s limit")
        try:
            return self.served.load_clip(path, dataset)
        except Exception as exc:  # a hostile file may break a decoder in any way; it is still the file's fault
            raise self.reject(422, "undecodable", f"{name}: cannot decode: {_tail(exc, path, name)}") from None

    async def read_clip(self, upload: UploadFile) -> tuple[torch.Tensor, float]:
        """The upload as a clip, and the milliseconds spent probing, decoding and transforming it."""
        name = Path(upload.filename or "upload").name
        size = upload.size
        if size is not None and size > self.settings.max_upload_bytes:
            limit = self.settings.max_upload_bytes
            raise self.reject(413, "too_large", f"{name}: {size} bytes is over the limit of {limit} bytes")
        if size == 0:
            raise self.reject(400, "empty", f"{name}: the upload is empty")
        loop = asyncio.get_running_loop()
        suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(name).suffix)[:10] or ".bin"
        with tempfile.NamedTemporaryFile(suffix=suffix, prefix="vidbench-upload-") as tmp:
            await loop.run_in_executor(self.decode_pool, _copy, upload, tmp)
            start = time.perf_counter()
            clip = await loop.run_in_executor(self.decode_pool, self._decode, Path(tmp.name), name)
        seconds = time.perf_counter() - start
        self.metrics.decode_seconds.observe(seconds)
        return clip, seconds * 1000


def _copy(upload: UploadFile, tmp: Any) -> None:
    upload.file.seek(0)
    shutil.copyfileobj(upload.file, tmp, 1 << 20)
    tmp.flush()


def _tail(exc: Exception, path: Path, name: str) -> str:
    """An error message with the temporary path replaced by the upload's name, first line only."""
    text = str(exc).replace(str(path), name).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def create_app(served: ServedModel, settings: ServeSettings | None = None, index: Any = None) -> FastAPI:
    """The FastAPI app serving ``served`` (and ``index``, a :class:`vidbench.index.VectorIndex`, for /v1/similar)."""
    settings = settings or ServeSettings()
    if index is not None:
        built_for = index.info.identity.get("checkpoint_sha")
        if built_for and built_for != served.checkpoint_sha:
            raise ValueError(
                f"the index was built from checkpoint {built_for}, the served one is {served.checkpoint_sha}"
            )
    metrics = ServerMetrics()
    engine = Engine(served, settings, index, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        yield
        await engine.stop()

    app = FastAPI(
        title="vidbench serve",
        description=f"{served.slug} under {served.optimization}. {served.describe()['embed']}.",
        version="1",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + 64 * 1024)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    _routes(app, engine)
    return app


def _routes(app: FastAPI, engine: Engine) -> None:
    served, settings = engine.served, engine.settings
    upload = File(..., description="A video file (mp4, mkv, avi, mov, webm).")

    @app.post("/v1/classify", response_model=ClassifyResponse)
    async def classify(file: UploadFile = upload, k: int = Query(settings.default_k, ge=1, le=1000)) -> dict:
        """Top-``k`` labels of the uploaded video, from the served artifact."""
        start = time.perf_counter()
        clip, decode_ms = await engine.read_clip(file)
        logits = await engine.classifier.submit(clip)
        labels = served.top_k(logits.unsqueeze(0), k)[0]
        total = (time.perf_counter() - start) * 1000
        job, optimization = served.slug, served.optimization
        return {"labels": labels, "job": job, "optimization": optimization, "decode_ms": decode_ms, "total_ms": total}

    @app.post("/v1/embed", response_model=EmbedResponse)
    async def embed(file: UploadFile = upload) -> dict:
        """The uploaded video's embedding (PyTorch model of the served checkpoint)."""
        start = time.perf_counter()
        clip, decode_ms = await engine.read_clip(file)
        vector = (await engine.embedder.submit(clip)).float().tolist()
        total = (time.perf_counter() - start) * 1000
        return {"embedding": vector, "dim": len(vector), "job": served.slug, "decode_ms": decode_ms, "total_ms": total}

    @app.post("/v1/similar", response_model=SimilarResponse)
    async def similar(file: UploadFile = upload, k: int = Query(10, ge=1, le=1000)) -> dict:
        """The ``k`` stored videos most similar (cosine) to the upload, from the loaded index."""
        if engine.index is None:
            raise engine.reject(503, "no_index", "this server has no index: start it with --index INDEX_DIR")
        start = time.perf_counter()
        clip, decode_ms = await engine.read_clip(file)
        vector = (await engine.embedder.submit(clip)).float().numpy()
        hits = engine.index.search(np.asarray(vector)[None], k)[0]
        total = (time.perf_counter() - start) * 1000
        neighbours = [{"path": h.path, "label": h.label, "score": h.score} for h in hits]
        kind, job = engine.index.info.kind, served.slug
        return {"neighbours": neighbours, "index_kind": kind, "job": job, "decode_ms": decode_ms, "total_ms": total}

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness and what is served: job, optimization, measured rows, batching, limits, index."""
        info = asdict(engine.index.info) if engine.index is not None else None
        limits = {
            "max_upload_bytes": settings.max_upload_bytes,
            "containers": list(settings.containers),
            "max_duration_s": settings.max_duration_s,
        }
        batching = asdict(settings.batch)
        return {"status": "ok", **served.describe(), "batching": batching, "limits": limits, "index": info}

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text: requests, latency histogram, batch sizes, model and decode time, rejections."""
        body, content_type = engine.metrics.render()
        return Response(body, media_type=content_type)

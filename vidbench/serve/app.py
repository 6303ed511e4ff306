"""The inference server: a FastAPI app over a :class:`ServedModel`, with dynamic batching and limits.

Endpoints: ``POST /v1/classify`` (top-k labels), ``POST /v1/embed`` (the clip's embedding),
``POST /v1/similar`` (nearest stored videos from a FAISS index), ``GET /healthz``, ``GET /metrics``
(Prometheus text) and the OpenAPI docs at ``/docs``. Uploads are multipart field ``file``.

Each upload is counted as it arrives (:class:`Admission`: a body limit on bytes received, chunked or
not, and a server-wide limit on requests in flight), spooled to a temporary file, then checked from its
metadata, decoded and transformed in a worker process (:mod:`vidbench.serve.decoding`), so neither a
costly file nor a crashing decoder touches the server process. The model runs in one thread, fed by a
:class:`DynamicBatcher` per model function. A refused upload is answered with a 4xx (503 with
``Retry-After`` when the server is full) and a JSON body ``{"error": CODE, "detail": MESSAGE}`` whose
message is fixed per failure class and names only the upload's own file name.
"""

from __future__ import annotations

import asyncio
import os
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

from vidbench.serve.artifact import ServedModel
from vidbench.serve.batcher import BatchSettings, DynamicBatcher
from vidbench.serve.decoding import DecodePool, DecodeSettings, UploadPolicy, UploadRefused
from vidbench.serve.metrics import MetricsMiddleware, ServerMetrics


@dataclass(frozen=True)
class ServeSettings:
    """Limits and knobs of one server."""

    max_upload_bytes: int = 50 * 2**20
    upload: UploadPolicy = field(default_factory=UploadPolicy)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    max_in_flight: int = 16
    """Uploads being received, decoded or classified at once; beyond it 503 with ``Retry-After``."""
    default_k: int = 5
    show_paths: bool = False
    """Show the machine's absolute paths in ``/healthz`` and ``/v1/similar`` (off: names relative to the index)."""
    decode_policy: str | None = None
    """How uploads are decoded (a ``data.decode_policy`` label); ``None``: as the run evaluated the model."""


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


class Admission:
    """Pure ASGI middleware in front of every upload (POST / PUT): what may come in, before the app parses it.

    - ``Content-Length`` together with ``Transfer-Encoding`` (or two lengths) is refused with 400: the two
      framings disagree, and trusting the wrong one let bodies past the limit.
    - At most ``max_in_flight`` uploads at once; one more gets 503 with ``Retry-After`` at once.
    - A declared length over ``limit`` gets 413 at once; every body, chunked or not, is counted as it is
      received and refused with 413 the moment it passes ``limit``. Nothing is buffered here: the app
      spools the multipart body to disk as it reads it.
    """

    def __init__(self, app: Any, limit: int, max_in_flight: int, on_reject: Any = None, drain_factor: int = 8) -> None:
        self.app = app
        self.limit = limit
        self.max_in_flight = max_in_flight
        self.on_reject = on_reject or (lambda code: None)
        self.drain_factor = drain_factor
        self.in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        names = [name.lower() for name, _ in scope["headers"]]
        if names.count(b"content-length") > 1 or (b"content-length" in names and b"transfer-encoding" in names):
            await self._refuse(send, 400, "bad_framing", "Content-Length with Transfer-Encoding is not accepted")
            return
        length = dict((k.lower(), v) for k, v in scope["headers"]).get(b"content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        if declared is not None and declared > self.limit:
            if declared <= self.limit * self.drain_factor:
                await _drain(receive)
            await self._refuse(send, 413, "too_large", f"request body of {declared} bytes is over {self.limit} bytes")
            return
        if self.in_flight >= self.max_in_flight:
            if declared is not None:
                await _drain(receive)  # small (checked above): read, so the client sees the answer
            await self._refuse(send, 503, "busy", f"{self.max_in_flight} uploads in progress; retry shortly")
            return
        self.in_flight += 1
        slot = [True]  # held until the answer's last chunk is handed over, or the request ends otherwise
        try:
            await self._admit(scope, receive, send, slot)
        finally:
            self._release(slot)

    def _release(self, slot: list[bool]) -> None:
        if slot[0]:
            slot[0] = False
            self.in_flight -= 1

    async def _admit(self, scope: dict[str, Any], receive: Any, send: Any, slot: list[bool]) -> None:
        received, over, started = 0, False, False

        async def counted() -> dict[str, Any]:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                over = True  # the app sees a client gone; the 413 goes out below
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over and not started:
                return  # the app's own answer to the "disconnect" is replaced by the 413
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body" and not message.get("more_body"):
                # A closed-loop client sends its next upload as soon as this chunk arrives: freed before the send,
                # the slot is free for it (freed after, N clients against max_in_flight N met 503s, 4 in 300).
                self._release(slot)
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send, 413, "too_large", f"request body over the limit of {self.limit} bytes")

    async def _refuse(self, send: Any, status: int, code: str, detail: str) -> None:
        self.on_reject(code)
        headers = {"Retry-After": "1"} if status == 503 else None
        response = JSONResponse({"error": code, "detail": detail}, status, headers=headers)
        await response(scope={"type": "http"}, receive=None, send=send)  # type: ignore[arg-type]


async def _drain(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


class Engine:
    """What the endpoints share: the model, the batchers, the decode processes, the index, the metrics."""

    def __init__(self, served: ServedModel, settings: ServeSettings, index: Any, metrics: ServerMetrics) -> None:
        self.served, self.settings, self.index, self.metrics = served, settings, index, metrics
        self.model_pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.io_pool = ThreadPoolExecutor(2, thread_name_prefix="spool")
        self.decoder: DecodePool | None = None
        # the job's evaluation reader (with the server's decode policy), sent to the decode processes
        self.reader = served.ctx.reader([], decode_policy=settings.decode_policy)
        self.classifier = DynamicBatcher(served.classify, settings.batch, self.model_pool, metrics.observer("classify"))
        self.embedder = DynamicBatcher(served.embed, settings.batch, self.model_pool, metrics.observer("embed"))
        entries = getattr(index, "entries", None) or []
        self.path_root = os.path.commonpath([os.path.dirname(e.path) for e in entries]) if entries else ""

    def start(self) -> None:
        """Start the decode processes, and the batchers on the running loop."""
        self.decoder = DecodePool(self.settings.decode)
        self.classifier.start()
        self.embedder.start()

    async def stop(self) -> None:
        """Stop the batchers, the decode processes and the pools."""
        await self.classifier.stop()
        await self.embedder.stop()
        if self.decoder is not None:
            self.decoder.close()
        self.model_pool.shutdown(wait=False, cancel_futures=True)
        self.io_pool.shutdown(wait=False, cancel_futures=True)

    def reject(self, status: int, code: str, detail: str) -> ServeError:
        """Count a refused request and make its error."""
        self.metrics.rejected.labels(code).inc()
        return ServeError(status, code, detail)

    def shown_path(self, path: str) -> str:
        """A stored video's path as a client sees it: relative to the index's common folder, unless asked."""
        if self.settings.show_paths:
            return path
        if self.path_root in ("", os.sep):  # files from unrelated folders: their folder and name
            return os.path.join(*Path(path).parts[-2:])
        return os.path.relpath(path, self.path_root)

    async def read_clip(self, upload: UploadFile, request: Request) -> tuple[torch.Tensor, float]:
        """The upload as a clip, and the milliseconds spent checking, decoding and transforming it. When the
        client goes away first, its decode is stopped."""
        name = _safe_name(upload.filename)
        size = upload.size
        if size is not None and size > self.settings.max_upload_bytes:
            limit = self.settings.max_upload_bytes
            raise self.reject(413, "too_large", f"{name}: {size} bytes is over the limit of {limit} bytes")
        if size == 0:
            raise self.reject(400, "empty", f"{name}: the upload is empty")
        assert self.decoder is not None, "the server has not started"
        loop = asyncio.get_running_loop()
        suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(name).suffix)[:10] or ".bin"
        with tempfile.NamedTemporaryFile(suffix=suffix, prefix="vidbench-upload-") as tmp:
            await loop.run_in_executor(self.io_pool, _copy, upload, tmp)
            start = time.perf_counter()
            decode = asyncio.ensure_future(self.decoder.decode(self.reader, Path(tmp.name), name, self.settings.upload))
            gone = asyncio.ensure_future(_disconnected(request))
            await asyncio.wait({decode, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not decode.done():
                decode.cancel()  # kills the worker decoding it
                raise self.reject(499, "client_gone", f"{name}: the client went away")
            try:
                clip = decode.result()
            except UploadRefused as exc:
                raise self.reject(exc.status, exc.code, exc.detail) from None
        seconds = time.perf_counter() - start
        self.metrics.decode_seconds.observe(seconds)
        return clip, seconds * 1000

    async def run_model(self, batcher: DynamicBatcher, clip: torch.Tensor) -> torch.Tensor:
        """The model's output for one clip, batched with others; 503 when the model's queue is full."""
        try:
            return await batcher.submit(clip)
        except asyncio.QueueFull:
            raise self.reject(503, "busy", "the model's queue is full; retry shortly") from None


async def _disconnected(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(0.1)


def _safe_name(filename: str | None) -> str:
    """The upload's own file name, as printable text of at most 100 characters (it is echoed in errors)."""
    name = Path(filename or "upload").name
    return re.sub(r"[^\w.\- ]", "_", name)[:100] or "upload"


def _copy(upload: UploadFile, tmp: Any) -> None:
    upload.file.seek(0)
    shutil.copyfileobj(upload.file, tmp, 1 << 20)
    tmp.flush()


def _scrub_paths(value: Any) -> Any:
    """``value`` with every absolute path replaced by its last part (``/healthz`` shows no machine paths)."""
    if isinstance(value, dict):
        return {k: _scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_paths(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value


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
    app.add_middleware(
        Admission,
        limit=settings.max_upload_bytes + 64 * 1024,  # the file's limit plus room for the multipart framing
        max_in_flight=settings.max_in_flight,
        on_reject=lambda code: metrics.rejected.labels(code).inc(),
    )
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
    async def classify(
        request: Request, file: UploadFile = upload, k: int = Query(settings.default_k, ge=1, le=1000)
    ) -> dict:
        """Top-``k`` labels of the uploaded video, from the served artifact."""
        start = time.perf_counter()
        clip, decode_ms = await engine.read_clip(file, request)
        logits = await engine.run_model(engine.classifier, clip)
        labels = served.top_k(logits.unsqueeze(0), k)[0]
        total = (time.perf_counter() - start) * 1000
        job, optimization = served.slug, served.optimization
        return {"labels": labels, "job": job, "optimization": optimization, "decode_ms": decode_ms, "total_ms": total}

    @app.post("/v1/embed", response_model=EmbedResponse)
    async def embed(request: Request, file: UploadFile = upload) -> dict:
        """The uploaded video's embedding (PyTorch model of the served checkpoint)."""
        start = time.perf_counter()
        clip, decode_ms = await engine.read_clip(file, request)
        vector = (await engine.run_model(engine.embedder, clip)).float().tolist()
        total = (time.perf_counter() - start) * 1000
        return {"embedding": vector, "dim": len(vector), "job": served.slug, "decode_ms": decode_ms, "total_ms": total}

    @app.post("/v1/similar", response_model=SimilarResponse)
    async def similar(request: Request, file: UploadFile = upload, k: int = Query(10, ge=1, le=1000)) -> dict:
        """The ``k`` stored videos most similar (cosine) to the upload, from the loaded index."""
        if engine.index is None:
            raise engine.reject(503, "no_index", "this server has no index: start it with --index INDEX_DIR")
        start = time.perf_counter()
        clip, decode_ms = await engine.read_clip(file, request)
        vector = (await engine.run_model(engine.embedder, clip)).float().numpy()
        hits = engine.index.search(np.asarray(vector)[None], k)[0]
        total = (time.perf_counter() - start) * 1000
        neighbours = [{"path": engine.shown_path(h.path), "label": h.label, "score": h.score} for h in hits]
        kind, job = engine.index.info.kind, served.slug
        return {"neighbours": neighbours, "index_kind": kind, "job": job, "decode_ms": decode_ms, "total_ms": total}

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness and what is served: job, optimization, measured rows, batching, limits, index."""
        info = asdict(engine.index.info) if engine.index is not None else None
        limits = {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_in_flight": settings.max_in_flight,
            **asdict(settings.upload),
            "decode": asdict(settings.decode),
        }
        batching = asdict(settings.batch)
        policy = engine.reader.policy
        decoding = {"policy": policy.label, "short_side": policy.short_side, "threads": policy.threads,
                    "backend": engine.reader.backend}  # fmt: skip
        health = {
            "status": "ok", **served.describe(), "batching": batching, "decoding": decoding, "limits": limits,
            "index": info,
        }  # fmt: skip
        return health if settings.show_paths else _scrub_paths(health)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text: requests, latency histogram, batch sizes, model and decode time, rejections."""
        body, content_type = engine.metrics.render()
        return Response(body, media_type=content_type)

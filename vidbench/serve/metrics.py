"""Prometheus metrics of the server (its own registry, so two apps in one process do not clash)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
ENDPOINTS = ("/v1/classify", "/v1/embed", "/v1/similar", "/healthz", "/metrics", "/docs", "/openapi.json")


class ServerMetrics:
    """Request count and latency per endpoint, batch sizes and model time per batcher, decode time, rejections."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "vidbench_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "vidbench_request_latency_seconds",
            "Request latency (receive to response) by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "vidbench_batch_size", "Clips per model call", ["model"], buckets=BATCH_BUCKETS, registry=registry
        )
        self.model_seconds = Histogram(
            "vidbench_model_seconds",
            "Seconds per model call",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.decode_seconds = Histogram(
            "vidbench_decode_seconds",
            "Seconds to probe, decode and transform one upload",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rejected = Counter(
            "vidbench_rejected_uploads", "Uploads refused with a 4xx, by reason", ["reason"], registry=registry
        )

    def observer(self, model: str):
        """A batcher callback recording one model call's batch size and time."""

        def observe(size: int, seconds: float) -> None:
            self.batch_size.labels(model).observe(size)
            self.model_seconds.labels(model).observe(seconds)

        return observe

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request and times it, labelled by a known endpoint path."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

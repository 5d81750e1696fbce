"""Prometheus metrics: one registry per app (tests build many apps), served at GET /metrics.

HTTP requests are counted and timed by route template (never by raw path, which would let clients
mint label values); inference is counted and timed per model version, batch by batch.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "genexfer_http_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "genexfer_http_request_duration_seconds",
            "HTTP request latency, first byte in to last byte out.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inferences = Counter(
            "genexfer_inference_requests",
            "Inference requests per model version and outcome (ok, failed).",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.samples = Counter(
            "genexfer_inference_samples", "Samples inferred.", ["model", "version"], registry=r
        )
        self.batch_size = Histogram(
            "genexfer_batch_size",
            "Samples per ONNX Runtime call.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.shed = Counter(
            "genexfer_shed_requests",
            "Inference requests shed (503) at the bound on requests in flight.",
            registry=r,
        )
        self.rate_limited = Counter(
            "genexfer_rate_limited_requests",
            "Requests refused (429) for a key over its rate.",
            registry=r,
        )
        self.queue_time = Histogram(
            "genexfer_batch_queue_seconds",
            "Time a request waited in the batcher before its batch ran.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_time = Histogram(
            "genexfer_batch_compute_seconds",
            "ONNX Runtime time per batch.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loaded = Gauge(
            "genexfer_model_versions_loaded", "Model versions being served.", registry=r
        )
        self.load_errors = Gauge(
            "genexfer_model_load_errors", "Model folders that failed to load.", registry=r
        )


class MetricsMiddleware:
    """Pure ASGI middleware counting and timing every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)

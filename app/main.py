"""The application factory. Heavy things (engine, registry, ONNX sessions) are built in lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.orm import Session, sessionmaker

from app import __version__
from app.admission import Admission
from app.api import (
    audit,
    datasets,
    health,
    jobs,
    keys,
    kserve,
    models,
    openapi,
    predict,
    predictions,
    preprocess,
    ui,
)
from app.api import docs as docs_api
from app.api import metrics as metrics_api
from app.config import Settings, get_settings
from app.db import migrate
from app.db.repository import models as model_routes
from app.db.repository.models import Route
from app.db.session import make_engine, make_sessionmaker
from app.db.writer import PredictionWriter
from app.errors import install_error_handlers
from app.idempotency import Idempotency
from app.inference.backend import BackendFactory, ExplainerFactory, InferenceBackend
from app.inference.batcher import Batcher
from app.inference.registry import BatcherFactory, ModelRegistry
from app.inference.routing import EVERYONE
from app.jobs.executor import make_executor
from app.jobs.housekeeping import Housekeeper
from app.metrics import Metrics, MetricsMiddleware
from app.middleware import RequestContext
from app.ratelimit import make_limiter
from app.security import require
from contract.card import ModelCard

log = logging.getLogger(__name__)


def _default_factory(settings: Settings) -> BackendFactory:
    from app.inference.onnx import onnx_backend_factory  # onnxruntime loads only when serving

    return onnx_backend_factory(settings)


def _default_explainers(settings: Settings) -> ExplainerFactory:
    from app.inference.explain import onnx_explainer_factory

    return onnx_explainer_factory(settings)


def _route_source(factory: sessionmaker[Session]) -> Callable[[], dict[str, Route]]:
    """Model owners and aliases from the database, read at each registry scan."""

    def read() -> dict[str, Route]:
        with factory() as session:
            return model_routes.routes(session)

    return read


def _batcher_factory(settings: Settings, metrics: Metrics) -> BatcherFactory:
    def make(card: ModelCard, backend: InferenceBackend) -> Batcher:
        enabled, size, delay = settings.batch_policy(card.name)
        label = (card.name, str(card.version))
        return Batcher(
            backend,
            label=label,
            enabled=enabled,
            max_batch_size=size,
            max_delay_s=delay,
            metrics=metrics,
        )

    return make


# FastAPI's OpenTelemetry instrumentation, every part of it, when GENEXFER_FASTAPI_TELEMETRY is off
_NO_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def create_app(settings: Settings | None = None, backend: BackendFactory | None = None) -> FastAPI:
    """Build the app; `backend` replaces ONNX Runtime (tests pass a fake)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        if settings.auto_migrate:
            migrate.upgrade(engine)
        factory = make_sessionmaker(engine)
        registry = ModelRegistry(
            settings.models_dir,
            backend or _default_factory(settings),
            make_batcher=_batcher_factory(settings, metrics),
            keep_versions=settings.keep_versions,
            routes=_route_source(factory),
            explainers=_default_explainers(settings),
        )
        await asyncio.to_thread(registry.scan)
        watcher = None
        if settings.reload_interval_s > 0:
            watcher = asyncio.create_task(
                registry.watch(settings.reload_interval_s, settings.drain_timeout_s)
            )
        app.state.engine = engine
        app.state.sessionmaker = factory
        app.state.writer = PredictionWriter(app.state.sessionmaker)
        app.state.limiter = make_limiter(
            settings.rate_limit_per_s, settings.rate_limit_burst, settings.rate_limit_redis_url
        )
        app.state.registry = registry
        log.info(
            "serving %d model version(s) from %s: %s; %d broken",
            len(registry.models(viewer=EVERYONE)),
            settings.models_dir,
            "; ".join(
                f"{m.card.name}/{m.card.version} runs on {', '.join(m.backend.providers)}"
                for m in registry.models(viewer=EVERYONE)
            )
            or "none",
            len(registry.errors),
        )
        loop = asyncio.get_running_loop()
        rescans: set[asyncio.Task[None]] = set()

        def published() -> None:
            # a job of this process published a version: serve it now, not at the next scan
            def start() -> None:
                task = loop.create_task(registry.rescan(settings.drain_timeout_s))
                rescans.add(task)
                task.add_done_callback(rescans.discard)

            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to serve
                loop.call_soon_threadsafe(start)

        app.state.executor = make_executor(settings, app.state.sessionmaker, published)
        # an in-process executor's queue died with the last process: it re-takes every queued
        # job once; Celery's messages wait in Redis (lost ones are re-sent when stale)
        housekeeper = Housekeeper(
            factory,
            settings,
            app.state.executor.submit,
            resume_queued=settings.executor == "local",
        )
        app.state.housekeeper = housekeeper
        housekeeper.start()
        if settings.gc_freeze:
            # everything built so far (modules, app, models, sessions) lives as long as the
            # process: moved out of the collector's sight, a full collection no longer walks
            # its ~170,000 objects (~100 ms, a pause every request in flight waited out)
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            # a pass under way finishes before the engine goes
            await asyncio.to_thread(housekeeper.stop)
            if watcher is not None:
                watcher.cancel()
            app.state.executor.close()
            registry.close()
            await app.state.writer.close()
            if app.state.limiter is not None:
                await app.state.limiter.close()
            engine.dispose()

    app = FastAPI(
        title="GeneXfer",
        version=__version__,
        summary="Transfer learning for gene-expression data: embed, classify and regress profiles.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from app.api.docs, with packaged assets
        redoc_url=None,
        telemetry=None if settings.fastapi_telemetry else _NO_TELEMETRY,
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(Idempotency)  # inside RequestContext: the body-size limit applies first
    # outside Idempotency: a shed request costs nothing, not even reading its body
    app.add_middleware(
        Admission,
        max_inflight=settings.max_inflight_inference,
        retry_after_s=settings.retry_after_s,
        metrics=metrics,
    )
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        timeout_s=settings.request_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees 413s and 504s too
    # /v2 first: its infer route is the hottest, and routes are matched in order
    for router in (kserve.router, health.router, models.router, metrics_api.router):
        app.include_router(router)
    app.include_router(predict.router, dependencies=[Depends(require("predict"))])
    app.include_router(preprocess.router, dependencies=[Depends(require("predict"))])
    app.include_router(predictions.router, dependencies=[Depends(require("predict"))])
    app.include_router(datasets.router, dependencies=[Depends(require("train"))])
    app.include_router(jobs.router, dependencies=[Depends(require("train"))])
    app.include_router(keys.router, dependencies=[Depends(require("admin"))])
    app.include_router(audit.router, dependencies=[Depends(require("admin"))])
    docs_api.install(app)
    openapi.install(app)  # error bodies, every status a route may answer, the key scheme
    ui.install(app)  # the web app: pages, and fragments that check the key per route
    return app

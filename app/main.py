"""The application factory. Heavy things (engine, registry, ONNX sessions) are built in lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api import health, kserve, models, predict
from app.api import metrics as metrics_api
from app.config import Settings, get_settings
from app.db import migrate
from app.db.session import make_engine, make_sessionmaker
from app.errors import install_error_handlers
from app.inference.backend import BackendFactory, InferenceBackend
from app.inference.batcher import Batcher
from app.inference.card import ModelCard
from app.inference.registry import BatcherFactory, ModelRegistry
from app.metrics import Metrics, MetricsMiddleware
from app.middleware import RequestContext

log = logging.getLogger(__name__)


def _default_factory(settings: Settings) -> BackendFactory:
    from app.inference.onnx import onnx_backend_factory  # onnxruntime loads only when serving

    return onnx_backend_factory(settings)


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


def create_app(settings: Settings | None = None, backend: BackendFactory | None = None) -> FastAPI:
    """Build the app; `backend` replaces ONNX Runtime (tests pass a fake)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        if settings.auto_migrate:
            migrate.upgrade(engine)
        registry = ModelRegistry(
            settings.models_dir,
            backend or _default_factory(settings),
            make_batcher=_batcher_factory(settings, metrics),
            keep_versions=settings.keep_versions,
        )
        await asyncio.to_thread(registry.scan)
        watcher = None
        if settings.reload_interval_s > 0:
            watcher = asyncio.create_task(
                registry.watch(settings.reload_interval_s, settings.drain_timeout_s)
            )
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.registry = registry
        log.info(
            "serving %d model version(s) from %s; %d broken",
            len(registry.models()),
            settings.models_dir,
            len(registry.errors),
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            registry.close()
            engine.dispose()

    app = FastAPI(
        title="GeneXfer",
        version=__version__,
        summary="Transfer learning for gene-expression data: embed and classify profiles.",
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        timeout_s=settings.request_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees 413s and 504s too
    for router in (health.router, models.router, predict.router):
        app.include_router(router)
    for router in (kserve.router, metrics_api.router):
        app.include_router(router)
    return app

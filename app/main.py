"""The application factory. Heavy things (engine, registry, ONNX sessions) are built in lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api import health, models, predict, preprocess
from app.config import Settings, get_settings
from app.db import migrate
from app.db.session import make_engine, make_sessionmaker
from app.errors import install_error_handlers
from app.inference.backend import BackendFactory
from app.inference.registry import ModelRegistry
from app.middleware import RequestContext

log = logging.getLogger(__name__)


def _default_factory(settings: Settings) -> BackendFactory:
    from app.inference.onnx import onnx_backend_factory  # onnxruntime loads only when serving

    return onnx_backend_factory(
        settings.providers, settings.allow_cpu_fallback, settings.intra_op_threads
    )


def create_app(settings: Settings | None = None, backend: BackendFactory | None = None) -> FastAPI:
    """Build the app; `backend` replaces ONNX Runtime (tests pass a fake)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        if settings.auto_migrate:
            migrate.upgrade(engine)
        registry = ModelRegistry(settings.models_dir, backend or _default_factory(settings))
        registry.scan()
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
            registry.close()
            engine.dispose()

    app = FastAPI(
        title="GeneXfer",
        version=__version__,
        summary="Transfer learning for gene-expression data: embed and classify profiles.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    for router in (health.router, models.router, predict.router):
        app.include_router(router)
    app.include_router(preprocess.router)
    return app

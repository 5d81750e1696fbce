"""Liveness and readiness (open to probes: the models listed are the operator's; a tenant's
models are counted, not named)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from app.api.deps import EngineDep, RegistryDep, SettingsDep
from app.caller import ANONYMOUS
from app.db.session import ping
from app.inference.routing import EVERYONE

router = APIRouter(tags=["health"])
RETRY_AFTER_S = 5


class ModelReadiness(BaseModel):
    name: str
    version: int
    providers: list[str]
    requested_providers: list[str]


class Readiness(BaseModel):
    ready: bool
    database: str
    broker: str = Field(
        description="The job broker (Redis) with GENEXFER_EXECUTOR=celery: ok or unreachable "
        "(reported, not counted against readiness: jobs wait in the database's outbox and "
        "inference needs no broker); 'not used' with the in-process executor."
    )
    models: list[ModelReadiness]
    tenant_models: int = 0  # loaded versions of tenants' models (not named to a probe)
    model_errors: list[dict[str, str]]


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, models loaded, providers in use",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "Not ready; the body says why (with Retry-After).",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        }
    },
)
def readyz(engine: EngineDep, registry: RegistryDep, settings: SettingsDep) -> Any:
    try:
        ping(engine)
        database = "ok"
    except Exception as exc:  # readiness reports, it does not fail
        database = f"unreachable: {type(exc).__name__}"
    broker = _broker(settings.broker_url) if settings.executor == "celery" else "not used"
    models = [
        ModelReadiness(
            name=m.card.name,
            version=m.card.version,
            providers=m.backend.providers,
            requested_providers=m.backend.requested_providers,
        )
        for m in registry.models(viewer=ANONYMOUS)
    ]
    loaded = len(registry.models(viewer=EVERYONE))
    errors = [
        {"path": e.path, "error": e.error}
        for e in registry.errors
        if registry.route(Path(e.path).parent.name).owner is None
    ]
    body = Readiness(
        ready=database == "ok" and loaded > 0,
        database=database,
        broker=broker,
        models=models,
        tenant_models=loaded - len(models),
        model_errors=errors,
    )
    if body.ready:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), 503, headers={"Retry-After": str(RETRY_AFTER_S)})


def _broker(url: str) -> str:
    """Ping the broker (Redis) within a second."""
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
        return "ok"
    except (RedisError, OSError) as exc:
        return f"unreachable: {type(exc).__name__}"
    finally:
        client.close()

"""Liveness and readiness (open to probes: the models listed are the operator's; a tenant's
models are counted, not named)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.deps import EngineDep, RegistryDep
from app.caller import ANONYMOUS
from app.db.session import ping
from app.inference.routing import EVERYONE

router = APIRouter(tags=["health"])


class ModelReadiness(BaseModel):
    name: str
    version: int
    providers: list[str]
    requested_providers: list[str]


class Readiness(BaseModel):
    ready: bool
    database: str
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
    responses={503: {"model": Readiness, "description": "Not ready; the body says why."}},
)
def readyz(engine: EngineDep, registry: RegistryDep) -> Any:
    try:
        ping(engine)
        database = "ok"
    except Exception as exc:  # readiness reports, it does not fail
        database = f"unreachable: {type(exc).__name__}"
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
        models=models,
        tenant_models=loaded - len(models),
        model_errors=errors,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

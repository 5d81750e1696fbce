"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.api.deps import EngineDep, RegistryDep
from app.db.session import ping

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
        for m in registry.models()
    ]
    body = Readiness(
        ready=database == "ok" and bool(models),
        database=database,
        models=models,
        model_errors=[{"path": e.path, "error": e.error} for e in registry.errors],
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

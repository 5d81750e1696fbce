"""GET /metrics: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import MetricsDep, RegistryDep
from app.inference.routing import EVERYONE

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(m: MetricsDep, registry: RegistryDep) -> Response:
    m.loaded.set(len(registry.models(viewer=EVERYONE)))
    m.load_errors.set(len(registry.errors))
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

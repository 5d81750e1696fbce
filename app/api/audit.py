"""GET /v1/audit: who (key, tenant) created, changed or deleted datasets, jobs, models (names,
aliases, published versions) and keys, newest first (admin keys only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from app.api.deps import MAX_OFFSET, SessionDep
from app.db.repository import audit
from app.schemas.keys import AuditList, AuditRead

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditList, summary="The audit log, newest first")
def find_events(
    session: SessionDep,
    tenant: Annotated[
        str | None, Query(max_length=64, description="The actor's or the resource's tenant.")
    ] = None,
    action: Annotated[str | None, Query(max_length=32, examples=["job.create"])] = None,
    resource_type: Annotated[
        str | None, Query(max_length=16, description="dataset, job, model or key")
    ] = None,
    resource_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="ISO 8601 with a zone, e.g. 2026-11-29T00:00Z")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AuditList:
    rows = audit.find(
        session,
        tenant=tenant,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        limit=limit,
        offset=offset,
    )
    return AuditList(events=[AuditRead.model_validate(r) for r in rows])

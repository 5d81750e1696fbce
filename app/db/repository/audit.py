"""The audit log: one row per change to a dataset, job, model name or alias, or key.

Rows are added in the transaction of the change they describe, so there is never a change
without its row or a row without its change. Reading them is an admin's (GET /v1/audit).
Functions take the session first; they flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who made a change: a key (its id, tenant and a label such as its prefix and name), the
    CLI, or a job runner acting for the key that submitted the job."""

    label: str
    tenant: str | None = None
    api_key_id: uuid.UUID | None = None
    request_id: str | None = None


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    resource_type: str,
    resource_id: str,
    resource_tenant: str | None,
    **detail: Any,
) -> AuditEvent:
    """Add the row describing one change (in the change's own transaction)."""
    row = AuditEvent(
        tenant=actor.tenant,
        api_key_id=actor.api_key_id,
        actor=actor.label[:128],
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_tenant=resource_tenant,
        request_id=actor.request_id,
        detail=detail,
    )
    session.add(row)
    session.flush()
    return row


def find(
    session: Session,
    *,
    tenant: str | None,
    action: str | None,
    resource_type: str | None,
    resource_id: str | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> Sequence[AuditEvent]:
    """Events, newest first; `tenant` matches the actor's tenant or the resource's."""
    stmt = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id)
    if tenant is not None:
        stmt = stmt.where((AuditEvent.tenant == tenant) | (AuditEvent.resource_tenant == tenant))
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if resource_type is not None:
        stmt = stmt.where(AuditEvent.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(AuditEvent.resource_id == resource_id)
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    return session.scalars(stmt.limit(limit).offset(offset)).all()

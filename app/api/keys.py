"""/v1/keys: list, create, revoke and rotate API keys (admin keys only); each change is audited.

A key is refused from the request after its revocation on (keys are checked against the
database on every call). Idempotency-Key is not honoured here: the answer holds a plain key,
which must never be stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import MAX_OFFSET, CallerDep, RequestIdDep, SessionDep
from app.db.base import utcnow
from app.db.repository import keys as repo
from app.db.tables import ApiKey
from app.errors import Conflict, InvalidRequest, NotFound, documented
from app.schemas.keys import KeyCreate, KeyCreated, KeyList, KeyRead, KeyRotate
from app.security import create_key, key_state, revoke_key, rotate_key

router = APIRouter(prefix="/v1/keys", tags=["keys"])
NOT_FOUND = documented(e404="No such key")


def _read(row: ApiKey) -> KeyRead:
    return KeyRead(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        tenant=row.tenant,
        scopes=list(row.scopes),
        state=key_state(row),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        rotated_from=row.rotated_from,
    )


def _created(row: ApiKey, key: str) -> KeyCreated:
    return KeyCreated(**_read(row).model_dump(), key=key)


def _expiry(days: float | None) -> datetime | None:
    return None if days is None else utcnow() + timedelta(days=days)


def _get(session: SessionDep, key_id: uuid.UUID) -> ApiKey:
    row = repo.get(session, key_id)
    if row is None:
        raise NotFound(f"no API key {key_id}")
    return row


@router.get("", response_model=KeyList, summary="List API keys, newest first")
def list_keys(
    session: SessionDep,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> KeyList:
    rows = repo.listing(
        session, tenant=tenant, include_revoked=include_revoked, limit=limit, offset=offset
    )
    return KeyList(keys=[_read(r) for r in rows])


@router.post(
    "",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create a key (its plain value is in this answer only)",
    responses=documented(e422="Bad name, tenant, scopes or expiry"),
)
def create(
    body: KeyCreate, response: Response, session: SessionDep, caller: CallerDep, rid: RequestIdDep
) -> KeyCreated:
    try:
        row, key = create_key(
            session,
            name=body.name,
            scopes=list(body.scopes),
            tenant=body.tenant,
            expires_at=_expiry(body.expires_in_days),
            actor=caller.actor(rid),
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"/v1/keys/{row.id}"
    return _created(row, key)


@router.get("/{key_id}", response_model=KeyRead, summary="One key", responses=NOT_FOUND)
def get_key(key_id: uuid.UUID, session: SessionDep) -> KeyRead:
    return _read(_get(session, key_id))


@router.post(
    "/{key_id}/revoke",
    response_model=KeyRead,
    summary="Revoke a key: refused from the next request on",
    responses=NOT_FOUND,
)
def revoke(key_id: uuid.UUID, session: SessionDep, caller: CallerDep, rid: RequestIdDep) -> KeyRead:
    row = _get(session, key_id)
    revoke_key(session, row, actor=caller.actor(rid))
    return _read(row)


@router.post(
    "/{key_id}/rotate",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Replace a key by a new one (same name, tenant, scopes); the old one stops after "
    "grace_seconds",
    responses=documented(e404="No such key", e409="The key is revoked or expired"),
)
def rotate(
    key_id: uuid.UUID,
    body: KeyRotate,
    response: Response,
    session: SessionDep,
    caller: CallerDep,
    rid: RequestIdDep,
) -> KeyCreated:
    row = _get(session, key_id)
    try:
        new, key = rotate_key(
            session,
            row,
            actor=caller.actor(rid),
            expires_at=_expiry(body.expires_in_days),
            grace=timedelta(seconds=body.grace_seconds),
        )
    except ValueError as exc:
        raise Conflict(str(exc)) from exc
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = f"/v1/keys/{new.id}"
    return _created(new, key)

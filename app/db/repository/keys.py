"""Queries on API keys. Listing and changing keys is an admin's; they flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.db.tables import ApiKey


def by_prefix(session: Session, prefix: str) -> ApiKey | None:
    """The key whose public prefix is `prefix`, or None."""
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()


def get(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    """The key row, or None."""
    return session.get(ApiKey, key_id)


def listing(
    session: Session, *, tenant: str | None, include_revoked: bool, limit: int, offset: int
) -> Sequence[ApiKey]:
    """Keys, newest first: of one tenant or all, without the revoked ones unless asked."""
    stmt = select(ApiKey).order_by(ApiKey.created_at.desc()).limit(limit).offset(offset)
    if tenant is not None:
        stmt = stmt.where(ApiKey.tenant == tenant)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return session.scalars(stmt).all()


def revoke(session: Session, row: ApiKey, at: datetime) -> None:
    """Refuse the key from `at` on (now, or later for a rotated key's grace period)."""
    row.revoked_at = at
    session.flush()


def touch(session: Session, key_id: uuid.UUID, now: datetime, every: timedelta) -> None:
    """Record a use, unless one was recorded less than `every` ago (one write a minute, not a
    write a call)."""
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - every),
        )
        .values(last_used_at=now)
    )

"""Queries on Idempotency-Key records. Functions take the session first; they flush, never commit.

A key is claimed by inserting its row: the primary key makes concurrent duplicates fail at the
flush (IntegrityError), which the caller turns into "replay or wait".
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.tables import IdempotencyRecord


def purge_expired(session: Session, ttl: timedelta) -> None:
    """Delete records older than `ttl` (their stored answers may hold results)."""
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - ttl))


def claim(session: Session, scope_key: str, fingerprint: str) -> None:
    """Insert the key's record; IntegrityError if another request holds it."""
    session.add(IdempotencyRecord(scope_key=scope_key, request_sha256=fingerprint))
    session.flush()


def get(session: Session, scope_key: str) -> IdempotencyRecord:
    """The record of a claimed key."""
    stmt = select(IdempotencyRecord).where(IdempotencyRecord.scope_key == scope_key)
    return session.scalars(stmt).one()


def release(session: Session, scope_key: str) -> None:
    """Free the key (nothing was done, or we cannot tell): a retry runs again."""
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.scope_key == scope_key))


def store_answer(session: Session, scope_key: str, **answer: Any) -> None:
    """Keep the answer (status_code, headers, body) for replays."""
    where = IdempotencyRecord.scope_key == scope_key
    session.execute(update(IdempotencyRecord).where(where).values(**answer))

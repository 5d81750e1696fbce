"""Queries on API keys. Functions take the session first; they flush, never commit."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import ApiKey


def by_prefix(session: Session, prefix: str) -> ApiKey | None:
    """The key whose public prefix is `prefix`, or None."""
    return session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()

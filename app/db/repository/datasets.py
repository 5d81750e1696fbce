"""Queries on uploaded datasets. Functions take the session first; they flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import Dataset


def get(session: Session, dataset_id: uuid.UUID) -> Dataset | None:
    """The dataset, or None."""
    return session.get(Dataset, dataset_id)


def listing(session: Session, *, limit: int, offset: int) -> Sequence[Dataset]:
    """Datasets, newest first."""
    stmt = select(Dataset).order_by(Dataset.created_at.desc()).limit(limit).offset(offset)
    return session.scalars(stmt).all()


def delete(session: Session, row: Dataset) -> None:
    """Delete the row (the caller removes its file once this commits)."""
    session.delete(row)
    session.flush()

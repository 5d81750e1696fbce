"""Queries on uploaded datasets, within the caller's tenancy. They flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.repository.tenancy import Tenancy
from app.db.tables import Dataset


def get(session: Session, dataset_id: uuid.UUID, *, tenancy: Tenancy) -> Dataset | None:
    """The dataset, or None (also when it belongs to another tenant)."""
    stmt = select(Dataset).where(Dataset.id == dataset_id, tenancy.where(Dataset.tenant))
    return session.scalars(stmt).one_or_none()


def listing(session: Session, *, tenancy: Tenancy, limit: int, offset: int) -> Sequence[Dataset]:
    """The tenancy's datasets, newest first."""
    stmt = (
        select(Dataset)
        .where(tenancy.where(Dataset.tenant))
        .order_by(Dataset.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    return session.scalars(stmt).all()


def delete(session: Session, row: Dataset, *, tenancy: Tenancy) -> None:
    """Delete the row (the caller removes its file once this commits)."""
    if not tenancy.owns(row.tenant):
        raise LookupError(f"dataset {row.id} is not in this tenancy")
    session.delete(row)
    session.flush()


def stored_path(session: Session, dataset_id: uuid.UUID) -> str | None:
    """Where a job's dataset is stored (for its runner: the tenancy was checked at submission)."""
    return session.scalar(select(Dataset.path).where(Dataset.id == dataset_id))

"""Queries on prediction records, searched within the caller's tenancy. They flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ColumnElement, exists, func, insert, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.db.repository.tenancy import Tenancy
from app.db.tables import Prediction


def add_predictions(session: Session, rows: list[dict[str, Any]]) -> None:
    """Record many prediction calls in one multi-row INSERT (rows carry every column)."""
    if rows:
        session.execute(insert(Prediction), rows)


def find_entries(
    session: Session,
    *,
    tenancy: Tenancy,
    sample_id: str | None,
    model: str | None,
    version: int | None,
    limit: int,
    offset: int,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[Sequence[Prediction], int]:
    """The calls that hold entries `offset` to `offset + limit` of the search (an entry is one
    sample of a call; with `sample_id`, one per call), newest first, and how many entries of
    the first call come before `offset`. A running sum of each call's entries (a window
    function) finds them in the database, however far the offset."""
    entries = literal(1) if sample_id is not None else Prediction.n_samples
    where = [tenancy.where(Prediction.tenant)]
    if request_id is not None:
        where.append(Prediction.request_id == request_id)
    if since is not None:
        where.append(Prediction.created_at >= since)
    if until is not None:
        where.append(Prediction.created_at < until)
    if model is not None:
        where.append(Prediction.model_name == model)
    if version is not None:
        where.append(Prediction.model_version == version)
    if sample_id is not None:
        where.append(includes_sample(session, sample_id))
    order = (Prediction.created_at.desc(), Prediction.id.desc())
    running = (
        select(
            Prediction.id.label("id"),
            entries.label("entries"),
            func.sum(entries).over(order_by=order).label("upto"),
        )
        .where(*where)
        .subquery()
    )
    # entries are counted from 1 in `upto`; bigints, or PostgreSQL casts the bounds to integer
    first, end = literal(offset + 1, BigInteger), literal(offset + limit, BigInteger)
    rows = session.execute(
        select(Prediction, running.c.upto - running.c.entries)
        .join(running, running.c.id == Prediction.id)
        .where(running.c.upto >= first, running.c.upto - running.c.entries < end)
        .order_by(*order)
    ).all()
    skip = offset - int(rows[0][1]) if rows else 0
    return [row[0] for row in rows], skip


def includes_sample(session: Session, sample_id: str) -> ColumnElement[bool]:
    """`sample_id` is in a row's sample_ids (a JSON array), in the backend's own JSON terms.

    On PostgreSQL, ``sample_ids::jsonb ? id`` is answered from the GIN index of migration 0003.
    """
    if session.get_bind().dialect.name == "postgresql":
        jsonb = Prediction.sample_ids.cast(JSONB)
        contains: ColumnElement[bool] = jsonb.op("?", return_type=Boolean)(sample_id)
        return contains
    each = func.json_each(Prediction.sample_ids).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value == sample_id))

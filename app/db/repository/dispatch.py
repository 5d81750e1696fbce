"""The job row as its own outbox: how queued jobs reach the executor exactly once in effect.

A job is committed queued with no `dispatched_at`, in the transaction that creates it; the
housekeeper (`app.jobs.housekeeping`) hands such jobs to the executor and stamps them. A broker
that is away delays a job and never strands it (the next pass retries); a message sent twice is
harmless, because only one runner can claim a queued job (`app.db.repository.jobs.claim`).
Functions take the session first; they flush, never commit.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from app.db.base import db_now
from app.db.tables import Job


def to_dispatch(
    session: Session, *, stale_after: timedelta, every_queued: bool, limit: int = 100
) -> list[uuid.UUID]:
    """Queued jobs to hand to the executor, oldest first: those never handed over (or handed
    back), those handed over more than `stale_after` ago (their message may be lost), or, when
    `every_queued`, all of them (an in-process executor's messages died with its process)."""
    stmt = select(Job.id).where(_pending(session, stale_after, every_queued))
    return list(session.scalars(stmt.order_by(Job.created_at).limit(limit)).all())


def lock_for_dispatch(
    session: Session, job_id: uuid.UUID, *, stale_after: timedelta, every_queued: bool
) -> bool:
    """Lock the job's row for this dispatch if it still needs one; False if it does not (another
    dispatcher handed it over meanwhile) or another dispatcher holds it (PostgreSQL: skipped)."""
    stmt = (
        select(Job.id)
        .where(Job.id == job_id, _pending(session, stale_after, every_queued))
        .with_for_update(skip_locked=True)
    )
    return session.scalar(stmt) is not None


def mark_dispatched(session: Session, job_id: uuid.UUID) -> None:
    """Stamp the job as handed to the executor now (by the database's clock)."""
    session.execute(update(Job).where(Job.id == job_id).values(dispatched_at=db_now(session)))
    session.flush()


def _pending(session: Session, stale_after: timedelta, every_queued: bool) -> ColumnElement[bool]:
    queued = Job.status == "queued"
    if every_queued:
        return queued
    stale = db_now(session) - stale_after
    return and_(queued, or_(Job.dispatched_at.is_(None), Job.dispatched_at < stale))

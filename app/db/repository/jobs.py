"""Queries on jobs, and the lease protocol runners follow.

A runner claims a queued job with one conditional UPDATE (queued → running, with its name as the
lease owner), renews the lease while it works and finishes only while it still holds the lease.
A job whose lease runs out is re-queued (or failed after too many attempts) by `reap`, so a job
is never left 'running' after its worker died, and never runs twice at once. Lease times come
from the database's clock (`db_now`), never a runner's, so machines need not agree on the time.
How jobs reach the executor is in `app.db.repository.dispatch`. Queries that answer a caller
take its `Tenancy`; the runner's and housekeeper's do not (they act for the job, whose tenancy
was checked at submission).
Functions take the session first; they flush, never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session

from app.db.base import db_now, utcnow
from app.db.repository.tenancy import Tenancy
from app.db.tables import Job, ModelVersion
from contract.vocab import ACTIVE_JOB_STATUSES


def event(status: str, reason: str | None = None) -> dict[str, Any]:
    """One entry of a job's history."""
    return {"status": status, "at": utcnow().isoformat(), "reason": reason}


def get(session: Session, job_id: uuid.UUID, *, tenancy: Tenancy) -> Job | None:
    """The job, or None (also when it belongs to another tenant)."""
    stmt = select(Job).where(Job.id == job_id, tenancy.where(Job.tenant))
    return session.scalars(stmt).one_or_none()


def for_runner(session: Session, job_id: uuid.UUID) -> Job | None:
    """The job, for the runner or housekeeper acting on it."""
    return session.get(Job, job_id, populate_existing=True)


def listing(
    session: Session, *, tenancy: Tenancy, status: str | None, limit: int, offset: int
) -> Sequence[Job]:
    """The tenancy's jobs, newest first, optionally of one status."""
    stmt = (
        select(Job)
        .where(tenancy.where(Job.tenant))
        .order_by(Job.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return session.scalars(stmt).all()


def by_idempotency_key(session: Session, *, tenant: str, key: str, since: datetime) -> Job | None:
    """The tenant's job submitted under Idempotency-Key `key` since `since`, if any."""
    stmt = (
        select(Job)
        .where(Job.tenant == tenant, Job.idempotency_key == key, Job.created_at >= since)
        .order_by(Job.created_at)
        .limit(1)
    )
    return session.scalars(stmt).first()


def cancel(session: Session, job: Job, *, tenancy: Tenancy) -> None:
    """Cancel `job` now if it is still queued; else flag it for its runner (checked per batch)."""
    if not tenancy.owns(job.tenant):
        raise LookupError(f"job {job.id} is not in this tenancy")
    queued = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(
            status="cancelled",
            cancel_requested=True,
            finished_at=utcnow(),
            history=[*job.history, event("cancelled", "cancelled before it started")],
        )
    )
    if not queued.rowcount:  # type: ignore[attr-defined]
        session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True))
    session.flush()
    session.refresh(job)


def count_active_of(session: Session, tenant: str) -> int:
    """How many queued or running jobs `tenant` has."""
    stmt = (
        select(func.count())
        .select_from(Job)
        .where(Job.tenant == tenant, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    return int(session.scalar(stmt) or 0)


def count_active_using(session: Session, dataset_id: uuid.UUID) -> int:
    """Queued or running jobs that read the dataset."""
    stmt = (
        select(func.count())
        .select_from(Job)
        .where(Job.dataset_id == dataset_id, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    return int(session.scalar(stmt) or 0)


def claim(session: Session, job_id: uuid.UUID, owner: str, lease_seconds: float) -> Job | None:
    """Take a queued job for `owner`; None if someone else has it or it is no longer queued."""
    now = db_now(session)
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running",
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=Job.attempts + 1,
            started_at=now,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    job.history = [*job.history, event("running", f"attempt {job.attempts} on {owner}")]
    session.flush()
    return job


def renew(
    session: Session, job_id: uuid.UUID, owner: str, lease_seconds: float, **progress: Any
) -> bool | None:
    """Extend the lease and record progress; None if the lease is lost, else cancel_requested."""
    result = session.execute(
        update(Job)
        .where(*_held(job_id, owner))
        .values(lease_expires_at=db_now(session) + timedelta(seconds=lease_seconds), **progress)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def finish(
    session: Session,
    job_id: uuid.UUID,
    owner: str,
    status: str,
    *,
    reason: str | None = None,
    **values: Any,
) -> bool:
    """Record the outcome, only while `owner` still holds the lease."""
    return _end_lease(
        session,
        job_id,
        owner,
        event(status, reason),
        status=status,
        error=reason if status == "failed" else None,
        finished_at=utcnow(),
        **values,
    )


def release(session: Session, job_id: uuid.UUID, owner: str, reason: str) -> bool:
    """Put a job its runner had to drop (its process is stopping) back in the queue, uncounted."""
    return _end_lease(
        session,
        job_id,
        owner,
        event("queued", reason),
        status="queued",
        attempts=Job.attempts - 1,
        dispatched_at=None,  # its message is spent: the housekeeper hands it over again
    )


def _end_lease(
    session: Session, job_id: uuid.UUID, owner: str, event: dict[str, Any], **values: Any
) -> bool:
    """Clear `owner`'s lease, add `event` to the history and set `values`, only while `owner`
    still holds the lease of the running job; False if it does not."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.lease_owner != owner or job.status != "running":
        return False
    result = session.execute(
        update(Job)
        .where(*_held(job_id, owner))
        .values(
            lease_owner=None,
            lease_expires_at=None,
            history=[*job.history, event],
            **values,
        )
    )
    session.flush()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _held(job_id: uuid.UUID, owner: str | None) -> tuple[ColumnElement[bool], ...]:
    """The job is running and `owner` holds its lease."""
    return Job.id == job_id, Job.lease_owner == owner, Job.status == "running"


def reap(session: Session, max_attempts: int) -> list[uuid.UUID]:
    """Re-queue (or fail) running jobs whose lease expired; returns the ids to enqueue again."""
    now = db_now(session)
    lost = session.scalars(
        select(Job).where(Job.status == "running", Job.lease_expires_at < now)
    ).all()
    requeued = []
    for job in lost:
        who = job.lease_owner
        if job.cancel_requested:
            status, reason = "cancelled", f"cancelled; its runner {who} stopped answering"
        elif job.attempts < max_attempts:
            status, reason = "queued", f"runner {who} stopped renewing its lease; re-queued"
        else:
            status = "failed"
            reason = f"runner {who} was lost (lease expired) on attempt {job.attempts} of "
            reason += f"{max_attempts}; not retried"
        result = session.execute(
            update(Job)
            .where(*_held(job.id, who))
            .values(
                status=status,
                lease_owner=None,
                lease_expires_at=None,
                error=reason if status == "failed" else None,
                finished_at=None if status == "queued" else now,
                history=[*job.history, event(status, reason)],
                # a re-queued job needs a new message: back in the outbox
                dispatched_at=None if status == "queued" else job.dispatched_at,
            )
        )
        if result.rowcount and status == "queued":  # type: ignore[attr-defined]
            requeued.append(job.id)
    session.flush()
    return requeued


def expired(session: Session) -> Sequence[Job]:
    """Running jobs whose lease ran out (by the database's clock)."""
    now = db_now(session)
    stmt = select(Job).where(Job.status == "running", Job.lease_expires_at < now)
    return session.scalars(stmt).all()


def adopt(
    session: Session,
    job: Job,
    *,
    reason: str,
    metrics: dict[str, Any],
    result_model: str,
    result_version: int,
) -> bool:
    """Record a lost runner's job as succeeded with the version it had published (found by the
    housekeeper); False if the job is no longer running under the same lease."""
    result = session.execute(
        update(Job)
        .where(*_held(job.id, job.lease_owner))
        .values(
            status="succeeded",
            lease_owner=None,
            lease_expires_at=None,
            progress=1.0,
            metrics=metrics,
            result_model=result_model,
            result_version=result_version,
            finished_at=utcnow(),
            history=[*job.history, event("succeeded", reason)],
        )
    )
    session.flush()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_model_version(
    session: Session, *, job: Job, name: str, version: int, metrics: dict[str, Any]
) -> bool:
    """Note the version a job published; False (nothing added) if the job already has one."""
    recorded = select(ModelVersion.id).where(ModelVersion.job_id == job.id)
    if session.scalar(recorded) is not None:
        return False
    encoder = job.params["encoder"]
    session.add(
        ModelVersion(
            name=name,
            version=version,
            kind="regressor" if job.params["task"] == "regression" else "classifier",
            parent_name=encoder["name"],
            parent_version=encoder["version"],
            metrics=metrics,
            job_id=job.id,
            tenant=job.tenant,
        )
    )
    session.flush()
    return True

"""A retried job submission finds the job its first attempt created, whatever that attempt was
answered (a 5xx after the commit too), by its Idempotency-Key within the caller's tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.caller import Caller
from app.db.repository import jobs as repo
from app.db.tables import Job
from app.errors import KeyReused
from app.schemas.jobs import JobCreate


def submitted_before(
    session: Session, *, body: JobCreate, caller: Caller, idempotency_key: str, since: datetime
) -> Job | None:
    """The job an earlier request with this Idempotency-Key created (whatever it was answered:
    even a 5xx after its commit), or None; KeyReused if that request asked for another job."""
    assert caller.tenant is not None  # the route needs a key
    job = repo.by_idempotency_key(session, tenant=caller.tenant, key=idempotency_key, since=since)
    if job is None:
        return None
    asked = body.model_dump(mode="json")
    first = {**job.params, "encoder": dict(job.params["encoder"])}
    if asked["encoder"]["version"] is None:  # the first request's "latest", pinned then
        first["encoder"]["version"] = None
    if asked != first:
        raise KeyReused(
            f"this Idempotency-Key created job {job.id} with other parameters; use a new key"
        )
    return job

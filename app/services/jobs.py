"""Fine-tuning jobs as the API sees them: check and queue, read, list, cancel, in the caller's
tenancy.

The lease protocol that runners follow is in `app.db.repository.jobs`; how a queued job reaches
the executor (the job row as its own outbox) in `app.db.repository.dispatch`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.caller import Caller
from app.db import repository
from app.db.repository import audit
from app.db.repository import jobs as repo
from app.db.repository.audit import Actor
from app.db.repository.tenancy import Tenancy
from app.db.tables import Dataset, Job
from app.errors import Conflict, InvalidRequest, NotFound, TooManyRequests
from app.inference.registry import ModelRegistry
from app.schemas.jobs import JobCreate
from app.services import datasets, models
from contract.card import ModelKind
from contract.vocab import FINAL_JOB_STATUSES, Task


def create(
    session: Session,
    *,
    body: JobCreate,
    registry: ModelRegistry,
    caller: Caller,
    request_id: str | None,
    idempotency_key: str | None,
) -> Job:
    """Check the request against the dataset, encoder and output name, and queue the job (not
    yet dispatched: the housekeeper hands it to the executor once this commits)."""
    dataset = datasets.get(session, body.dataset_id, tenancy=caller.tenancy)
    encoder = registry.get(body.encoder.name, body.encoder.version, viewer=caller)
    if encoder.card.kind is not ModelKind.encoder:
        raise InvalidRequest(f"{encoder.card.name} is a {encoder.card.kind}, not an encoder")
    if body.label_column not in dataset.label_counts:
        raise InvalidRequest(
            f"dataset {dataset.id} has no label column {body.label_column!r}; "
            f"it has {sorted(dataset.label_counts)}"
        )
    if body.task == "regression":
        _check_numeric(dataset.label_counts[body.label_column], body.label_column)
    check_size(dataset, body.label_column, body.task)
    params = body.model_dump(mode="json")
    params["encoder"]["version"] = encoder.card.version  # pin "latest" at submission
    actor = caller.actor(request_id)
    models.reserve_for_job(
        session, name=body.output_name, actor=actor, admin=caller.admin, registry=registry
    )
    job = Job(
        status="queued",
        dataset_id=dataset.id,
        params=params,
        history=[repo.event("queued")],
        progress=0.0,
        metrics={},
        attempts=0,
        cancel_requested=False,
        api_key_id=caller.key_id,
        idempotency_key=idempotency_key,
        tenant=caller.tenant,
    )
    repository.add(session, job)
    _audit(session, actor, "job.create", job, output_name=body.output_name)
    return job


MIN_SAMPLES = 2  # per class (classification), in all (regression): fewer cannot be fitted


def check_size(dataset: Dataset, column: str, task: Task) -> None:
    """Refuse, with the counts, a dataset too small for the job: fewer than 2 classes, a class
    with fewer than 2 samples, or (regression) fewer than 2 samples; else it fails in the runner."""
    counts = dataset.label_counts[column]
    if task == "regression":
        n = sum(counts.values())
        if n < MIN_SAMPLES:
            raise InvalidRequest(
                f"regression needs at least {MIN_SAMPLES} samples; dataset {dataset.id} has {n}",
                n_samples=n,
            )
        return
    if len(counts) < 2:
        raise InvalidRequest(
            f"classification needs at least 2 classes; label column {column!r} of dataset "
            f"{dataset.id} has {len(counts)}: {counts}",
            label_counts=counts,
        )
    small = {label: n for label, n in sorted(counts.items()) if n < MIN_SAMPLES}
    if small:
        raise InvalidRequest(
            f"every class needs at least {MIN_SAMPLES} samples; in label column {column!r} of "
            f"dataset {dataset.id}, {len(small)} class(es) have fewer: {small} (all counts: "
            f"{dict(sorted(counts.items()))})",
            label_counts=counts,
        )


def _check_numeric(counts: dict[str, int], column: str) -> None:
    """A regression target must be a finite number in every sample."""
    bad = []
    for value in counts:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            bad.append(value)
    if bad:
        n = sum(counts[v] for v in bad)
        raise InvalidRequest(
            f"regression needs a number in label column {column!r} for every sample; "
            f"{n} samples have {sorted(bad)[:20]}"
        )


QUOTA_RETRY_S = 30.0  # a job takes minutes: sooner would only be refused again


def check_quota(session: Session, *, caller: Caller, limit: int) -> None:
    """TooManyRequests while the caller's tenant has `limit` queued or running jobs (0: none)."""
    if limit <= 0 or caller.tenant is None:
        return
    active = repo.count_active_of(session, caller.tenant)
    if active >= limit:
        raise TooManyRequests(
            f"tenant {caller.tenant!r} has {active} queued or running jobs, its quota is {limit}; "
            "submit again when one has finished (or cancel one)",
            retry_after_s=QUOTA_RETRY_S,
            active_jobs=active,
            quota=limit,
        )


def get(session: Session, job_id: uuid.UUID, *, tenancy: Tenancy) -> Job:
    """The job, or NotFound (also for another tenant's: existence does not leak)."""
    job = repo.get(session, job_id, tenancy=tenancy)
    if job is None:
        raise NotFound(f"no fine-tuning job {job_id}")
    return job


def listing(
    session: Session, *, tenancy: Tenancy, status: str | None, limit: int, offset: int
) -> Sequence[Job]:
    """The tenancy's jobs, newest first, optionally of one status."""
    return repo.listing(session, tenancy=tenancy, status=status, limit=limit, offset=offset)


def cancel(session: Session, job_id: uuid.UUID, *, tenancy: Tenancy, actor: Actor) -> Job:
    """Cancel a queued job now; ask a running one to stop (its runner checks every batch)."""
    job = get(session, job_id, tenancy=tenancy)
    if job.status in FINAL_JOB_STATUSES:
        raise Conflict(f"job {job_id} is already {job.status}")
    repo.cancel(session, job, tenancy=tenancy)
    _audit(session, actor, "job.cancel", job, status=job.status)
    return job


def _audit(session: Session, actor: Actor, action: str, job: Job, **detail: object) -> None:
    """The job's audit row, in the change's transaction."""
    audit.record(
        session,
        actor,
        action,
        resource_type="job",
        resource_id=str(job.id),
        resource_tenant=job.tenant,
        **detail,
    )

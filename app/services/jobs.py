"""Fine-tuning jobs as the API sees them: check and queue, read, list, cancel.

The lease protocol that runners follow is in `app.db.repository.jobs`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.db import repository
from app.db.repository import jobs as repo
from app.db.tables import Job
from app.errors import Conflict, InvalidRequest, NotFound
from app.inference.registry import ModelRegistry
from app.schemas.jobs import JobCreate
from app.services import datasets
from contract.card import ModelKind
from contract.vocab import FINAL_JOB_STATUSES


def create(
    session: Session,
    *,
    body: JobCreate,
    registry: ModelRegistry,
    api_key_id: uuid.UUID | None,
    idempotency_key: str | None,
) -> Job:
    """Check the request against the dataset and encoder, and queue the job."""
    dataset = datasets.get(session, body.dataset_id)
    encoder = registry.get(body.encoder.name, body.encoder.version)
    if encoder.card.kind is not ModelKind.encoder:
        raise InvalidRequest(f"{encoder.card.name} is a {encoder.card.kind}, not an encoder")
    if body.label_column not in dataset.label_counts:
        raise InvalidRequest(
            f"dataset {dataset.id} has no label column {body.label_column!r}; "
            f"it has {sorted(dataset.label_counts)}"
        )
    if body.task == "regression":
        _check_numeric(dataset.label_counts[body.label_column], body.label_column)
    params = body.model_dump(mode="json")
    params["encoder"]["version"] = encoder.card.version  # pin "latest" at submission
    job = Job(
        status="queued",
        dataset_id=dataset.id,
        params=params,
        history=[repo.event("queued")],
        progress=0.0,
        metrics={},
        attempts=0,
        cancel_requested=False,
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
    )
    return repository.add(session, job)


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


def get(session: Session, job_id: uuid.UUID) -> Job:
    """The job, or NotFound."""
    job = repo.get(session, job_id)
    if job is None:
        raise NotFound(f"no fine-tuning job {job_id}")
    return job


def listing(session: Session, *, status: str | None, limit: int, offset: int) -> Sequence[Job]:
    """Jobs, newest first, optionally of one status."""
    return repo.listing(session, status=status, limit=limit, offset=offset)


def cancel(session: Session, job_id: uuid.UUID) -> Job:
    """Cancel a queued job now; ask a running one to stop (its runner checks every batch)."""
    job = get(session, job_id)
    if job.status in FINAL_JOB_STATUSES:
        raise Conflict(f"job {job_id} is already {job.status}")
    repo.cancel(session, job)
    return job

"""Publication keyed by the job: one job leaves at most one version, and that version on record.

The training side writes the job's id into the card of the version it publishes
(`ModelCard.job`) and never publishes a second version for one job
(`training.export.store.publish`). So a version whose card names a job is that job's, whatever
happened after it was published: if the runner died, or the database was away as it finished,
before the outcome was written, the next attempt (`app.jobs.tasks.run_job`) or the housekeeper
(`adopt_if_published`) finds the version here and records it, instead of training again.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db.repository import audit, jobs
from app.db.repository.audit import Actor
from app.db.tables import Job
from contract.card import ModelCard

log = logging.getLogger(__name__)


def find_published(models_dir: Path, name: str, job_id: uuid.UUID) -> ModelCard | None:
    """The card of the version of `name` that job `job_id` published, if any."""
    folder = models_dir / name
    if not folder.is_dir():
        return None
    for version in sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()):
        with contextlib.suppress(OSError, ValueError):  # not (yet) a readable version
            card = ModelCard.read(folder / str(version))
            if card.job == str(job_id):
                return card
    return None


def card_metrics(card: ModelCard) -> dict[str, Any]:
    """The job's metrics as the card has them (the held-out scores and their count)."""
    metrics: dict[str, Any] = {"test": {m.name: m.value for m in card.metrics if m.split == "test"}}
    if card.training_data is not None:
        metrics["n_test"] = len(card.training_data.heldout_sample_ids)
    return metrics


def job_actor(job: Job) -> Actor:
    """A runner acts for the key that submitted the job, in its tenant."""
    return Actor(f"job {job.id}", job.tenant, job.api_key_id)


def record(
    session: Session, job: Job, *, name: str, version: int, metrics: dict[str, Any], how: str
) -> None:
    """Note the version the job published, and its audit row (once per job)."""
    if jobs.record_model_version(session, job=job, name=name, version=version, metrics=metrics):
        audit.record(
            session,
            job_actor(job),
            "model.publish",
            resource_type="model",
            resource_id=name,
            resource_tenant=job.tenant,
            version=version,
            job=str(job.id),
            how=how,
        )


def adopt_if_published(session: Session, job: Job, models_dir: Path) -> bool:
    """Record a lost runner's job as succeeded if its version was published; True if so."""
    name = job.params.get("output_name")
    card = find_published(models_dir, name, job.id) if isinstance(name, str) else None
    if card is None:
        return False
    scores = card_metrics(card)
    metrics = {**scores, "curve": (job.metrics or {}).get("curve", [])}
    reason = (
        f"runner {job.lease_owner} was lost after publishing {card.name} version "
        f"{card.version}; recorded from its card"
    )
    adopted = jobs.adopt(
        session,
        job,
        reason=reason,
        metrics=metrics,
        result_model=card.name,
        result_version=card.version,
    )
    if adopted:
        log.warning("job %s: %s", job.id, reason)
        record(session, job, name=card.name, version=card.version, metrics=scores, how=reason)
    return adopted

"""Fine-tuning jobs as the API sees them: check and queue, read, list, cancel, in the caller's
tenancy.

The lease protocol that runners follow is in `app.db.repository.jobs`; how a queued job reaches
the executor (the job row as its own outbox) in `app.db.repository.dispatch`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from app.caller import Caller
from app.codecs.datasets import load_npz
from app.db import repository
from app.db.repository import audit
from app.db.repository import jobs as repo
from app.db.repository.audit import Actor
from app.db.repository.tenancy import Tenancy
from app.db.tables import Dataset, Job
from app.errors import Conflict, InvalidRequest, NotFound, TooManyRequests, from_contract
from app.inference.registry import ModelRegistry
from app.schemas.jobs import JobCreate
from app.services import datasets, models
from contract import transforms as scales
from contract.card import ModelCard, ModelKind
from contract.errors import DataError
from contract.vocab import FINAL_JOB_STATUSES, MISSING_LABELS, Task, parse_candidate


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
    _check_modalities(session, body, caller)
    if body.tasks is not None:
        _check_tasks(body, dataset)
    else:
        if body.label_column is None:
            raise InvalidRequest("give label_column (one task) or tasks (several)")
        if body.label_column not in dataset.label_counts:
            raise InvalidRequest(
                f"dataset {dataset.id} has no label column {body.label_column!r}; "
                f"it has {sorted(dataset.label_counts)}"
            )
        counts = labelled(dataset.label_counts[body.label_column])
        if body.task == "regression":
            _check_numeric(counts, body.label_column)
        check_size(dataset, body.label_column, counts, body.task)
    _check_methods(body, dataset.label_counts)
    _check_scale(Path(dataset.path), encoder.card)
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


def labelled(counts: dict[str, int]) -> dict[str, int]:
    """A label column's counts without the rows that have no label (they train unlabelled)."""
    return {v: n for v, n in counts.items() if v.strip() not in MISSING_LABELS}


def _check_tasks(body: JobCreate, dataset: Dataset) -> None:
    """A multi-task job: its columns are the dataset's (422 naming those that are not), each
    once, each big enough for its kind, with a named strategy and no single-task options."""
    assert body.tasks is not None
    if body.label_column is not None:
        raise InvalidRequest("label_column and tasks exclude each other: name every task in tasks")
    columns = [t.column for t in body.tasks]
    missing = [c for c in columns if c not in dataset.label_counts]
    if missing:
        raise InvalidRequest(
            f"dataset {dataset.id} has no label column {', '.join(map(repr, missing))}; it has "
            f"{sorted(dataset.label_counts)}",
            missing_columns=missing,
            label_columns=sorted(dataset.label_counts),
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InvalidRequest(f"each label column may be one task only; repeated: {repeated}")
    if body.strategy == "auto":
        raise InvalidRequest(
            "the automatic choice is single-task: a multi-task job needs a named strategy "
            "(frozen, partial, gradual or full)"
        )
    if body.semi_supervised.method != "none" or body.tune is not None:
        raise InvalidRequest(
            "semi-supervision and tune are single-task: a multi-task job masks each task's "
            "missing labels instead"
        )
    for t in body.tasks:
        counts = labelled(dataset.label_counts[t.column])
        if t.kind == "regression":
            _check_numeric(counts, t.column)
        check_size(dataset, t.column, counts, t.kind)


def _check_methods(body: JobCreate, columns: dict[str, dict[str, int]]) -> None:
    """The strategy, candidates and methods fit together and name what the dataset has."""
    if body.candidates is not None:
        if body.strategy != "auto":
            raise InvalidRequest(
                f"candidates are compared by strategy 'auto'; strategy {body.strategy!r} "
                "publishes itself (leave candidates out, or ask for auto)"
            )
        for name in body.candidates:
            try:
                parse_candidate(name, body.task)
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from exc
    if body.strategy == "auto" and body.adaptation.method != "none":
        raise InvalidRequest(
            "with strategy 'auto' adaptation is a candidate: name it in candidates (e.g. "
            "'full+dann'), or name one strategy; adaptation.method must be 'none'"
        )
    if body.strategy == "auto" and body.semi_supervised.method != "none":
        raise InvalidRequest(
            "with strategy 'auto' semi-supervision is a candidate: name it in candidates (e.g. "
            "'frozen+pseudo_label'), or name one strategy; semi_supervised.method must be 'none'"
        )
    if body.strategy != "auto":
        # the named strategy with its methods must be one valid candidate
        parts = [body.strategy, body.adaptation.method, body.semi_supervised.method]
        try:
            parse_candidate("+".join(p for p in parts if p != "none"), body.task)
        except ValueError as exc:
            raise InvalidRequest(str(exc).replace("candidate", "strategy", 1)) from exc
    column = body.adaptation.domain_column
    if column is not None and column not in columns:
        raise InvalidRequest(
            f"adaptation.domain_column {column!r} is not a label column of the dataset; it has "
            f"{sorted(columns)}"
        )


def _check_scale(path: Path, card: ModelCard) -> None:
    """The dataset's values are on a scale the encoder takes (directly or by its input
    transforms), as classify would check them; refused now, not in the worker."""
    values = load_npz(path).X
    try:
        scales.choose(values, card.input_scale, card.input_transforms)
    except DataError as exc:
        raise from_contract(exc) from exc


# the inner cross-validation's least: 2 folds of a class (classification), 2 folds of 2
# samples (regression); fewer cannot be fitted and scored
MIN_SAMPLES = 2
MIN_REGRESSION_SAMPLES = 4


def check_size(dataset: Dataset, column: str, counts: dict[str, int], task: Task) -> None:
    """Refuse, with the counts, a dataset too small for the job: fewer than 2 classes, a class
    with fewer than 2 labelled samples, or (regression) fewer than 4; else it fails in the
    runner. `counts` are the column's labelled rows (rows without a label train unlabelled)."""
    if task == "regression":
        n = sum(counts.values())
        if n < MIN_REGRESSION_SAMPLES:
            raise InvalidRequest(
                f"regression needs at least {MIN_REGRESSION_SAMPLES} labelled samples; dataset "
                f"{dataset.id} has {n}",
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


def _check_modalities(session: Session, body: JobCreate, caller: Caller) -> None:
    """A multi-omics job: each modality's dataset is the caller's; what it cannot do, refused."""
    if body.modalities is None:
        return
    for dataset_id in body.modalities.values():
        datasets.get(session, dataset_id, tenancy=caller.tenancy)  # 404 if not the caller's
    unsupported = [
        what
        for what, given in (
            ("task regression", body.task != "classification"),
            ("tune", body.tune is not None),
            ("candidates", body.candidates is not None),
            ("adaptation", body.adaptation.method != "none"),
            ("semi_supervised", body.semi_supervised.method != "none"),
            ("tasks", body.tasks is not None),
        )
        if given
    ]
    if unsupported:
        raise InvalidRequest(
            f"a multi-omics job (modalities) takes no {', '.join(unsupported)}: it trains a "
            "classifier with a named strategy (auto: frozen)"
        )

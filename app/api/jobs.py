"""/v1/finetune-jobs: submit, watch and cancel fine-tuning, in the caller's tenant."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import (
    MAX_OFFSET,
    CallerDep,
    ExecutorDep,
    HousekeeperDep,
    RegistryDep,
    RequestIdDep,
    SessionDep,
    SettingsDep,
)
from app.audit import idempotency_key_var
from app.db.base import utcnow
from app.errors import documented
from app.schemas.jobs import JobCreate, JobList, JobRead
from app.services import jobs, resubmit
from contract.vocab import JobStatus

router = APIRouter(prefix="/v1/finetune-jobs", tags=["jobs"])
NOT_FOUND = documented(e404="No such job")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRead,
    summary="Queue a fine-tuning job",
    responses=documented(
        e403="The output name belongs to another tenant (or to the operator)",
        e404="No such dataset or encoder",
        e422="Bad parameters, the label column is not in the dataset, or it is too small",
        e429="The tenant is at its quota of queued and running jobs (Retry-After)",
        e503="Jobs cannot run here (no training extra) or the database is away (Retry-After)",
    ),
)
def create_job(
    body: JobCreate,
    response: Response,
    session: SessionDep,
    caller: CallerDep,
    registry: RegistryDep,
    executor: ExecutorDep,
    housekeeper: HousekeeperDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> JobRead:
    executor.check_available()
    key = idempotency_key_var.get()
    job = None
    if key is not None:  # a retry finds its first job, however the first attempt was answered
        since = utcnow() - timedelta(hours=settings.idempotency_ttl_hours)
        job = resubmit.submitted_before(
            session, body=body, caller=caller, idempotency_key=key, since=since
        )
    if job is None:
        jobs.check_quota(session, caller=caller, limit=settings.max_active_jobs_per_tenant)
        job = jobs.create(
            session,
            body=body,
            registry=registry,
            caller=caller,
            request_id=request_id,
            idempotency_key=key,
        )
        # the job commits queued and not yet dispatched: its own outbox entry, in one
        # transaction; the housekeeper hands it to the executor (at once, being woken)
        session.commit()
        housekeeper.wake()
    response.headers["Location"] = f"/v1/finetune-jobs/{job.id}"
    return JobRead.model_validate(job)


@router.get("", response_model=JobList, summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    caller: CallerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> JobList:
    rows = jobs.listing(session, tenancy=caller.tenancy, status=status, limit=limit, offset=offset)
    return JobList(jobs=[JobRead.model_validate(r) for r in rows])


@router.get("/{job_id}", response_model=JobRead, summary="One job", responses=NOT_FOUND)
def get_job(job_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> JobRead:
    return JobRead.model_validate(jobs.get(session, job_id, tenancy=caller.tenancy))


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel a job (a running one stops within seconds)",
    responses=documented(e404="No such job", e409="The job already finished"),
)
def cancel_job(
    job_id: uuid.UUID, session: SessionDep, caller: CallerDep, request_id: RequestIdDep
) -> JobRead:
    job = jobs.cancel(session, job_id, tenancy=caller.tenancy, actor=caller.actor(request_id))
    return JobRead.model_validate(job)

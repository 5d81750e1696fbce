"""/v1/finetune-jobs: submit, watch and cancel fine-tuning."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.api.deps import ExecutorDep, RegistryDep, SessionDep
from app.audit import idempotency_key_var
from app.errors import documented
from app.schemas.jobs import JobCreate, JobList, JobRead
from app.security import current_key_id
from app.services import jobs
from contract.vocab import JobStatus

router = APIRouter(prefix="/v1/finetune-jobs", tags=["jobs"])
NOT_FOUND = documented(e404="No such job")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRead,
    summary="Queue a fine-tuning job",
    responses=documented(
        e404="No such dataset or encoder",
        e422="Bad parameters, or the label column is not in the dataset",
        e503="Jobs cannot run here (no training extra) or the database is away",
    ),
)
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    session: SessionDep,
    registry: RegistryDep,
    executor: ExecutorDep,
) -> JobRead:
    executor.check_available()
    job = jobs.create(
        session,
        body=body,
        registry=registry,
        api_key_id=current_key_id(request),
        idempotency_key=idempotency_key_var.get(),
    )
    # enqueue only after the row is committed, so the runner finds it
    session.commit()
    executor.submit(job.id)
    response.headers["Location"] = f"/v1/finetune-jobs/{job.id}"
    return JobRead.model_validate(job)


@router.get("", response_model=JobList, summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    rows = jobs.listing(session, status=status, limit=limit, offset=offset)
    return JobList(jobs=[JobRead.model_validate(r) for r in rows])


@router.get("/{job_id}", response_model=JobRead, summary="One job", responses=NOT_FOUND)
def get_job(job_id: uuid.UUID, session: SessionDep) -> JobRead:
    return JobRead.model_validate(jobs.get(session, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel a job (a running one stops within seconds)",
    responses=documented(e404="No such job", e409="The job already finished"),
)
def cancel_job(job_id: uuid.UUID, session: SessionDep) -> JobRead:
    return JobRead.model_validate(jobs.cancel(session, job_id))

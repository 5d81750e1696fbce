"""POST/GET/DELETE /v1/datasets: labelled target data for fine-tuning, in the caller's tenant."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from pydantic import AfterValidator
from starlette.concurrency import run_in_threadpool

from app.api.deps import MAX_OFFSET, CallerDep, RegistryDep, RequestIdDep, SessionDep, SettingsDep
from app.errors import PayloadTooLarge, documented
from app.schemas.jobs import DatasetList, DatasetRead
from app.schemas.text import no_nul_opt
from app.services import datasets
from contract.card import sha256_of

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


async def _read(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename} exceeds {limit} bytes", max_bytes=limit)
    return data


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    summary="Upload a labelled dataset (CSV/TSV, Parquet, h5ad; labels inline or separate)",
    responses=documented(e413="File too large", e422="Unreadable file or bad values (named)"),
)
async def upload(
    response: Response,
    session: SessionDep,
    caller: CallerDep,
    request_id: RequestIdDep,
    registry: RegistryDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="Samples as rows, genes as columns.")],
    name: Annotated[str | None, Form(max_length=128), AfterValidator(no_nul_opt)] = None,
    format: Annotated[
        str | None, Form(description="csv, tsv, parquet or h5ad"), AfterValidator(no_nul_opt)
    ] = None,
    label_columns: Annotated[
        str | None,
        Form(description="Comma-separated label columns (default: non-numeric ones)"),
        AfterValidator(no_nul_opt),
    ] = None,
    labels: Annotated[UploadFile | None, File(description="Table: sample id, labels")] = None,
) -> DatasetRead:
    data = await _read(file, settings.max_dataset_bytes)
    label_data = await _read(labels, settings.max_dataset_bytes) if labels else None
    parsed, fmt = await run_in_threadpool(
        datasets.parse_upload,
        data=data,
        filename=file.filename or "upload",
        fmt=format,
        label_columns=[c.strip() for c in label_columns.split(",")] if label_columns else None,
        labels=label_data,
        labels_filename=labels.filename if labels else None,
        max_values=settings.max_dataset_bytes,
    )
    row = await run_in_threadpool(
        datasets.store,
        session,
        parsed=parsed,
        name=name or file.filename or "dataset",
        fmt=fmt,
        sha256=sha256_of(data, label_data or b""),
        data_dir=settings.data_dir,
        registry=registry,
        viewer=caller,
        actor=caller.actor(request_id),
    )
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    return DatasetRead.model_validate(row)


@router.get("", response_model=DatasetList, summary="List datasets, newest first")
def list_datasets(
    session: SessionDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DatasetList:
    rows = datasets.listing(session, tenancy=caller.tenancy, limit=limit, offset=offset)
    return DatasetList(datasets=[DatasetRead.model_validate(r) for r in rows])


@router.get(
    "/{dataset_id}",
    response_model=DatasetRead,
    summary="One dataset",
    responses=documented(e404="No such dataset"),
)
def get_dataset(dataset_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> DatasetRead:
    return DatasetRead.model_validate(datasets.get(session, dataset_id, tenancy=caller.tenancy))


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a dataset (refused while a queued or running job uses it)",
    responses=documented(e404="No such dataset", e409="A job uses it"),
)
def delete_dataset(
    dataset_id: uuid.UUID, session: SessionDep, caller: CallerDep, request_id: RequestIdDep
) -> Response:
    datasets.delete(session, dataset_id, tenancy=caller.tenancy, actor=caller.actor(request_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

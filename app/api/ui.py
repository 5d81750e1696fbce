"""/ui: the web app, served by the API.

Pages are server-rendered (Jinja2) and hold no data. Whatever needs a key arrives as htmx
fragments from /ui/parts, which check the key with the same scopes as /v1 and call the same
services, in the key's tenant: the models shown are the ones `GET /v1/models` lists to that
key. Writes (dataset upload and delete, job submit and cancel) and the history export go from
the browser to /v1 itself, with the key that sign-in keeps in the tab's sessionStorage
(app/ui/static/app.js). Errors are the service's problem+json; the page shows their title and
detail.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter, ValidationError

from app.api import ui_models
from app.api.deps import CallerDep, RegistryDep, RequestIdDep, SessionDep, SettingsDep, WriterDep
from app.api.ui_models import served
from app.codecs import negotiate as formats
from app.errors import InvalidRequest, PayloadTooLarge, Unauthorized
from app.schemas.jobs import DatasetRead, JobRead
from app.schemas.predict import Answer, EmbedOut, MultiTaskOut, RegressOut
from app.security import presented_key, require, verify_key
from app.services import datasets, jobs, predictions, uploads
from app.ui import plots
from app.ui.templating import STATIC_DIR, render
from contract.card import InputScale, ModelKind
from contract.vocab import ACTIVE_JOB_STATUSES, STRATEGY_CHOICES, TASKS

router = APIRouter(prefix="/ui", include_in_schema=False)
PREDICT = [Depends(require("predict"))]
TRAIN = [Depends(require("train"))]
HISTORY_LIMIT = 500

_ANSWER: TypeAdapter[Answer] = TypeAdapter(Answer)
_EXTENSIONS = {formats.CSV: "csv", formats.TSV: "tsv", formats.PARQUET: "parquet"}


# ---- pages ------------------------------------------------------------------------------------


@router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/models", status_code=303)


@router.get("/sign-in")
async def sign_in(request: Request) -> HTMLResponse:
    return render(request, "sign_in.html", page="sign-in", section="")


@router.get("/models")
async def models_page(request: Request) -> HTMLResponse:
    return render(request, "models.html", page="models", section="models")


@router.get("/models/{name}")
async def model_page(
    request: Request, name: str, version: Annotated[int | None, Query(ge=1)] = None
) -> HTMLResponse:
    return render(request, "model.html", page="model", section="models", name=name, version=version)


@router.get("/predict")
async def predict_page(
    request: Request, model: Annotated[str | None, Query(max_length=100)] = None
) -> HTMLResponse:
    return render(
        request,
        "predict.html",
        page="predict",
        section="predict",
        selected=model,
        scales=[s.value for s in InputScale],
    )


@router.get("/datasets")
async def datasets_page(request: Request) -> HTMLResponse:
    return render(request, "datasets.html", page="datasets", section="datasets")


@router.get("/jobs")
async def jobs_page(request: Request) -> HTMLResponse:
    return render(request, "jobs.html", page="jobs", section="jobs")


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: uuid.UUID) -> HTMLResponse:
    return render(request, "job.html", page="job", section="jobs", job_id=job_id)


@router.get("/history")
async def history_page(
    request: Request, sample_id: Annotated[str | None, Query(max_length=256)] = None
) -> HTMLResponse:
    return render(request, "history.html", page="history", section="history", sample_id=sample_id)


# ---- fragments --------------------------------------------------------------------------------


@router.get("/parts/session")
def session_part(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    """Who the key in the request is (401 for a key that is not valid)."""
    caller = None
    key = presented_key(request)
    if settings.auth_enabled and key:
        row = verify_key(session, key)
        if row is None:
            raise Unauthorized("the API key is not valid (unknown, mistyped, revoked or expired)")
        caller = {"name": row.name, "scopes": list(row.scopes), "tenant": row.tenant}
    return render(request, "parts/session.html", caller=caller)


async def _read(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{upload.filename} exceeds {limit} bytes", max_bytes=limit)
    return data


def _model_ref(value: str) -> tuple[str, int | None]:
    name, _, version = value.partition(":")
    if version and not version.isdigit():
        raise InvalidRequest(f"model must read NAME or NAME:VERSION, got {value!r}")
    return name, int(version) if version else None


def _scale(value: str | None) -> InputScale | None:
    if not value:
        return None
    try:
        return InputScale(value)
    except ValueError:
        raise InvalidRequest(
            f"input_scale must be one of {[s.value for s in InputScale]}, got {value!r}"
        ) from None


@router.post("/parts/predict", dependencies=PREDICT)
async def predict_part(
    request: Request,
    registry: RegistryDep,
    caller: CallerDep,
    settings: SettingsDep,
    writer: WriterDep,
    request_id: RequestIdDep,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form(max_length=100)],
    input_scale: Annotated[str | None, Form()] = None,
) -> HTMLResponse:
    """Run a model on an uploaded file: the results table, probability bars, PCA plot."""
    name, version = _model_ref(model)
    data = await _read(file, settings.max_dataset_bytes)
    result = await uploads.predict_upload(
        writer=writer,
        registry=registry,
        viewer=caller,
        name=name,
        version=version,
        data=data,
        filename=file.filename or "upload.csv",
        request_id=request_id,
        min_overlap=settings.min_gene_overlap,
        max_samples=settings.max_samples_per_request,
        max_values=settings.max_dataset_bytes,
        declared_scale=_scale(input_scale),
    )
    answer = result.answer
    # a multi-task model is not run here (uploads.TASKS has no kind for it)
    rows: list[Any] = (
        answer.embeddings
        if isinstance(answer, EmbedOut)
        else []
        if isinstance(answer, MultiTaskOut)
        else list(answer.predictions)
    )
    card = registry.get(answer.model.name, answer.model.version, viewer=caller).card
    # a class has one colour on every page: its place among the model's labels
    palette = plots.colours(card.labels or []) if result.task == "classify" else None
    explained = result.explained
    scatter = plots.scatter(
        [(p.id, p.x, p.y, p.group) for p in result.points],
        result.groups,
        title=f"Samples on two principal components of {result.basis}",
        description=f"{len(result.points)} samples"
        + (f", coloured by {result.coloured_by}" if result.coloured_by else ""),
        x_title=f"PC1 ({explained[0]:.1%} of variance)",
        y_title=f"PC2 ({explained[1]:.1%} of variance)",
        palette=palette,
    )
    return render(
        request,
        "parts/prediction.html",
        result=result,
        rows=rows,
        filename=file.filename,
        scatter_svg=scatter,
        palette=palette or plots.colours(result.groups),
        targets=card.labels if isinstance(answer, RegressOut) else [],
    )


@router.post("/parts/answer", dependencies=PREDICT)
async def answer_download(request: Request) -> Response:
    """A prediction shown on the page, as the file its Accept header names (CSV, TSV, Parquet):
    /v1's own renderer, without running the model again."""
    kind = formats.choose(request.headers.get("accept"))
    try:
        answer = _ANSWER.validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidRequest(f"not a prediction answer: {exc.errors()[0]['msg']}") from exc
    response = formats.render(answer, kind)
    if kind in _EXTENSIONS:
        filename = f"{answer.model.name}-{answer.request_id}.{_EXTENSIONS[kind]}"
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@router.get("/parts/datasets", dependencies=TRAIN)
def datasets_part(request: Request, session: SessionDep, caller: CallerDep) -> HTMLResponse:
    found = datasets.listing(session, tenancy=caller.tenancy, limit=500, offset=0)
    rows = [DatasetRead.model_validate(r) for r in found]
    return render(request, "parts/datasets.html", datasets=rows)


@router.get("/parts/job-form", dependencies=TRAIN)
def job_form_part(
    request: Request, session: SessionDep, registry: RegistryDep, caller: CallerDep
) -> HTMLResponse:
    encoders = [m for m, _ in served(registry, caller) if m.card.kind is ModelKind.encoder]
    found = datasets.listing(session, tenancy=caller.tenancy, limit=500, offset=0)
    rows = [DatasetRead.model_validate(r) for r in found]
    return render(
        request,
        "parts/job_form.html",
        encoders=encoders,
        datasets=rows,
        columns=rows[0].label_counts if rows else {},
        tasks=TASKS,
        strategies=STRATEGY_CHOICES,
    )


@router.get("/parts/label-columns", dependencies=TRAIN)
def label_columns_part(
    request: Request, session: SessionDep, caller: CallerDep, dataset_id: uuid.UUID
) -> HTMLResponse:
    dataset = datasets.get(session, dataset_id, tenancy=caller.tenancy)
    return render(request, "parts/label_columns.html", columns=dataset.label_counts)


@router.get("/parts/jobs", dependencies=TRAIN)
def jobs_part(request: Request, session: SessionDep, caller: CallerDep) -> HTMLResponse:
    found = jobs.listing(session, tenancy=caller.tenancy, status=None, limit=100, offset=0)
    rows = [JobRead.model_validate(j) for j in found]
    active = any(j.status in ACTIVE_JOB_STATUSES for j in rows)
    return render(request, "parts/jobs.html", jobs=rows, active=active)


@router.get("/parts/jobs/{job_id}", dependencies=TRAIN)
def job_part(
    request: Request, session: SessionDep, caller: CallerDep, job_id: uuid.UUID
) -> HTMLResponse:
    job = JobRead.model_validate(jobs.get(session, job_id, tenancy=caller.tenancy))
    curve = None
    if job.curve:
        stages = [
            (p.step, p.stage)
            for i, p in enumerate(job.curve)
            if i == 0 or p.stage != job.curve[i - 1].stage
        ]
        curve = plots.line_chart(
            [
                ("training loss", [(p.step, p.train_loss) for p in job.curve]),
                ("validation loss", [(p.step, p.val_loss) for p in job.curve]),
            ],
            title=f"Loss curve of job {job.id}",
            description=f"{len(job.curve)} epochs; last training loss "
            f"{job.curve[-1].train_loss}, validation loss {job.curve[-1].val_loss}",
            x_title="epoch (over all stages)",
            y_title="loss",
            marks=[(step, f"stage: {stage}") for step, stage in stages[1:]],
        )
    active = job.status in ACTIVE_JOB_STATUSES
    return render(request, "parts/job.html", job=job, active=active, curve_svg=curve)


@router.get("/parts/history", dependencies=PREDICT)
def history_part(
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    sample_id: Annotated[str | None, Query(max_length=256)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    sample_id, model = (sample_id or "").strip() or None, model or None
    found = predictions.find(
        session,
        tenancy=caller.tenancy,
        sample_id=sample_id,
        model=model,
        version=None,
        limit=HISTORY_LIMIT,
        offset=0,
    )
    query = {"format": "csv", "limit": HISTORY_LIMIT}
    query |= {k: v for k, v in (("sample_id", sample_id), ("model", model)) if v}
    return render(
        request,
        "parts/history.html",
        found=found,
        sample_id=sample_id,
        model=model,
        limit=HISTORY_LIMIT,
        export_url=f"/v1/predictions?{urlencode(query)}",
    )


def install(app: FastAPI) -> None:
    """Serve the web app at /ui and its static files at /ui/static."""
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(router)
    app.include_router(ui_models.router)

"""POST /v1/models/{name}/embed and /classify."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import RegistryDep, RequestIdDep, SessionDep, SettingsDep
from app.errors import documented
from app.inference.card import InputScale
from app.inference.payloads import decode_records
from app.schemas.predict import ClassifyOut, EmbedOut, ExpressionIn
from app.services import predict

router = APIRouter(prefix="/v1/models", tags=["predict"])

VersionQuery = Annotated[
    int | None, Query(ge=1, description="Model version; the latest when left out.")
]
ScaleQuery = Annotated[
    InputScale | None,
    Query(description="Declare the input's scale instead of detecting it from the values."),
]
PROBLEMS = documented(
    e404="No such model or version",
    e413="Too many samples or too large a body",
    e422="Malformed body, bad values (the samples and genes are named), too few genes "
    "or values on the wrong scale",
)


@router.post(
    "/{name}/classify",
    response_model=ClassifyOut,
    summary="Classify expression profiles",
    responses=PROBLEMS,
)
def classify(
    name: str,
    body: ExpressionIn,
    session: SessionDep,
    registry: RegistryDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    version: VersionQuery = None,
    input_scale: ScaleQuery = None,
) -> ClassifyOut:
    model = registry.get(name, version)
    expr = decode_records(body, max_samples=settings.max_samples_per_request)
    return predict.classify(
        session=session,
        model=model,
        expr=expr,
        request_id=request_id,
        min_overlap=settings.min_gene_overlap,
        declared_scale=input_scale,
    )


@router.post(
    "/{name}/embed",
    response_model=EmbedOut,
    summary="Embed expression profiles with an encoder",
    responses=PROBLEMS,
)
def embed(
    name: str,
    body: ExpressionIn,
    session: SessionDep,
    registry: RegistryDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
    version: VersionQuery = None,
    input_scale: ScaleQuery = None,
) -> EmbedOut:
    model = registry.get(name, version)
    expr = decode_records(body, max_samples=settings.max_samples_per_request)
    return predict.embed(
        session=session,
        model=model,
        expr=expr,
        request_id=request_id,
        min_overlap=settings.min_gene_overlap,
        declared_scale=input_scale,
    )

"""GET /v1/predictions: past results by sample id, model, request id and time; as JSON, CSV or
FHIR R4 (the caller's tenant's calls only; an admin's key finds every tenant's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import MAX_OFFSET, MAX_VERSION, CallerDep, SessionDep
from app.codecs import fhir
from app.errors import documented
from app.schemas.jobs import PredictionList
from app.services import predictions

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])


@router.get(
    "",
    response_model=PredictionList,
    summary="Find past predictions (format=csv or fhir to download)",
    responses={
        200: {"content": {"text/csv": {}, fhir.MEDIA_TYPE: {}}},
        **documented(e422="A bad filter, e.g. since not before until"),
    },
)
def find_predictions(
    session: SessionDep,
    caller: CallerDep,
    sample_id: Annotated[str | None, Query(max_length=256)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
    request_id: Annotated[
        str | None, Query(max_length=128, description="The X-Request-ID of the call.")
    ] = None,
    since: Annotated[
        datetime | None,
        Query(description="Calls made at or after this ISO 8601 time (UTC if no offset)."),
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Calls made before this ISO 8601 time.")
    ] = None,
    format: Annotated[
        Literal["json", "csv", "fhir"],
        Query(
            description="fhir: an R4 Bundle, a DiagnosticReport per call, an Observation per sample"
        ),
    ] = "json",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> PredictionList | Response:
    found = predictions.find(
        session,
        tenancy=caller.tenancy,
        sample_id=sample_id,
        model=model,
        version=version,
        limit=limit,
        offset=offset,
        request_id=request_id,
        since=since,
        until=until,
    )
    if format == "csv":
        return Response(
            predictions.to_csv(found),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="predictions.csv"'},
        )
    if format == "fhir":
        return Response(
            fhir.to_json(found),
            media_type=fhir.MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="predictions.fhir.json"'},
        )
    return PredictionList(predictions=found)

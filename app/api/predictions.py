"""GET /v1/predictions: past results by sample id and model, as JSON or CSV (the caller's tenant's
calls only; an admin's key finds every tenant's)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import CallerDep, SessionDep
from app.schemas.jobs import PredictionList
from app.services import predictions

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])


@router.get(
    "",
    response_model=PredictionList,
    summary="Find past predictions (format=csv to download)",
    responses={200: {"content": {"text/csv": {}}}},
)
def find_predictions(
    session: SessionDep,
    caller: CallerDep,
    sample_id: Annotated[str | None, Query(max_length=256)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PredictionList | Response:
    found = predictions.find(
        session,
        tenancy=caller.tenancy,
        sample_id=sample_id,
        model=model,
        version=version,
        limit=limit,
        offset=offset,
    )
    if format == "csv":
        return Response(
            predictions.to_csv(found),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="predictions.csv"'},
        )
    return PredictionList(predictions=found)

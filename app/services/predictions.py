"""Past predictions: find them by sample id and model, and export them as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.db.repository import predictions as repository
from app.db.repository.tenancy import Tenancy
from app.errors import InvalidRequest
from app.schemas.jobs import PastPrediction


def find(
    session: Session,
    *,
    tenancy: Tenancy,
    sample_id: str | None,
    model: str | None,
    version: int | None,
    limit: int,
    offset: int,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[PastPrediction]:
    """One entry per (prediction, sample) of the tenancy's calls, newest first: entries
    `offset` to `offset + limit`."""
    if since is not None and until is not None and since >= until:
        raise InvalidRequest(
            f"since ({since.isoformat()}) must be before until ({until.isoformat()})"
        )
    rows, skip = repository.find_entries(
        session,
        tenancy=tenancy,
        sample_id=sample_id,
        model=model,
        version=version,
        limit=limit,
        offset=offset,
        request_id=request_id,
        since=_utc(since),
        until=_utc(until),
    )
    out = []
    for row in rows:
        outputs = {o["id"]: o for o in row.outputs or []}
        for sid in row.sample_ids:
            if sample_id is None or sid == sample_id:
                out.append(
                    PastPrediction(
                        prediction_id=row.id,
                        request_id=row.request_id,
                        created_at=row.created_at,
                        task=row.task,
                        model=row.model_name,
                        version=row.model_version,
                        sample_id=sid,
                        output=outputs.get(sid),
                    )
                )
    # `limit` and `offset` count entries, not calls: the first call may start before the offset
    # and the last end after the limit
    return out[skip : skip + limit]


def _utc(moment: datetime | None) -> datetime | None:
    """A naive time is taken as UTC, as every time the service records is."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def to_csv(predictions: list[PastPrediction]) -> str:
    """One row per sample: when, which model, the label and each class probability, or each
    predicted value (regressors)."""
    classes = sorted(
        {c for p in predictions if p.output for c in p.output.get("probabilities", {})}
    )
    targets = sorted({t for p in predictions if p.output for t in p.output.get("values", {})})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        ["created_at", "request_id", "model", "version", "task", "sample_id", "label"]
        + [f"p_{c}" for c in classes]
        + [f"value_{t}" for t in targets]
    )
    for p in predictions:
        output = p.output or {}
        probs, values = output.get("probabilities", {}), output.get("values", {})
        writer.writerow(
            [p.created_at.isoformat(), p.request_id, p.model, p.version, p.task, p.sample_id]
            + [output.get("label", "")]
            + [probs.get(c, "") for c in classes]
            + [values.get(t, "") for t in targets]
        )
    return buf.getvalue()

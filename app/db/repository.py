"""Every query the service makes. Functions take the session first; they flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.db.tables import Prediction


def add_prediction(
    session: Session,
    *,
    request_id: str,
    task: str,
    model_name: str,
    model_version: int,
    sample_ids: list[str],
    outputs: list[dict[str, Any]] | None,
    gene_overlap: float,
) -> Prediction:
    """Record one prediction call."""
    row = Prediction(
        request_id=request_id,
        task=task,
        model_name=model_name,
        model_version=model_version,
        n_samples=len(sample_ids),
        sample_ids=sample_ids,
        outputs=outputs,
        gene_overlap=gene_overlap,
    )
    session.add(row)
    session.flush()
    return row


def add_predictions(session: Session, rows: list[dict[str, Any]]) -> None:
    """Record many prediction calls in one multi-row INSERT (rows carry every column)."""
    if rows:
        session.execute(insert(Prediction), rows)


def predictions_by_request(session: Session, request_id: str) -> Sequence[Prediction]:
    """The predictions recorded for one request id, oldest first."""
    stmt = (
        select(Prediction)
        .where(Prediction.request_id == request_id)
        .order_by(Prediction.created_at)
    )
    return session.scalars(stmt).all()

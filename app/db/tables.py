"""ORM tables. Typed columns, UTC `*_at` timestamps, relationships lazy='raise'."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow


class Prediction(Base):
    """One embed/classify call: what was asked of which model version, and what it answered."""

    __tablename__ = "predictions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    task: Mapped[str] = mapped_column(String(16))  # "embed" | "classify"
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int] = mapped_column(Integer)
    n_samples: Mapped[int] = mapped_column(Integer)
    sample_ids: Mapped[list[str]] = mapped_column(JSON)
    # classify: [{"id", "label", "probabilities"}]; embed: None (embeddings are not kept)
    outputs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    gene_overlap: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (Index(None, "model_name", "model_version"),)

"""ORM tables. Typed columns, UTC `*_at` timestamps, relationships lazy='raise'."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    cast,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow

# every row a caller can see belongs to one tenant; with auth off, everything is this one's
DEFAULT_TENANT = "default"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def _tenant() -> Mapped[str]:
    """The tenant column: no default, so a row written without its tenant fails loudly."""
    return mapped_column(String(64))


class Prediction(Base):
    """One embed/classify/regress call: what was asked of which version, and what it answered."""

    __tablename__ = "predictions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    task: Mapped[str] = mapped_column(String(16))  # embed | classify | regress | v2-infer
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[int] = mapped_column(Integer)
    n_samples: Mapped[int] = mapped_column(Integer)
    sample_ids: Mapped[list[str]] = mapped_column(JSON)
    # classify: [{"id", "label", "probabilities"}] (+ "explanation" with ?explain=N: the answer's
    # rows as answered, so no column of its own); regress: [{"id", "values"}]; embed: None
    outputs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    gene_overlap: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # from the request's audit context (app.audit), stamped by the prediction writer
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    tenant: Mapped[str] = _tenant()

    __table_args__ = (
        Index(None, "model_name", "model_version"),
        Index("ix_predictions_tenant_created_at", "tenant", "created_at"),
        # GET /v1/predictions?sample_id=: `sample_ids::jsonb ? id` on PostgreSQL uses this
        # (migration 0003); SQLite, the single-lab embedded default, scans with json_each
        Index(
            "ix_predictions_sample_ids_gin", cast(sample_ids, JSONB), postgresql_using="gin"
        ).ddl_if(dialect="postgresql"),
    )


class ApiKey(Base):
    """An API key: only its sha256 is stored; `prefix` finds the row, the hash proves the key."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    tenant: Mapped[str] = _tenant()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # written at most once a minute per key (app.security), so a busy key costs no write a call
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # the key this one replaced (`genexfer keys rotate`)
    rotated_from: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)

    __table_args__ = (Index(None, "tenant"),)


class Dataset(Base):
    """An uploaded target dataset, stored as an npz file (no pickles) under the data directory."""

    __tablename__ = "datasets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(512))
    source_format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    n_samples: Mapped[int] = mapped_column(Integer)
    n_genes: Mapped[int] = mapped_column(Integer)
    # {column: {label: count}} for every label column
    label_counts: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON)
    # [{"model", "version", "matched", "panel_size", "fraction"}] per loaded encoder at upload
    gene_overlap: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    tenant: Mapped[str] = _tenant()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (Index("ix_datasets_tenant_created_at", "tenant", "created_at"),)


class Job(Base):
    """A fine-tuning job: its parameters, lease (who runs it, until when), progress and outcome."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), index=True)
    # SET NULL: deleting a dataset keeps the record of the jobs that used it
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True, nullable=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{"status", "at", "reason"}], oldest first
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    result_model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tenant: Mapped[str] = _tenant()
    # when the job was last handed to the executor (None: not yet, or again after a requeue);
    # the housekeeper dispatches queued jobs without one, so the job row is its own outbox
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_jobs_tenant_created_at", "tenant", "created_at"),
        Index("ix_jobs_tenant_idempotency_key", "tenant", "idempotency_key"),
    )


class ModelVersion(Base):
    """A model version a job published, with the metrics it reached."""

    __tablename__ = "model_versions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    parent_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    parent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id"), nullable=True)
    tenant: Mapped[str] = _tenant()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # one job publishes at most one version
    __table_args__ = (UniqueConstraint("name", "version"), UniqueConstraint("job_id"))


class ModelName(Base):
    """Who owns a model name: the tenant whose job first claimed it (names with no row are the
    operator's: the demo models and those trained offline, visible to every tenant)."""

    __tablename__ = "model_names"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = _tenant()
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelAlias(Base):
    """A named pointer to one version of a model (e.g. production), moved by an explicit call."""

    __tablename__ = "model_aliases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    alias: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """Who (key, tenant) created, changed or deleted what: written in the change's transaction."""

    __tablename__ = "audit_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # the actor: a key (its id, prefix and tenant), the CLI, or a job runner acting for a key
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    # e.g. dataset.create, job.cancel, model.alias.set, key.revoke
    action: Mapped[str] = mapped_column(String(32), index=True)
    resource_type: Mapped[str] = mapped_column(String(16))
    resource_id: Mapped[str] = mapped_column(String(128))
    # the tenant the resource belongs to (an admin may act on another tenant's)
    resource_tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_events_tenant_created_at", "tenant", "created_at"),
        Index("ix_audit_events_resource", "resource_type", "resource_id"),
    )


class IdempotencyRecord(Base):
    """The first answer to a POST carrying an Idempotency-Key, replayed to its retries."""

    __tablename__ = "idempotency_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # the key, namespaced by the caller's credentials: one lab's key never replays another's
    scope_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[list[list[str]] | None] = mapped_column(JSON, nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

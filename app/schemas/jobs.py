"""Bodies of /v1/datasets, /v1/finetune-jobs and /v1/predictions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.text import Text
from contract.vocab import JobStatus, Strategy, Task


class DatasetRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    source_format: str
    sha256: str = Field(description="sha256 of the uploaded file(s).")
    n_samples: int
    n_genes: int
    label_counts: dict[str, dict[str, int]]
    gene_overlap: list[dict[str, Any]] = Field(description="Overlap with each loaded encoder.")
    tenant: str = Field(description="The lab it belongs to (the uploading key's tenant).")
    created_at: datetime


class DatasetList(BaseModel):
    datasets: list[DatasetRead]


class EncoderRef(BaseModel):
    name: Text = Field(min_length=1, max_length=64)
    version: int | None = Field(
        default=None, ge=1, description="Left out: its default version (GET /v1/models)."
    )


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=100, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=65_536)
    lr: float = Field(default=1e-3, gt=0, le=1.0)
    weight_decay: float = Field(default=1e-4, ge=0, le=1.0)
    patience: int = Field(default=10, ge=1)
    head_hidden: list[int] = Field(default=[64], max_length=4)
    head_dropout: float = Field(default=0.1, ge=0, lt=1)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(
        default=0.2, ge=0, lt=1, description="Held out of all fitting and scored (0: none)."
    )
    val_fraction: float = Field(
        default=0.1, gt=0, lt=1, description="Early-stopping share of the training part."
    )


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    encoder: EncoderRef
    dataset_id: uuid.UUID
    label_column: Text = Field(min_length=1)
    task: Task = "classification"
    strategy: Strategy = "frozen"
    hyperparameters: Hyperparameters = Hyperparameters()
    validation: Validation = Validation()
    output_name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    description: Text = Field(default="", max_length=2000)


class EpochLoss(BaseModel):
    """One point of a job's loss curve."""

    step: int = Field(description="Epochs run so far, over every training stage.")
    stage: str = Field(description="What was being trained (a strategy may have several stages).")
    epoch: int = Field(description="The epoch within its stage, from 1.")
    train_loss: float | None
    val_loss: float | None


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: JobStatus
    dataset_id: uuid.UUID | None
    params: dict[str, Any]
    progress: float
    epoch: int | None
    metrics: dict[str, Any]
    error: str | None
    attempts: int
    cancel_requested: bool
    history: list[dict[str, Any]]
    curve: list[EpochLoss] = Field(
        default_factory=list,
        description="Train and validation loss per epoch, oldest first; at most 500 points (a "
        "longer run keeps every 2nd, 4th, ... epoch).",
    )
    result_model: str | None
    result_version: int | None
    tenant: str = Field(description="The lab it belongs to (the submitting key's tenant).")
    dispatched_at: datetime | None = Field(
        description="When it was handed to the executor (null: not yet, e.g. while the broker "
        "is away; it is handed over as soon as it can be)."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @model_validator(mode="after")
    def _curve_out_of_metrics(self) -> Self:
        # the runner records the curve with the job's metrics (one JSON column); answered apart
        if "curve" in self.metrics:
            points = self.metrics["curve"] or []
            self.metrics = {k: v for k, v in self.metrics.items() if k != "curve"}
            self.curve = [EpochLoss.model_validate(p) for p in points]
        return self


class JobList(BaseModel):
    jobs: list[JobRead]


class PastPrediction(BaseModel):
    prediction_id: uuid.UUID
    request_id: str
    created_at: datetime
    task: str
    model: str
    version: int
    sample_id: str
    output: dict[str, Any] | None


class PredictionList(BaseModel):
    predictions: list[PastPrediction]

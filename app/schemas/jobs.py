"""Bodies of /v1/datasets, /v1/finetune-jobs and /v1/predictions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.text import Text
from contract import defaults
from contract.modality import MODALITY_NAME
from contract.vocab import Adaptation as AdaptationMethod
from contract.vocab import JobStatus, SemiSupervision, StrategyChoice, Task


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
    """The optimisation; the defaults are `genexfer train finetune`'s (contract.defaults)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=defaults.EPOCHS, ge=1, le=10_000)
    batch_size: int = Field(default=defaults.BATCH_SIZE, ge=1, le=65_536)
    lr: float = Field(default=defaults.LR, gt=0, le=1.0)
    weight_decay: float = Field(default=defaults.WEIGHT_DECAY, ge=0, le=1.0)
    patience: int = Field(default=defaults.PATIENCE, ge=1)
    min_epochs: int = Field(
        default=defaults.MIN_EPOCHS,
        ge=0,
        description="No early stop, and no epoch kept as best, before this many epochs.",
    )
    head_hidden: list[int] = Field(
        default=list(defaults.HEAD_HIDDEN),
        max_length=4,
        description="Hidden widths of the head; [] is a linear head.",
    )
    head_dropout: float = Field(default=defaults.HEAD_DROPOUT, ge=0, lt=1)
    unfreeze_top: int = Field(
        default=defaults.UNFREEZE_TOP, ge=1, le=16, description="partial: encoder layers trained."
    )
    encoder_lr_scale: float = Field(
        default=defaults.ENCODER_LR_SCALE,
        gt=0,
        le=1,
        description="The encoder's learning rate as a share of lr (partial, gradual, full).",
    )
    seed: int = Field(default=defaults.SEED, ge=0, le=2**32 - 1)


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(
        default=defaults.TEST_FRACTION,
        ge=0,
        lt=1,
        description="Held out of all fitting and scored (0: none). A class with fewer than "
        f"{defaults.MIN_HELD_OUT_CLASS} samples keeps them all: then nothing is held out and "
        "the card's scores are the inner cross-validation's.",
    )
    val_fraction: float = Field(
        default=defaults.VAL_FRACTION,
        gt=0,
        lt=1,
        description="Early-stopping share of the training part (the training loss when a "
        "class is too small to spare samples).",
    )


class Adaptation(BaseModel):
    """Domain adaptation between the labelled rows and the rows without a label (or the
    batches a domain column names)."""

    model_config = ConfigDict(extra="forbid")

    method: AdaptationMethod = Field(
        default="none", description="dann (gradient reversal) or mmd (multi-kernel)."
    )
    weight: float = Field(default=defaults.ADAPTATION_WEIGHT, gt=0, le=100)
    domain_column: str | None = Field(
        default=None,
        min_length=1,
        description="Label column naming each sample's batch or lab (default: labelled vs "
        "unlabelled rows).",
    )


class SemiSupervised(BaseModel):
    """How rows of the dataset without a label in label_column join training."""

    model_config = ConfigDict(extra="forbid")

    method: SemiSupervision = "none"
    confidence: float = Field(default=defaults.CONFIDENCE, gt=0, lt=1)
    weight: float = Field(default=defaults.SEMI_WEIGHT, gt=0, le=100)


class Tune(BaseModel):
    """A hyperparameter search before the choice (Optuna: TPE sampler, median pruning), each
    trial scored by inner cross-validation on the training samples only; its best settings join
    the choice as the candidate 'tuned'."""

    model_config = ConfigDict(extra="forbid")

    trials: int = Field(default=defaults.TUNE_TRIALS, ge=1, le=defaults.TUNE_MAX_TRIALS)
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="No trial starts after this many seconds (a running one finishes); null: "
        "no limit.",
    )


class TaskIn(BaseModel):
    """One task of a multi-task job: a label column, its kind and its loss weight."""

    model_config = ConfigDict(extra="forbid")

    column: Text = Field(min_length=1, max_length=256)
    kind: Task = "classification"
    weight: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    encoder: EncoderRef
    dataset_id: uuid.UUID
    label_column: Text | None = Field(
        default=None,
        min_length=1,
        description="The label column of a single-task job (give it, or tasks).",
    )
    task: Task = "classification"
    tasks: list[TaskIn] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Multi-task, in place of label_column and task: one encoder fine-tuned "
        "with a head per task on the weighted sum of their losses (a sample missing a task's "
        "label is masked for that task, not dropped), published as one graph with an output "
        "per task. Needs a named strategy (the automatic choice is single-task); each task is "
        "compared with logistic (ridge) regression on the held-out samples and the card warns "
        "where the baseline scores higher.",
    )
    strategy: StrategyChoice = Field(
        default="auto",
        description="auto: inner cross-validation on the training samples over the transfer "
        "strategies (with adaptation or semi-supervision where the data allow) and classical "
        "baselines; published: the simplest within one standard error of the best mean "
        "(classical before transfer). A named strategy is published, compared with "
        "logistic regression (ridge for regression) on the same folds, with a warning when "
        "the baseline scores higher.",
    )
    candidates: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="auto only: the candidates to compare, each a strategy with optional "
        "+dann/+mmd and +pseudo_label/+consistency, or a baseline's name "
        "(default: chosen from the data).",
    )
    adaptation: Adaptation = Adaptation()
    semi_supervised: SemiSupervised = SemiSupervised()
    hyperparameters: Hyperparameters = Hyperparameters()
    validation: Validation = Validation()
    tune: Tune | None = Field(
        default=None,
        description="Search the strategy, learning rate, weight decay, head width and dropout, "
        "epochs and patience, the encoder's learning-rate share and (with rows without a label "
        "or a domain column) the adaptation, seeded by hyperparameters.seed; the hyperparameters "
        "are the first trial and epochs the ceiling. With a named strategy the search keeps it "
        "and the tuned model is published. The study is recorded in metrics.selection.tuning "
        "and the card.",
    )
    output_name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    description: Text = Field(default="", max_length=2000)
    modalities: dict[Annotated[str, Field(pattern=MODALITY_NAME)], uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="A multi-omics classifier (docs/multiomics.md): modality name → the id of an "
        "uploaded dataset of it (samples as rows, the same sample ids; a sample absent from one "
        "lacks that modality). dataset_id is then the expression; the strategy is frozen for "
        "auto, and tune, candidates, adaptation and semi-supervision are not taken.",
    )


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

"""Request and response bodies of POST /v1/preprocess."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.predict import GeneOverlap, SampleIn
from contract.card import InputScale
from contract.vocab import RecipeStep

OutputFormat = Literal["json", "same", "csv", "tsv", "parquet", "h5ad"]


class StepSpec(BaseModel):
    """One recipe step and its options (each step reads only its own; docs/preprocessing.md)."""

    model_config = ConfigDict(extra="forbid")

    step: RecipeStep
    n: int | None = Field(default=None, ge=1, description="select_variance / select_hvg")
    n_components: int | None = Field(default=None, ge=1, description="pca")
    genes: list[str] | None = Field(default=None, min_length=1, description="select_genes")
    clip: float | None = Field(default=None, gt=0, description="standardize")
    target_sum: float | None = Field(default=None, gt=0, description="normalize_total")
    fit_type: Literal["parametric", "mean"] | None = Field(default=None, description="vst")
    a0: float | None = Field(default=None, gt=0, description="vst: a given trend")
    a1: float | None = Field(default=None, ge=0, description="vst: a given trend")
    batch: str | None = Field(default=None, description="combat: the batch column")
    covariates: list[str] | None = Field(default=None, description="combat")
    reference: str | None = Field(default=None, description="combat: the reference batch")
    parametric: bool | None = Field(default=None, description="combat")


class PreprocessOptions(BaseModel):
    """Which pipeline, QC thresholds, scale and output; JSON body fields or an upload's form."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Apply this model's fitted pipeline.")
    version: int | None = Field(default=None, ge=1, description="Model version; latest if None.")
    steps: list[StepSpec] | None = Field(
        default=None,
        description='A recipe fitted on the request\'s own samples, e.g. [{"step": "cpm"}, '
        '{"step": "log2p1"}, {"step": "pca", "n_components": 10}] (docs/preprocessing.md).',
    )
    input_scale: InputScale | None = Field(
        default=None, description="Declare the input's scale instead of detecting it."
    )
    batch: list[str] | None = Field(
        default=None, description="Batch of each sample, for pipelines that run ComBat."
    )
    batch_column: str | None = Field(
        default=None, description="Upload only: the metadata column that holds the batch."
    )
    orientation: Literal["auto", "samples_as_rows", "genes_as_rows"] = "auto"
    max_missing: float = Field(default=0.2, ge=0.0, le=1.0)
    n_mads: float = Field(default=3.0, gt=0.0)
    output: OutputFormat = Field(
        default="json", description="json, or the upload's own format ('same') or a named one."
    )


class PreprocessIn(PreprocessOptions):
    """Records (as for /classify) plus the options."""

    genes: list[str] = Field(min_length=1)
    samples: list[SampleIn] = Field(min_length=1)


class ScaleOut(BaseModel):
    detected: str
    reason: str
    declared: str | None = None
    used: str


class SampleValues(BaseModel):
    id: str
    values: list[float]


class PreprocessOut(BaseModel):
    request_id: str
    pipeline: dict[str, Any] = Field(description="Where the steps came from, and their names.")
    input_scale: ScaleOut
    gene_overlap: GeneOverlap | None = Field(
        default=None, description="With a model's pipeline: how the input matched its panel."
    )
    gene_warning: str | None = Field(default=None, description="Duplicate genes aggregated.")
    qc: dict[str, Any] = Field(description="Dropped and flagged samples with reasons, metrics.")
    batch_notes: list[str] = Field(default_factory=list)
    features: list[str] = Field(description="Names of the output columns.")
    samples: list[SampleValues]

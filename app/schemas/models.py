"""Bodies of /v1/models: what a client needs to know to call a model."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from contract.card import InputScale, Metric, ModelKind, ModelRef, TensorSpec


class ModelVersionRead(BaseModel):
    name: str
    version: int
    kind: ModelKind
    description: str
    created_at: datetime
    input_scale: InputScale
    n_genes: int
    labels: list[str] | None
    outputs: list[TensorSpec]
    metrics: list[Metric]
    parent: ModelRef | None
    providers: list[str] = Field(description="ONNX Runtime execution providers in use.")


class ModelVersionDetail(ModelVersionRead):
    genes: list[str] = Field(description="The input gene panel, in order.")
    gene_aliases: list[list[str]]


class ModelRead(BaseModel):
    name: str
    latest_version: int
    versions: list[ModelVersionRead]


class ModelList(BaseModel):
    models: list[ModelRead]

"""Bodies of /v1/models: what a client needs to know to call a model, and its aliases."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from contract.card import (
    ExplainGraph,
    InputScale,
    Metric,
    ModelKind,
    ModelRef,
    ModelTask,
    Selection,
    TensorSpec,
)
from contract.modality import ModalityInput


class ModelVersionRead(BaseModel):
    name: str
    version: int
    kind: ModelKind
    description: str
    created_at: datetime
    input_scale: InputScale
    n_genes: int
    labels: list[str] | None
    tasks: list[ModelTask] = Field(
        default_factory=list,
        exclude_if=lambda v: not v,
        description="A multi-task model's tasks (kind, classes, weight, outputs, warnings); "
        "left out for every other kind. classify and regress answer them all, or task=.",
    )
    outputs: list[TensorSpec]
    metrics: list[Metric]
    parent: ModelRef | None
    providers: list[str] = Field(description="ONNX Runtime execution providers in use.")
    aliases: list[str] = Field(default_factory=list, description="Aliases naming this version.")
    explain: ExplainGraph | None = Field(
        default=None,
        description="Its explanation graph (classify?explain=N); null: it cannot explain.",
    )
    selection: Selection | None = Field(
        default=None,
        description="How it was chosen: every candidate's inner-CV score, the reason and the "
        "warnings (e.g. a logistic regression that scored higher); null: published before the "
        "automatic choice, or not by fine-tuning.",
    )


class ModelVersionDetail(ModelVersionRead):
    genes: list[str] = Field(description="The input gene panel, in order.")
    gene_aliases: list[list[str]]
    modalities: list[ModalityInput] | None = Field(
        default=None,
        description="A multi-omics model's added inputs (name, features in order, fill "
        "values): classify takes a JSON block per modality; null: expression only.",
        exclude_if=lambda v: v is None,
    )


class ModelRead(BaseModel):
    name: str
    latest_version: int
    default_version: int | None = Field(
        description="The version a request that pins none gets (`?version=` or `name@alias` "
        "pin one)."
    )
    default_rule: str = Field(
        description="Why: 'production alias'; 'first version (no production alias yet)' for a "
        "tenant's model until one is promoted; 'latest version' for the operator's models."
    )
    owner: str | None = Field(
        description="The tenant that owns the name (null: the operator's, visible to every key)."
    )
    aliases: dict[str, int] = Field(description="Alias → version, e.g. {'production': 2}.")
    versions: list[ModelVersionRead]


class ModelList(BaseModel):
    models: list[ModelRead]


class AliasSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The version the alias will name.")


class AliasRead(BaseModel):
    name: str
    alias: str
    version: int
    previous: int | None = Field(description="The version the alias named before (null: new).")

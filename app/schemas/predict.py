"""Request and response bodies of /v1/models/{name}/embed, /classify and /regress."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from app.schemas.text import Text
from contract.vocab import Task

SampleId = Annotated[Text, Field(min_length=1, max_length=256)]
GeneId = Annotated[Text, Field(min_length=1, max_length=128)]


class SampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: SampleId
    values: list[StrictFloat | StrictInt | None] = Field(
        description="One value per entry of `genes`, on the model's input scale; null is refused."
    )


class ExpressionIn(BaseModel):
    """Profiles as records: the gene names once, then each sample's values in that order."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "genes": ["CD3E", "CD14", "MS4A1"],
                    "samples": [{"id": "S1", "values": [1.2, 0.0, 3.4]}],
                }
            ]
        },
    )

    genes: list[GeneId] = Field(min_length=1)
    samples: list[SampleIn] = Field(min_length=1)


class MatrixIn(BaseModel):
    """Profiles as a matrix: gene names once, sample ids once, one row of values per sample."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "genes": ["CD3E", "CD14", "MS4A1"],
                    "sample_ids": ["S1", "S2"],
                    "values": [[1.2, 0.0, 3.4], [0.0, 2.2, 0.1]],
                }
            ]
        },
    )

    genes: list[GeneId] = Field(min_length=1)
    sample_ids: list[SampleId] = Field(min_length=1)
    values: list[list[StrictFloat | StrictInt | None]] = Field(
        description="values[i][j]: sample i, gene j, on the model's input scale."
    )


class ModelUsed(BaseModel):
    name: str
    version: int


class GeneOverlap(BaseModel):
    matched: int = Field(description="Panel genes found in the input.")
    panel_size: int
    fraction: float
    missing_genes: list[str] = Field(description="Panel genes filled in (at most 50 listed).")
    n_missing: int
    n_unused_input_genes: int = Field(description="Input genes the model does not use.")
    aggregated_duplicates: list[str] = Field(
        default_factory=list,
        description="Genes named more than once (after stripping Ensembl versions and case); "
        "their columns were summed (linear scales) or averaged (log scales).",
    )
    warning: str | None = Field(default=None, description="What was aggregated, in words.")
    matched_directly: int = Field(
        default=0, description="Panel genes matched by name (ids and aliases, any case)."
    )
    matched_via_table: int = Field(
        default=0,
        description="Panel genes matched through the human gene table (an Ensembl or Entrez "
        "id, or a previous symbol, of a panel gene).",
    )
    ambiguous_genes: list[str] = Field(
        default_factory=list,
        description="Input genes that may mean a panel gene but were not used, each with why "
        "(at most 50 listed).",
    )
    n_ambiguous: int = 0


class ExplainedGene(BaseModel):
    gene: str = Field(
        description="The gene as the request named it (the panel's id where the request lacked "
        "it and the training mean was filled in: its attribution is then 0)."
    )
    panel_gene: str = Field(description="The model's panel id of the gene.")
    attribution: float = Field(
        description="Signed integrated-gradients attribution to the logit of the predicted "
        "label: positive genes pushed the sample towards it, negative ones away."
    )
    in_input: bool = Field(description="False: the gene was missing and filled.")


class EnrichedSet(BaseModel):
    id: str = Field(description="The set's id (a GO term, a PROGENy pathway).")
    name: str
    overlap: list[str] = Field(
        description="The top genes in the set, as the collection names them (a panel id it "
        "lacks as its official symbol), upper-cased.",
    )
    set_size: int = Field(description="The set's genes in the model's panel.")
    p: float = Field(description="Hypergeometric P(at least this overlap), panel as universe.")
    q: float = Field(description="Benjamini-Hochberg adjusted p over the sets tested.")


class SampleExplanation(BaseModel):
    target: str = Field(description="The label explained: the predicted one.")
    method: str = Field(description="integrated_gradients, of the label's logit (pre-softmax).")
    baseline: str = Field(description="The baseline profile the path starts from.")
    steps: int = Field(description="Riemann points on the path.")
    exact: bool = Field(description="True where the model is linear: no approximation.")
    top_genes: list[ExplainedGene] = Field(description="The genes with the largest |attribution|.")
    gene_set_collection: str | None = Field(default=None, exclude_if=lambda v: v is None)
    gene_sets: list[EnrichedSet] | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="With gene_sets=: the sets the top genes are over-represented in (p ≤ 0.05, "
        "best first, at most 20).",
    )


class SamplePrediction(BaseModel):
    id: str
    label: str
    probabilities: dict[str, float]
    explanation: SampleExplanation | None = Field(
        default=None, exclude_if=lambda v: v is None, description="With explain=N only."
    )


class SampleValues(BaseModel):
    id: str
    values: dict[str, float] = Field(
        description="The predicted value of each target (the model's labels), on its own scale."
    )


class SampleEmbedding(BaseModel):
    id: str
    embedding: list[float]


TRANSFORM_APPLIED = Field(
    default=None,
    description="The card's input transform the service applied before the model, e.g. "
    "'counts: normalize_total(target_sum=10000), log1p'; null when the values were on the "
    "model's own scale.",
)


class ClassifyOut(BaseModel):
    request_id: str
    model: ModelUsed
    gene_overlap: GeneOverlap
    transform_applied: str | None = TRANSFORM_APPLIED
    predictions: list[SamplePrediction]


class EmbedOut(BaseModel):
    request_id: str
    model: ModelUsed
    gene_overlap: GeneOverlap
    transform_applied: str | None = TRANSFORM_APPLIED
    embeddings: list[SampleEmbedding]


class RegressOut(BaseModel):
    request_id: str
    model: ModelUsed
    gene_overlap: GeneOverlap
    transform_applied: str | None = TRANSFORM_APPLIED
    predictions: list[SampleValues]


class SampleTasks(BaseModel):
    """One sample's answer from every task asked of a multi-task model (the call's record)."""

    id: str
    tasks: dict[str, dict[str, Any]]


class TaskAnswer(BaseModel):
    kind: Task
    predictions: list[SamplePrediction] | list[SampleValues] = Field(
        description="classification: each sample's label and class probabilities; regression: "
        "each sample's predicted value (keyed by the task's name)."
    )


class MultiTaskOut(BaseModel):
    """A multi-task model's answer (from classify or regress alike), grouped per task."""

    request_id: str
    model: ModelUsed
    gene_overlap: GeneOverlap
    transform_applied: str | None = TRANSFORM_APPLIED
    tasks: dict[str, TaskAnswer] = Field(
        description="Every task asked for (all of the model's, or those named by task=), in "
        "the model's order."
    )


Answer = ClassifyOut | EmbedOut | RegressOut | MultiTaskOut

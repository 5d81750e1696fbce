"""Bodies of /v1/models/{name}/classify for a multi-omics model: a JSON block per modality."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from app.schemas.predict import ClassifyOut, SampleId, SamplePrediction
from app.schemas.text import Text

FeatureId = Annotated[Text, Field(min_length=1, max_length=128)]


class ModalitySample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: SampleId
    values: list[StrictFloat | StrictInt] = Field(
        description="One raw value per entry of the block's `features` (β-values, abundances)."
    )


class ModalityBlock(BaseModel):
    """One added modality's measurements: its feature names once, then each sample's values. A
    sample of the request missing here lacks this modality (answered without it)."""

    model_config = ConfigDict(extra="forbid")

    features: list[FeatureId] = Field(min_length=1)
    samples: list[ModalitySample] = Field(min_length=1)


class MultiOmicsIn(BaseModel):
    """A multi-omics classify request: the expression block (records or matrix, as for any
    model) and one block per added modality the samples have (GET /v1/models/{name}: the
    card's `modalities`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "expression": {
                        "genes": ["CD3E", "CD14"],
                        "samples": [{"id": "S1", "values": [5.0, 0.0]}],
                    },
                    "modalities": {
                        "protein": {
                            "features": ["CD3", "CD14"],
                            "samples": [{"id": "S1", "values": [120.5, 3.2]}],
                        }
                    },
                }
            ]
        },
    )

    expression: dict[str, Any] = Field(
        description="Profiles as for a single-modality model: {genes, samples} or "
        "{genes, sample_ids, values}."
    )
    modalities: dict[str, ModalityBlock] = Field(default_factory=dict)


class ModalityOverlap(BaseModel):
    """How one modality's block met the model's features."""

    sent: bool = Field(description="False: no block; every sample answered without it.")
    n_samples_present: int = Field(description="Samples of the request that have it.")
    matched: int = Field(description="The model's features found in the block.")
    n_features: int
    fraction: float
    missing_features: list[str] = Field(description="Filled with training means (≤ 50 listed).")
    n_missing: int
    n_unused_input_features: int = Field(description="Block features the model does not use.")


class MultiOmicsPrediction(SamplePrediction):
    missing_modalities: list[str] = Field(
        description="The model's modalities this sample was answered without."
    )


class MultiOmicsClassifyOut(ClassifyOut):
    predictions: list[MultiOmicsPrediction]  # type: ignore[assignment]
    modality_overlap: dict[str, ModalityOverlap] = Field(
        description="Per added modality, how its block met the model's features."
    )

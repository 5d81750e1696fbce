"""The added inputs of a multi-omics model: one per modality besides expression (the card's
``modalities``).

A multi-omics graph takes ``expression`` (the gene panel, as a single-modality model does) and
one input per added modality, named by the modality, (batch, n_features) on the modality's raw
scale (β-values, abundances, copy numbers). **Missing modality: a row that is all NaN** in a
modality's input means the sample has no measurement of it; the graph zeroes that modality's
embedding and sets its presence flag to 0 (`training.multiomics.network`). A NaN in a present row
is a missing feature and counts as the feature's training mean. The service never forwards a NaN it
was sent: it refuses non-finite values, and writes NaN rows itself for absent blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

EXPRESSION = "expression"
MODALITY_NAME = r"^[a-z][a-z0-9_]{0,31}$"
# β-values are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before log2(β / (1 - β))
LOGIT_EPS = 1e-3


class ModalityInput(BaseModel):
    """One added modality: its graph input, features in column order and how they are filled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=MODALITY_NAME, description="The graph input's name.")
    features: list[str] = Field(min_length=1, description="Feature ids in input column order.")
    transform: Literal["none", "logit"] = Field(
        default="none",
        description="logit: β-values to M-values, log2(β / (1 - β)) after clipping to "
        f"[{LOGIT_EPS}, 1 - {LOGIT_EPS}], before standardisation (in the graph).",
    )
    preprocessing: list[str] = Field(
        default_factory=lambda: ["standardize"],
        description="The steps the graph applies, in order (standardize: the training rows' "
        "per-feature mean and sd).",
    )
    fill_policy: Literal["training_mean"] = "training_mean"
    fill_values: list[float] = Field(
        description="Value, on the raw scale, given to a feature a present block lacks."
    )
    missing: Literal["nan_row"] = Field(
        default="nan_row",
        description="How a sample without this modality is sent: a row of NaN in its input.",
    )
    n_train_present: int = Field(
        default=0, ge=0, description="Training samples that had this modality."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.name == EXPRESSION:
            raise ValueError(f"{EXPRESSION!r} is the expression input, not an added modality")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"modality {self.name!r}: feature ids must be unique")
        if len(self.fill_values) != len(self.features):
            raise ValueError(
                f"modality {self.name!r}: {len(self.fill_values)} fill values for "
                f"{len(self.features)} features"
            )
        return self

    @property
    def n_features(self) -> int:
        return len(self.features)


def columns(n_genes: int, modalities: Sequence[ModalityInput]) -> list[tuple[str, int, int]]:
    """Each graph input's name and its columns in the service's packed rows: the panel's genes,
    then every modality's features (the batcher queues one matrix; the backend splits it)."""
    spans, start = [(EXPRESSION, 0, n_genes)], n_genes
    for m in modalities:
        spans.append((m.name, start, start + m.n_features))
        start += m.n_features
    return spans


def packed_fill(panel_fill: Sequence[float], modalities: Sequence[ModalityInput]) -> list[float]:
    """A packed row of fill values: every gene and every feature at its training mean."""
    return [*panel_fill, *(v for m in modalities for v in m.fill_values)]

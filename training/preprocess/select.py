"""Unsupervised gene selection in front of an encoder, fitted with the rest of the preprocessing.

A wide input (e.g. 47,000 genes) can train a narrower encoder: the pipeline keeps the panel as
its input, and a `SelectGenes` step (`contract.preprocess.select`: top variance, or Seurat-style
dispersion) after the scale steps keeps N genes, so the exported graph still takes the whole
panel and selects inside ONNX. The selection is fitted on the pretraining samples only and never
sees a label; fine-tuning inherits it with the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.card import InputScale
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import SELECT_BY, SelectBy


@dataclass(frozen=True)
class GeneSelection:
    """Keep the `n` genes of highest variance or dispersion (on the log scale, before z-scores).

    Parameters
    ----------
    n:
        Genes kept; fewer than the panel has.
    by:
        ``variance`` or ``dispersion`` (variance over mean, z-scored within bins of mean
        expression, as Seurat's highly variable genes).
    """

    n: int
    by: SelectBy = "variance"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"the number of selected genes must be at least 1, got {self.n}")
        if self.by not in SELECT_BY:
            raise ValueError(f"gene selection must be by one of {SELECT_BY}, got {self.by!r}")


def fit_pipeline(
    matrix: ExpressionMatrix,
    input_scale: InputScale | str,
    *,
    clip: float | None = 10.0,
    select: GeneSelection | None = None,
) -> PreprocessPipeline:
    """`PreprocessPipeline.fit`'s steps, with `select`'s gene selection before the z-scores.

    Parameters
    ----------
    matrix:
        The pretraining samples (never labels, never held-out samples).
    input_scale:
        Scale of ``matrix.X`` (see `PreprocessPipeline.fit`).
    clip:
        Symmetric clip of the z-scores.
    select:
        Genes to keep; ``None`` keeps the whole panel.
    """
    if select is None:
        return PreprocessPipeline.fit(matrix, input_scale, clip=clip)
    if select.n >= matrix.shape[1]:
        raise ValueError(
            f"--select-genes {select.n} keeps every gene of a {matrix.shape[1]}-gene panel; "
            "give fewer, or leave selection out"
        )
    scale = InputScale(input_scale)
    if scale in (InputScale.counts, InputScale.normalized) and bool(np.any(matrix.X < 0)):
        raise ValueError(f"{scale.value} input must be non-negative")
    # the steps PreprocessPipeline.fit makes, with the selection after the log: variance and
    # dispersion are then measured on the scale the encoder sees, and library sizes still
    # count every gene
    recipe: list[dict[str, Any]] = []
    if scale is InputScale.counts:
        recipe.append({"step": "normalize_total"})
    if scale in (InputScale.counts, InputScale.normalized):
        recipe.append({"step": "log1p"})
    step = "select_variance" if select.by == "variance" else "select_hvg"
    recipe.append({"step": step, "n": select.n})
    if scale is not InputScale.standardized:
        recipe.append({"step": "standardize", "clip": clip})
    return PreprocessPipeline.fit_recipe(matrix, scale, recipe)


def output_width(pipeline: PreprocessPipeline) -> int:
    """How many features the pipeline gives an encoder (the panel, or the genes selected)."""
    return len(pipeline.output_names())

"""Fitting a recipe, step by step, on training samples: per-sample steps and at most one ComBat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.matrix import ExpressionMatrix
from contract.preprocess.combat import ComBatModel, fit_combat
from contract.preprocess.select import fit_step
from contract.preprocess.steps import MedianOfRatios, Step


@dataclass(frozen=True)
class FittedRecipe:
    """The fitted per-sample steps, and ComBat with the step index it runs before."""

    steps: list[Step]
    combat: ComBatModel | None
    combat_at: int
    batch_column: str | None


def fit_recipe_steps(
    matrix: ExpressionMatrix,
    recipe: Sequence[Mapping[str, Any]],
    gene_lengths: Mapping[str, float] | None,
) -> FittedRecipe:
    """Fit each step on the output of the previous ones (see `PreprocessPipeline.fit_recipe`)."""
    X = matrix.X
    if not np.isfinite(X).all():
        raise ValueError("the training matrix has missing or infinite values: run QC first")
    steps: list[Step] = []
    combat, combat_at, batch_column = None, 0, None
    genes = list(matrix.gene_ids)
    raw = None  # (counts, size factors) while X is the output of median_of_ratios
    for spec in recipe:
        if spec.get("step") == "combat":
            if combat is not None:
                raise ValueError("a recipe can hold one combat step")
            batch_column = str(spec.get("batch", "batch"))
            combat, corrected = fit_combat(
                X,
                matrix.labels(batch_column),
                obs=matrix.obs,
                covariates=tuple(spec.get("covariates", ())),
                reference=spec.get("reference"),
                parametric=bool(spec.get("parametric", True)),
            )
            X, combat_at, raw = corrected.astype(np.float32), len(steps), None
            continue
        step = fit_step(spec, X, genes, gene_lengths, raw)
        raw = (X, step.factors(X)) if isinstance(step, MedianOfRatios) else None
        X = step.transform(X)
        indices = getattr(step, "indices", None)
        if indices is not None:  # later steps (select_genes by name) see the kept genes only
            genes = [genes[int(j)] for j in indices]
        steps.append(step)
    return FittedRecipe(steps, combat, combat_at, batch_column)

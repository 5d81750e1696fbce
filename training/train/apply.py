"""Applying a fitted encoder and head to a matrix: embeddings, probabilities, values (no grads)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import MISSING_LABELS


def numeric_target(matrix: ExpressionMatrix, column: str) -> npt.NDArray[np.float64]:
    """An obs column as floats; ValueError naming the samples whose value is not a number."""
    raw = matrix.labels(column)
    values = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(np.float64)
    bad = [s for s, v in zip(matrix.sample_ids, values, strict=True) if not np.isfinite(v)]
    if bad:
        raise ValueError(
            f"obs column {column!r} is not numeric (or missing) for {len(bad)} samples: {bad[:10]}"
        )
    return values


def labelled_rows(matrix: ExpressionMatrix, column: str) -> npt.NDArray[np.bool_]:
    """Which rows have a value in obs `column` (not missing, not blank)."""
    if column not in matrix.obs.columns:
        raise KeyError(f"no obs column {column!r}; have {list(matrix.obs.columns)}")
    values = matrix.obs[column]
    blank = values.astype(str).str.strip().isin(MISSING_LABELS)
    return np.asarray(~(values.isna() | blank), dtype=bool)


def split_unlabelled(
    matrix: ExpressionMatrix, column: str | Sequence[str]
) -> tuple[ExpressionMatrix, ExpressionMatrix | None]:
    """The rows with a label in `column` (several columns: in any of them), and those without
    (``None`` when every row has one)."""
    columns = [column] if isinstance(column, str) else list(column)
    has = np.zeros(matrix.shape[0], dtype=bool)
    for name in columns:
        has |= labelled_rows(matrix, name)
    if has.all():
        return matrix, None
    if not has.any():
        what = repr(columns[0]) if len(columns) == 1 else f"any of {columns}"
        raise ValueError(f"no row has a value in the label column {what}")
    return matrix.take(has), matrix.take(~has)


def stack_rows(first: ExpressionMatrix, second: ExpressionMatrix) -> ExpressionMatrix:
    """The rows of both matrices (the same genes, in `first`'s order), obs columns joined."""
    if set(first.gene_ids) != set(second.gene_ids):
        raise ValueError(
            "the rows without a label in --data and in --unlabelled have different genes; "
            "give them in one place"
        )
    column = {g: j for j, g in enumerate(second.gene_ids)}
    order = [column[g] for g in first.gene_ids]
    return ExpressionMatrix(
        X=np.concatenate([first.X, second.X[:, order]]),
        sample_ids=[*first.sample_ids, *second.sample_ids],
        gene_ids=list(first.gene_ids),
        obs=pd.concat([first.obs, second.obs]),
    )


def check_panel(matrix: ExpressionMatrix, pipeline: PreprocessPipeline) -> None:
    """ValueError unless the matrix's genes are the pipeline's panel, in order."""
    if matrix.gene_ids != pipeline.gene_ids:
        raise ValueError("the matrix's genes differ from the pipeline's panel; align them first")


@torch.no_grad()
def embed(
    encoder: nn.Module, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> torch.Tensor:
    """Encoder output for preprocessed `matrix`, computed in eval mode without gradients."""
    check_panel(matrix, pipeline)
    was_training = encoder.training
    encoder.eval()
    out: torch.Tensor = encoder(torch.from_numpy(pipeline.transform(matrix.X)))
    encoder.train(was_training)
    return out


@torch.no_grad()
def _head_outputs(
    encoder: nn.Module, head: nn.Module, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> torch.Tensor:
    """The head's outputs on the embedding of `matrix`, in eval mode, without gradients."""
    head.eval()
    out: torch.Tensor = head(embed(encoder, pipeline, matrix))
    return out


def predict_proba(
    encoder: nn.Module, head: nn.Module, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> npt.NDArray[np.float32]:
    """Class probabilities (n_samples, n_classes) of a fitted encoder + head."""
    proba: npt.NDArray[np.float32] = torch.softmax(
        _head_outputs(encoder, head, pipeline, matrix), dim=1
    ).numpy()
    return proba


def predict_values(
    encoder: nn.Module, head: nn.Module, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> npt.NDArray[np.float32]:
    """Regression predictions (n_samples,) of a fitted encoder + regression head."""
    values: npt.NDArray[np.float32] = _head_outputs(encoder, head, pipeline, matrix)[:, 0].numpy()
    return values


def predict_labels(proba: npt.NDArray[np.float32], labels: Sequence[str]) -> list[str]:
    """The most probable label per row of `proba`."""
    return [labels[i] for i in np.argmax(proba, axis=1)]

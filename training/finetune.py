"""Fine-tuning a classifier head on a pretrained encoder's embedding of labelled samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from training.config import TrainConfig
from training.data.matrix import ExpressionMatrix
from training.evaluate import stratified_split
from training.loop import History, seeded, train_loop
from training.nn.heads import ClassifierHead, ClassifierHeadConfig
from training.preprocess.pipeline import PreprocessPipeline

Strategy = Literal["frozen"]
STRATEGIES: tuple[Strategy, ...] = ("frozen",)


@dataclass(frozen=True)
class FinetuneResult:
    """A trained head, its label names (logit order) and how training went."""

    head: ClassifierHead
    labels: list[str]
    history: History
    val_sample_ids: list[str]
    strategy: Strategy


def finetune_classifier(
    encoder: nn.Module,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    label_column: str,
    head_cfg: ClassifierHeadConfig,
    train_cfg: TrainConfig,
    *,
    strategy: Strategy = "frozen",
    progress: bool | None = None,
) -> FinetuneResult:
    """Train a classifier head on `encoder`'s embedding of `matrix`, early-stopped.

    Parameters
    ----------
    encoder:
        Maps preprocessed input (batch, n_genes) to embeddings (batch, head_cfg.n_in), e.g.
        ``DenseAutoencoder.encoder``. It is not modified.
    pipeline:
        The preprocessing the encoder was pretrained with.
    matrix:
        Labelled training samples (hold the test samples out beforehand), panel gene order.
    label_column:
        ``matrix.obs`` column with the class of each sample.
    head_cfg:
        Head shape; ``n_classes`` must equal the number of distinct labels.
    train_cfg:
        Optimisation settings; a stratified ``val_fraction`` split drives early stopping.
    strategy:
        ``"frozen"``: the encoder's weights stay fixed and only the head learns (feature
        extraction). Other strategies are to come.
    progress:
        Progress bar: ``True``/``False``, or ``None`` for "only on a terminal".
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    names = matrix.labels(label_column)
    labels = sorted(set(names))
    if head_cfg.n_classes != len(labels):
        raise ValueError(
            f"head_cfg.n_classes={head_cfg.n_classes} but there are {len(labels)} labels"
        )
    y = torch.tensor([labels.index(n) for n in names], dtype=torch.long)
    features = embed(encoder, pipeline, matrix)
    if features.shape[1] != head_cfg.n_in:
        raise ValueError(
            f"the encoder gives {features.shape[1]} features, head_cfg.n_in={head_cfg.n_in}"
        )
    train_idx, val_idx = (
        torch.from_numpy(i) for i in stratified_split(names, train_cfg.val_fraction, train_cfg.seed)
    )
    counts = torch.bincount(y[train_idx], minlength=len(labels)).clamp(min=1).float()
    # "balanced" weights (n / (k * count)) so rare classes count as much as common ones
    weights = len(train_idx) / (len(labels) * counts)
    criterion = nn.CrossEntropyLoss(weight=weights)

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        loss: torch.Tensor = criterion(model(x), target)
        return loss

    with seeded(train_cfg.seed):
        head = ClassifierHead(head_cfg)
        history = train_loop(
            head,
            loss_fn,
            (features[train_idx], y[train_idx]),
            (features[val_idx], y[val_idx]),
            train_cfg,
            progress=progress,
            description="finetune",
        )
    return FinetuneResult(
        head=head,
        labels=labels,
        history=history,
        val_sample_ids=[matrix.sample_ids[i] for i in val_idx.tolist()],
        strategy=strategy,
    )


@torch.no_grad()
def embed(
    encoder: nn.Module, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> torch.Tensor:
    """Encoder output for preprocessed `matrix`, computed in eval mode without gradients."""
    if matrix.gene_ids != pipeline.gene_ids:
        raise ValueError("the matrix's genes differ from the pipeline's panel; align them first")
    was_training = encoder.training
    encoder.eval()
    out: torch.Tensor = encoder(torch.from_numpy(pipeline.transform(matrix.X)))
    encoder.train(was_training)
    return out


@torch.no_grad()
def predict_proba(
    encoder: nn.Module, head: nn.Module, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> npt.NDArray[np.float32]:
    """Class probabilities (n_samples, n_classes) of a fitted encoder + head."""
    head.eval()
    proba: npt.NDArray[np.float32] = torch.softmax(
        head(embed(encoder, pipeline, matrix)), dim=1
    ).numpy()
    return proba


def predict_labels(proba: npt.NDArray[np.float32], labels: Sequence[str]) -> list[str]:
    """The most probable label per row of `proba`."""
    return [labels[i] for i in np.argmax(proba, axis=1)]

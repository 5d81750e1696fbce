"""Fine-tuning a pretrained encoder plus a new head on labelled target samples.

Strategies (Howard & Ruder 2018; Yosinski et al. 2014): ``frozen`` trains the head on fixed
features; ``partial`` also trains the top k encoder layers; ``gradual`` unfreezes one more layer
per stage, top down, each stage early-stopped; ``full`` trains everything with the encoder at a
lower learning rate. The encoder passed in is never modified: the others train a copy.

Rows without a label can join in: domain adaptation aligns the domains' embeddings
(`training.methods.adapt`), semi-supervision fits the model's own confident or noise-stable
predictions on them (`training.methods.semisup`); `training.methods.options.FinetuneOptions` says
which. Early stopping never ends at chance and copes
with two labelled samples per class (`training.train.validation`, `training.train.loop`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import Strategy
from training.methods.options import FinetuneOptions
from training.methods.staged import Unlabelled, fit_encoder
from training.nn.checkpoint import build_module
from training.nn.config import TrainConfig
from training.nn.device import cpu_threads_for, resolve_device
from training.nn.heads import ClassifierHeadConfig, MultiTaskHeadConfig, RegressorHeadConfig
from training.train.apply import embed, labelled_rows, numeric_target
from training.train.loop import History, LossFn, seeded, train_loop
from training.train.validation import (
    ValidationSplit,
    chance_cross_entropy,
    chance_mse,
    class_split,
    random_split,
)


@dataclass(frozen=True)
class FinetuneResult:
    """The trained head and encoder (the input one when frozen), labels and how training went."""

    head: nn.Module
    encoder: nn.Module
    labels: list[str]
    history: History
    val_sample_ids: list[str]
    strategy: Strategy
    options: FinetuneOptions = field(default_factory=FinetuneOptions)
    n_unlabelled: int = 0


def finetune_classifier(
    encoder: nn.Module,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    label_column: str,
    head_cfg: ClassifierHeadConfig,
    train_cfg: TrainConfig,
    *,
    strategy: Strategy | FinetuneOptions = "frozen",
    progress: bool | None = None,
    unlabelled: ExpressionMatrix | None = None,
    domain_column: str | None = None,
) -> FinetuneResult:
    """Train a classifier head (and, by strategy, the encoder) with class-weighted cross-entropy.

    Parameters
    ----------
    encoder:
        Maps preprocessed input (batch, n_genes) to embeddings (batch, head_cfg.n_in), e.g.
        ``autoencoder.encoder``. It is not modified.
    pipeline:
        The preprocessing the encoder was pretrained with.
    matrix:
        Labelled training samples (hold the test samples out beforehand), panel gene order.
    label_column:
        ``matrix.obs`` column with the class of each sample; every row needs one.
    head_cfg:
        Head shape; ``n_classes`` must equal the number of distinct labels.
    train_cfg:
        Optimisation settings; a stratified ``val_fraction`` split drives early stopping (the
        training loss when a class has fewer than 3 samples, see `training.train.validation`).
    strategy:
        A strategy name or full `FinetuneOptions` (adaptation, semi-supervision, device).
    progress:
        Progress bar: ``True``/``False``, or ``None`` for "only on a terminal".
    unlabelled:
        Rows without a label (e.g. the new domain's samples), panel gene order like `matrix`;
        used by adaptation and semi-supervision.
    domain_column:
        obs column of `matrix` and `unlabelled` naming each row's batch or lab, the domains
        adaptation aligns; without it they are "labelled" vs "unlabelled".
    """
    options = strategy if isinstance(strategy, FinetuneOptions) else FinetuneOptions(strategy)
    _refuse_unlabelled_rows(matrix, label_column)
    names = matrix.labels(label_column)
    labels = sorted(set(names))
    if head_cfg.n_classes != len(labels):
        raise ValueError(
            f"head_cfg.n_classes={head_cfg.n_classes} but there are {len(labels)} labels"
        )
    y = torch.tensor([labels.index(n) for n in names], dtype=torch.long)
    split = class_split(names, train_cfg.val_fraction, train_cfg.seed)
    counts = torch.bincount(y[split.train], minlength=len(labels)).clamp(min=1).float()
    # "balanced" weights (n / (k * count)) so rare classes count as much as common ones
    weight = len(split.train) / (len(labels) * counts)
    criterion = nn.CrossEntropyLoss(weight=weight)

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        loss: torch.Tensor = criterion.to(x.device)(model(x).float(), target)
        return loss

    task = _Task(y, split, loss_fn, labels, chance_cross_entropy(len(labels)), weight)
    rows = Unlabelled(unlabelled, domain_column)
    return _finetune(encoder, head_cfg, pipeline, matrix, task, train_cfg, options, progress, rows)


def finetune_regressor(
    encoder: nn.Module,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    target_column: str,
    head_cfg: RegressorHeadConfig,
    train_cfg: TrainConfig,
    *,
    strategy: Strategy | FinetuneOptions = "frozen",
    progress: bool | None = None,
    unlabelled: ExpressionMatrix | None = None,
    domain_column: str | None = None,
) -> FinetuneResult:
    """Train a regression head on a numeric obs column (MSE on standardised targets).

    Parameters are those of `finetune_classifier`, with `target_column` a numeric obs column and
    a single-output `head_cfg`. The returned head predicts on the column's own scale: the
    target standardisation is folded into its last layer. ``labels`` holds the column name.
    Semi-supervision is ``consistency`` only (pseudo-labels need classes); with fewer than 10
    labelled rows early stopping watches the training loss.
    """
    options = strategy if isinstance(strategy, FinetuneOptions) else FinetuneOptions(strategy)
    if head_cfg.n_targets != 1:
        raise ValueError("finetune_regressor trains one target; n_targets must be 1")
    if options.semi_supervised == "pseudo_label":
        raise ValueError("pseudo-labels need classes: use consistency for regression")
    _refuse_unlabelled_rows(matrix, target_column)
    values = numeric_target(matrix, target_column)
    split = random_split(len(values), train_cfg.val_fraction, train_cfg.seed)
    mean, std = float(values[split.train].mean()), float(values[split.train].std()) or 1.0
    standardised = (values - mean) / std
    y = torch.tensor(standardised, dtype=torch.float32).unsqueeze(1)

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        return nn.functional.mse_loss(model(x).float(), target)

    task = _Task(y, split, loss_fn, [target_column], chance_mse(standardised[split.val]), None)
    rows = Unlabelled(unlabelled, domain_column)
    result = _finetune(
        encoder, head_cfg, pipeline, matrix, task, train_cfg, options, progress, rows
    )
    last = [m for m in result.head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # y = std * (W z + b) + mean, exactly
        last.weight.mul_(std)
        last.bias.mul_(std).add_(mean)
    return result


class _Task(NamedTuple):
    """What a head learns: per-sample targets, the validation split, the loss, the names of its
    outputs, the validation loss at chance, and the class weights (classification)."""

    y: torch.Tensor
    split: ValidationSplit
    loss_fn: LossFn
    labels: list[str]
    chance: float
    class_weight: torch.Tensor | None


def _refuse_unlabelled_rows(matrix: ExpressionMatrix, column: str) -> None:
    missing = ~labelled_rows(matrix, column)
    if missing.any():
        ids = [s for s, m in zip(matrix.sample_ids, missing, strict=True) if m]
        raise ValueError(
            f"{len(ids)} rows have no value in {column!r} (e.g. {ids[:5]}); pass rows without "
            "a label as unlabelled="
        )


def _finetune(
    encoder: nn.Module,
    head_cfg: ClassifierHeadConfig | RegressorHeadConfig | MultiTaskHeadConfig,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    task: _Task,
    cfg: TrainConfig,
    options: FinetuneOptions,
    progress: bool | None,
    rows: Unlabelled,
) -> FinetuneResult:
    """A new head (seeded) trained for `task`; by the strategy in `options`, the encoder too.

    Every fine-tuning path (the CLI, a job's published model, the choice's inner fits, tuning)
    trains here, so a small model gets one CPU thread here (`cpu_threads_for`): in a job's
    thread on the 2-core machine, two threads made the published model's 316 epochs take 92 s
    where one took 3 s."""
    with cpu_threads_for(pipeline.n_genes):
        return _train(encoder, head_cfg, pipeline, matrix, task, cfg, options, progress, rows)


def _train(
    encoder: nn.Module,
    head_cfg: ClassifierHeadConfig | RegressorHeadConfig | MultiTaskHeadConfig,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    task: _Task,
    cfg: TrainConfig,
    options: FinetuneOptions,
    progress: bool | None,
    rows: Unlabelled,
) -> FinetuneResult:
    device = resolve_device(options.device)
    with seeded(cfg.seed):
        head = build_module(head_cfg)
    split = task.split
    val_ids = [] if split.on_training_loss else [matrix.sample_ids[i] for i in split.val]
    notes = rows.check(options, matrix, pipeline)
    uses_rows = options.adaptation != "none" or options.semi_supervised != "none"
    if options.strategy == "frozen" and not uses_rows:
        # fixed features: embed once, then only the head sees minibatches
        features = embed(encoder, pipeline, matrix)
        if features.shape[1] != _n_in(head):
            raise ValueError(
                f"the encoder gives {features.shape[1]} features, head n_in={_n_in(head)}"
            )
        train_idx, val_idx = torch.from_numpy(split.train), torch.from_numpy(split.val)
        with seeded(cfg.seed):
            history = train_loop(
                head,
                task.loss_fn,
                (features[train_idx], task.y[train_idx]),
                (features[val_idx], task.y[val_idx]),
                cfg,
                progress=progress,
                description="finetune",
                device=device,
                min_epochs=options.min_epochs,
                chance=task.chance,
            )
        tuned = encoder
    else:
        tuned = encoder if options.strategy == "frozen" else copy.deepcopy(encoder)
        history = fit_encoder(
            tuned, head, pipeline, matrix, task, cfg, options, rows, progress, device
        )
    history.validation = split.validation
    history.notes[:0] = notes
    return FinetuneResult(
        head, tuned, task.labels, history, val_ids, options.strategy, options, rows.count
    )


def _n_in(head: nn.Module) -> int:
    config = getattr(head, "config", None)
    return int(getattr(config, "n_in", -1))


__all__ = ["FinetuneResult", "finetune_classifier", "finetune_regressor"]

"""Fine-tuning a pretrained encoder plus a new head on labelled target samples.

Strategies (Howard & Ruder 2018; Yosinski et al. 2014): ``frozen`` trains the head on fixed
features; ``partial`` also trains the top k encoder layers; ``gradual`` unfreezes one more layer
per stage, top down, each stage early-stopped; ``full`` trains everything with the encoder at a
lower learning rate. The encoder passed in is never modified: the others train a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import STRATEGIES, Strategy
from training.evaluation.splits import stratified_split
from training.nn.checkpoint import build_module
from training.nn.config import TrainConfig
from training.nn.heads import ClassifierHeadConfig, RegressorHeadConfig
from training.nn.variants import encoder_layers
from training.train.apply import check_panel, embed, numeric_target
from training.train.loop import History, LossFn, seeded, train_loop


@dataclass(frozen=True)
class FinetuneOptions:
    """How much of the encoder learns.

    Parameters
    ----------
    strategy:
        ``frozen``, ``partial``, ``gradual`` or ``full`` (see the module docstring).
    unfreeze_top:
        ``partial``: how many encoder linear layers, counted from the embedding, train.
    encoder_lr_scale:
        Encoder learning rate as a share of the head's (``partial``, ``gradual``, ``full``).
    """

    strategy: Strategy = "frozen"
    unfreeze_top: int = 1
    encoder_lr_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.unfreeze_top < 1 or not 0.0 < self.encoder_lr_scale <= 1.0:
            raise ValueError("unfreeze_top must be >= 1 and encoder_lr_scale in (0, 1]")


@dataclass(frozen=True)
class FinetuneResult:
    """The trained head and encoder (the input one when frozen), labels and how training went."""

    head: nn.Module
    encoder: nn.Module
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
    strategy: Strategy | FinetuneOptions = "frozen",
    progress: bool | None = None,
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
        ``matrix.obs`` column with the class of each sample.
    head_cfg:
        Head shape; ``n_classes`` must equal the number of distinct labels.
    train_cfg:
        Optimisation settings; a stratified ``val_fraction`` split drives early stopping.
    strategy:
        A strategy name or full `FinetuneOptions`.
    progress:
        Progress bar: ``True``/``False``, or ``None`` for "only on a terminal".
    """
    options = strategy if isinstance(strategy, FinetuneOptions) else FinetuneOptions(strategy)
    names = matrix.labels(label_column)
    labels = sorted(set(names))
    if head_cfg.n_classes != len(labels):
        raise ValueError(
            f"head_cfg.n_classes={head_cfg.n_classes} but there are {len(labels)} labels"
        )
    y = torch.tensor([labels.index(n) for n in names], dtype=torch.long)
    # few-shot sets: raise the share just enough to give every class one validation sample
    fraction = min(max(train_cfg.val_fraction, len(labels) / len(names)), 0.5)
    train_idx, val_idx = stratified_split(names, fraction, train_cfg.seed)
    counts = torch.bincount(y[train_idx], minlength=len(labels)).clamp(min=1).float()
    # "balanced" weights (n / (k * count)) so rare classes count as much as common ones
    criterion = nn.CrossEntropyLoss(weight=len(train_idx) / (len(labels) * counts))

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        loss: torch.Tensor = criterion(model(x), target)
        return loss

    task = _Task(y, (train_idx, val_idx), loss_fn, labels)
    return _finetune(encoder, head_cfg, pipeline, matrix, task, train_cfg, options, progress)


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
) -> FinetuneResult:
    """Train a regression head on a numeric obs column (MSE on standardised targets).

    Parameters are those of `finetune_classifier`, with `target_column` a numeric obs column and
    a single-output `head_cfg`. The returned head predicts on the column's own scale: the
    target standardisation is folded into its last layer. ``labels`` holds the column name.
    """
    options = strategy if isinstance(strategy, FinetuneOptions) else FinetuneOptions(strategy)
    if head_cfg.n_targets != 1:
        raise ValueError("finetune_regressor trains one target; n_targets must be 1")
    values = numeric_target(matrix, target_column)
    n = len(values)
    n_val = max(1, round(train_cfg.val_fraction * n))
    order = np.random.default_rng(train_cfg.seed).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    mean, std = float(values[train_idx].mean()), float(values[train_idx].std()) or 1.0
    y = torch.tensor((values - mean) / std, dtype=torch.float32).unsqueeze(1)

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        return nn.functional.mse_loss(model(x), target)

    task = _Task(y, (train_idx, val_idx), loss_fn, [target_column])
    result = _finetune(encoder, head_cfg, pipeline, matrix, task, train_cfg, options, progress)
    last = [m for m in result.head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # y = std * (W z + b) + mean, exactly
        last.weight.mul_(std)
        last.bias.mul_(std).add_(mean)
    return result


class _Task(NamedTuple):
    """What a head learns: per-sample targets, the train/validation split, the loss, the names
    of its outputs."""

    y: torch.Tensor
    split: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
    loss_fn: LossFn
    labels: list[str]


def _finetune(
    encoder: nn.Module,
    head_cfg: ClassifierHeadConfig | RegressorHeadConfig,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    task: _Task,
    cfg: TrainConfig,
    options: FinetuneOptions,
    progress: bool | None,
) -> FinetuneResult:
    """A new head (seeded) trained for `task`; by the strategy in `options`, the encoder too."""
    with seeded(cfg.seed):
        head = build_module(head_cfg)
    y, loss_fn = task.y, task.loss_fn
    train_idx, val_idx = (torch.from_numpy(np.asarray(i, dtype=np.int64)) for i in task.split)
    val_ids = [matrix.sample_ids[i] for i in val_idx.tolist()]
    if options.strategy == "frozen":
        # fixed features: embed once, then only the head sees minibatches
        features = embed(encoder, pipeline, matrix)
        if features.shape[1] != _n_in(head):
            raise ValueError(
                f"the encoder gives {features.shape[1]} features, head n_in={_n_in(head)}"
            )
        with seeded(cfg.seed):
            history = train_loop(
                head,
                loss_fn,
                (features[train_idx], y[train_idx]),
                (features[val_idx], y[val_idx]),
                cfg,
                progress=progress,
                description="finetune",
            )
        return FinetuneResult(head, encoder, task.labels, history, val_ids, options.strategy)
    check_panel(matrix, pipeline)
    tuned = copy.deepcopy(encoder)
    model = nn.Sequential(tuned, head)
    X = torch.from_numpy(pipeline.transform(matrix.X))
    train, val = (X[train_idx], y[train_idx]), (X[val_idx], y[val_idx])
    layers = encoder_layers(tuned)
    if options.strategy == "gradual":
        stages = [0, *range(1, len(layers) + 1)]
    elif options.strategy == "partial":
        stages = [min(options.unfreeze_top, len(layers))]
    else:
        stages = [len(layers)]
    histories: list[History] = []
    for stage, n_open in enumerate(stages):
        for p in tuned.parameters():
            p.requires_grad_(False)
        opened = [p for layer in layers[len(layers) - n_open :] for p in layer.parameters()]
        for p in opened:
            p.requires_grad_(True)
        groups: list[dict[str, Any]] = [{"params": list(head.parameters())}]
        if opened:
            groups.append({"params": opened, "lr": cfg.lr * options.encoder_lr_scale})
        with seeded(cfg.seed + stage):
            histories.append(
                train_loop(
                    model,
                    loss_fn,
                    train,
                    val,
                    cfg,
                    progress=progress,
                    description=f"finetune {options.strategy} {stage}",
                    groups=groups,
                )
            )
    for p in tuned.parameters():
        p.requires_grad_(True)
    tuned.eval()
    return FinetuneResult(head, tuned, task.labels, _merge(histories), val_ids, options.strategy)


def _merge(histories: Sequence[History]) -> History:
    merged = History()
    for h in histories:
        offset = len(merged.val_loss)
        merged.train_loss += h.train_loss
        merged.val_loss += h.val_loss
        merged.seconds += h.seconds
        merged.stopped_early = h.stopped_early
        # each stage starts from the previous stage's best weights, so the last stage's best
        # is the kept state
        merged.best_epoch = offset + h.best_epoch
    return merged


def _n_in(head: nn.Module) -> int:
    config = getattr(head, "config", None)
    return int(getattr(config, "n_in", -1))

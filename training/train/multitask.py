"""Multi-task fine-tuning: one shared encoder, a head per label column, a weighted sum of losses.

Each task is an obs column, classification or regression, with a weight. The loss is
Σ weight_t · loss_t, where loss_t is the task's own single-task loss (class-weighted
cross-entropy, or MSE on the standardised target) over the minibatch rows that have its label:
a row missing one task's label is masked for that task, not dropped. The strategies (frozen,
partial, gradual, full) and domain adaptation are those of `training.train.finetune`, through
the same loop; semi-supervision is single-task only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import TASKS, Task
from training.methods.options import FinetuneOptions
from training.methods.staged import Unlabelled
from training.nn.config import TrainConfig
from training.nn.heads import MultiTaskHead, MultiTaskHeadConfig
from training.train.apply import labelled_rows
from training.train.finetune import FinetuneResult, _finetune, _Task
from training.train.loop import LossFn
from training.train.validation import chance_cross_entropy, random_split


@dataclass(frozen=True)
class TaskSpec:
    """One task of a multi-task fine-tune: the obs column, its kind and its loss weight."""

    column: str
    kind: Task = "classification"
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.column:
            raise ValueError("a task needs a label column")
        if self.kind not in TASKS:
            raise ValueError(
                f"task {self.column!r}: kind must be one of {TASKS}, not {self.kind!r}"
            )
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"task {self.column!r}: weight must be positive, got {self.weight}")


@dataclass(frozen=True)
class FittedTask:
    """A task after fitting: its spec, its labels (classes, or the column) and labelled rows."""

    spec: TaskSpec
    labels: list[str]
    n_labelled: int


@dataclass(frozen=True)
class MultitaskResult:
    """The fitted encoder + multi-task head, each task's labels, and how training went."""

    fit: FinetuneResult
    tasks: list[FittedTask]

    @property
    def head(self) -> MultiTaskHead:
        """The multi-task head (regression outputs on their columns' own scales)."""
        assert isinstance(self.fit.head, MultiTaskHead)
        return self.fit.head


def check_tasks(tasks: Sequence[TaskSpec], columns: Sequence[str]) -> None:
    """ValueError for no task or a repeated column, KeyError naming the columns not in `columns`."""
    if not tasks:
        raise ValueError("a multi-task fine-tune needs at least one task")
    names = [t.column for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"each label column may be one task only; repeated: {repeated}")
    missing = [n for n in names if n not in columns]
    if missing:
        raise KeyError(f"no label column {missing}; the data has {list(columns)}")


def any_label(matrix: ExpressionMatrix, tasks: Sequence[TaskSpec]) -> np.ndarray:
    """Which rows have a label in at least one task (the others are unlabelled rows)."""
    has = np.zeros(matrix.shape[0], dtype=bool)
    for task in tasks:
        has |= labelled_rows(matrix, task.column)
    return has


def _targets(
    matrix: ExpressionMatrix, tasks: Sequence[TaskSpec]
) -> tuple[torch.Tensor, list[list[str]], list[int]]:
    """(n, T) float targets (class index or raw value; NaN where missing), labels, counts."""
    y = np.full((matrix.shape[0], len(tasks)), np.nan)
    labels: list[list[str]] = []
    counts: list[int] = []
    for t, task in enumerate(tasks):
        has = labelled_rows(matrix, task.column)
        if not has.any():
            raise ValueError(f"task {task.column!r}: no training row has its label")
        raw = matrix.labels(task.column)
        if task.kind == "classification":
            classes = sorted({raw[i] for i in np.flatnonzero(has)})
            if len(classes) < 2:
                raise ValueError(f"task {task.column!r}: needs 2 classes, the data has {classes}")
            index = {c: k for k, c in enumerate(classes)}
            y[has, t] = [index[raw[i]] for i in np.flatnonzero(has)]
            labels.append(classes)
        else:
            values = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy()
            bad = [matrix.sample_ids[i] for i in np.flatnonzero(has & ~np.isfinite(values))]
            if bad:
                raise ValueError(
                    f"task {task.column!r} is a regression but {len(bad)} values are not "
                    f"numbers (samples {bad[:5]})"
                )
            y[has, t] = values[has]
            labels.append([task.column])
        counts.append(int(has.sum()))
    return torch.tensor(y, dtype=torch.float32), labels, counts


def finetune_multitask(
    encoder: nn.Module,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    tasks: Sequence[TaskSpec],
    train_cfg: TrainConfig,
    *,
    head_hidden: tuple[int, ...] = (),
    head_dropout: float = 0.0,
    strategy: FinetuneOptions | None = None,
    progress: bool | None = None,
    unlabelled: ExpressionMatrix | None = None,
    domain_column: str | None = None,
) -> MultitaskResult:
    """Fine-tune one encoder with a head per task on the weighted sum of the tasks' losses.

    Parameters
    ----------
    encoder:
        Maps preprocessed input to embeddings; it is not modified (the strategies train a copy).
    pipeline:
        The preprocessing the encoder was pretrained with.
    matrix:
        Training rows, panel gene order; each needs a label in at least one task (a row
        missing a task's label is masked for that task).
    tasks:
        The tasks, in output order.
    train_cfg:
        Optimisation settings; early stopping watches the weighted loss on a random
        validation part (the training loss below 10 rows).
    head_hidden, head_dropout:
        Every task head's hidden widths and dropout.
    strategy:
        How much of the encoder trains, and adaptation (no semi-supervision).
    progress, unlabelled, domain_column:
        As for `training.train.finetune.finetune_classifier`.
    """
    options = strategy or FinetuneOptions()
    if options.semi_supervised != "none":
        raise ValueError(
            f"semi-supervision ({options.semi_supervised}) is single-task only; a multi-task "
            "fine-tune masks each task's missing labels instead"
        )
    check_tasks(tasks, list(matrix.obs.columns))
    none = ~any_label(matrix, tasks)
    if none.any():
        ids = [s for s, m in zip(matrix.sample_ids, none, strict=True) if m][:5]
        raise ValueError(
            f"{int(none.sum())} rows have no label in any task (e.g. {ids}); pass them as "
            "unlabelled="
        )
    y, labels, counts = _targets(matrix, tasks)
    split = random_split(len(y), train_cfg.val_fraction, train_cfg.seed)
    train_y = y[torch.from_numpy(split.train)]
    weights: list[torch.Tensor | None] = []
    chances: list[float] = []
    scales: list[tuple[float, float]] = []
    for t, task in enumerate(tasks):
        col = train_y[:, t]
        seen = col[~torch.isnan(col)]
        if task.kind == "classification":
            k = len(labels[t])
            n_seen = torch.bincount(seen.long(), minlength=k).clamp(min=1).float()
            weights.append(len(seen) / (k * n_seen))  # "balanced", as single-task
            chances.append(chance_cross_entropy(k))
            scales.append((0.0, 1.0))
        else:
            if len(seen) == 0:
                raise ValueError(f"task {task.column!r}: no label outside the validation part")
            mean, std = float(seen.mean()), float(seen.std(unbiased=False)) or 1.0
            y[:, t] = (y[:, t] - mean) / std
            val = y[torch.from_numpy(split.val), t]
            val = val[~torch.isnan(val)]
            weights.append(None)
            chances.append(float(val.square().mean()) if len(val) else 1.0)
            scales.append((mean, std))
    cfg = MultiTaskHeadConfig(
        n_in=_latent(encoder, pipeline),
        tasks=tuple(t.column for t in tasks),
        kinds=tuple(t.kind for t in tasks),
        widths=tuple(
            len(lab) if t.kind == "classification" else 1
            for t, lab in zip(tasks, labels, strict=True)
        ),
        hidden=head_hidden,
        dropout=head_dropout,
    )
    loss_fn = weighted_loss(cfg, [t.weight for t in tasks], weights)
    chance = sum(t.weight * c for t, c in zip(tasks, chances, strict=True))
    learn = _Task(y, split, loss_fn, [t.column for t in tasks], chance, None)
    rows = Unlabelled(unlabelled, domain_column)
    fit = _finetune(encoder, cfg, pipeline, matrix, learn, train_cfg, options, progress, rows)
    head = fit.head
    assert isinstance(head, MultiTaskHead)
    for sub, (mean, std), spec in zip(head.heads, scales, tasks, strict=True):
        if spec.kind == "regression":
            last = [m for m in sub.modules() if isinstance(m, nn.Linear)][-1]
            with torch.no_grad():  # y = std * (W z + b) + mean, exactly
                last.weight.mul_(std)
                last.bias.mul_(std).add_(mean)
    fitted = [FittedTask(s, lab, n) for s, lab, n in zip(tasks, labels, counts, strict=True)]
    return MultitaskResult(fit, fitted)


def weighted_loss(
    cfg: MultiTaskHeadConfig,
    task_weights: Sequence[float],
    class_weights: Sequence[torch.Tensor | None],
) -> LossFn:
    """Σ weight_t · loss_t over the rows with task t's label (NaN targets are masked)."""
    slices = cfg.slices()

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        out = model(x).float()
        total = out.sum() * 0.0  # a batch with no label in any task adds nothing
        for t, (where, kind) in enumerate(zip(slices, cfg.kinds, strict=True)):
            mask = ~torch.isnan(target[:, t])
            if not mask.any():
                continue
            if kind == "classification":
                w = class_weights[t]
                term = nn.functional.cross_entropy(
                    out[mask, where],
                    target[mask, t].long(),
                    weight=None if w is None else w.to(x.device),
                )
            else:
                term = nn.functional.mse_loss(out[mask, where][:, 0], target[mask, t])
            total = total + task_weights[t] * term
        out_total: torch.Tensor = total
        return out_total

    return loss_fn


def _latent(encoder: nn.Module, pipeline: PreprocessPipeline) -> int:
    """The encoder's output width, from one forward pass of a zero row."""
    was = encoder.training
    encoder.eval()
    with torch.no_grad():
        width = int(encoder(torch.zeros(1, pipeline.n_genes)).shape[1])
    encoder.train(was)
    return width


__all__ = [
    "FittedTask",
    "MultitaskResult",
    "TaskSpec",
    "any_label",
    "check_tasks",
    "finetune_multitask",
    "weighted_loss",
]

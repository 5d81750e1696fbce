"""Fine-tuning through the encoder: strategies stage by stage, with adaptation and unlabelled rows.

`training.train.finetune` decides what to train; this module trains an encoder copy and a head
together, adding the terms that use rows without a label (`training.methods.adapt`,
`training.methods.semisup`) to the supervised loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.methods.adapt import DomainAlignment, Domains
from training.methods.semisup import UnlabelledLoss
from training.nn.config import TrainConfig
from training.nn.variants import encoder_layers
from training.train.apply import check_panel
from training.train.loop import History, Regulariser, seeded, train_loop

if TYPE_CHECKING:
    from training.methods.options import FinetuneOptions
    from training.train.finetune import _Task

LABELLED, UNLABELLED = "labelled", "unlabelled"


@dataclass(frozen=True)
class Unlabelled:
    """Rows without a label and the obs column naming each row's domain (both optional)."""

    matrix: ExpressionMatrix | None
    domain_column: str | None

    @property
    def count(self) -> int:
        """How many unlabelled rows there are."""
        return 0 if self.matrix is None else self.matrix.shape[0]

    def check(
        self, options: FinetuneOptions, labelled: ExpressionMatrix, pipeline: PreprocessPipeline
    ) -> list[str]:
        """ValueError where the options need rows or columns that are not there; notes else."""
        if self.matrix is not None:
            if self.matrix.shape[0] == 0:
                raise ValueError("unlabelled was given with no rows; pass None instead")
            check_panel(self.matrix, pipeline)
        if options.semi_supervised != "none" and self.matrix is None:
            raise ValueError(
                f"semi-supervision {options.semi_supervised!r} needs rows without a label "
                "(unlabelled rows in the data, or a second file of them)"
            )
        if options.adaptation != "none" and self.matrix is None and self.domain_column is None:
            raise ValueError(
                f"adaptation {options.adaptation!r} needs rows from the new domain without a "
                "label, or a domain column naming each row's batch or lab"
            )
        if self.domain_column is not None:
            for what, m in (("labelled", labelled), ("unlabelled", self.matrix)):
                if m is not None and self.domain_column not in m.obs.columns:
                    raise ValueError(
                        f"the {what} rows have no domain column {self.domain_column!r}"
                    )
        notes = []
        if self.matrix is not None and options.adaptation == options.semi_supervised == "none":
            notes.append(
                f"{self.count} rows without a label were not used (no adaptation or "
                "semi-supervision asked for)"
            )
        if self.domain_column is not None and options.adaptation == "none":
            notes.append(f"domain column {self.domain_column!r} unused without adaptation")
        return notes

    def domains(self, labelled: ExpressionMatrix) -> tuple[list[str], list[str]]:
        """Each labelled and each unlabelled row's domain."""
        if self.domain_column is not None:
            theirs = [] if self.matrix is None else self.matrix.labels(self.domain_column)
            return labelled.labels(self.domain_column), theirs
        return [LABELLED] * labelled.shape[0], [UNLABELLED] * self.count


class Fixed(nn.Module):
    """A frozen encoder that stays in eval mode (no dropout) while the head trains around it."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def train(self, mode: bool = True) -> Fixed:
        super().train(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.encoder(x)
        return out


def fit_encoder(
    tuned: nn.Module,
    head: nn.Module,
    pipeline: PreprocessPipeline,
    matrix: ExpressionMatrix,
    task: _Task,
    cfg: TrainConfig,
    options: FinetuneOptions,
    rows: Unlabelled,
    progress: bool | None,
    device: torch.device,
) -> History:
    """Train `head` on `tuned` (in place) by `options`' strategy; `tuned` ends in eval mode."""
    check_panel(matrix, pipeline)
    frozen = options.strategy == "frozen"
    model = nn.Sequential(Fixed(tuned) if frozen else tuned, head)
    X = torch.from_numpy(pipeline.transform(matrix.X))
    train_idx, val_idx = torch.from_numpy(task.split.train), torch.from_numpy(task.split.val)
    train, val = (X[train_idx], task.y[train_idx]), (X[val_idx], task.y[val_idx])
    layers = encoder_layers(tuned)
    stages = unfrozen_stages(options, len(layers))
    x_rows = None if rows.matrix is None else torch.from_numpy(pipeline.transform(rows.matrix.X))
    labelled = (matrix.take(task.split.train), X[train_idx])
    regulariser, extra = _regulariser(
        options, model, tuned, task, labelled, rows, x_rows, cfg, device
    )
    histories: list[History] = []
    for stage, n_open in enumerate(stages):
        groups = open_stage(tuned, layers, n_open, [*head.parameters(), *extra], cfg.lr, options)
        with seeded(cfg.seed + stage):
            histories.append(
                train_loop(
                    model,
                    task.loss_fn,
                    train,
                    val,
                    cfg,
                    progress=progress,
                    description=f"finetune {options.strategy} {stage}",
                    groups=groups,
                    regulariser=regulariser,
                    device=device,
                    min_epochs=options.min_epochs,
                    chance=task.chance,
                )
            )
    for p in tuned.parameters():
        p.requires_grad_(True)
    tuned.eval()
    return merge_histories(histories)


def _regulariser(
    options: FinetuneOptions,
    model: nn.Sequential,
    tuned: nn.Module,
    task: _Task,
    labelled: tuple[ExpressionMatrix, torch.Tensor],
    rows: Unlabelled,
    x_rows: torch.Tensor | None,
    cfg: TrainConfig,
    device: torch.device,
) -> tuple[Regulariser | None, list[nn.Parameter]]:
    """The sum of the adaptation and unlabelled terms asked for, and their own parameters."""
    terms: list[Regulariser] = []
    params: list[nn.Parameter] = []
    matrix, x_train = labelled
    if options.adaptation != "none":
        ours, theirs = rows.domains(matrix)
        parts = [(x_train, ours)] + ([(x_rows, theirs)] if x_rows is not None else [])
        align = DomainAlignment(
            options.adaptation,
            tuned,
            Domains.of(parts),
            latent=int(getattr(getattr(model[1], "config", None), "n_in", 0)),
            weight=options.adaptation_weight,
            batch_size=cfg.batch_size,
            seed=cfg.seed + 1,
            device=device,
        )
        terms.append(align)
        params += align.parameters()
    if options.semi_supervised != "none" and x_rows is not None:
        terms.append(
            UnlabelledLoss(
                options.semi_supervised,
                model,
                x_rows,
                classify=task.y.dtype == torch.long,
                class_weight=task.class_weight,
                confidence=options.confidence,
                weight=options.semi_weight,
                batch_size=cfg.batch_size,
                seed=cfg.seed + 2,
                device=device,
            )
        )
    if not terms:
        return None, params

    def total(progress: float) -> torch.Tensor:
        out: torch.Tensor = sum((term(progress) for term in terms[1:]), terms[0](progress))
        return out

    return total, params


def unfrozen_stages(options: FinetuneOptions, n_layers: int) -> list[int]:
    """How many of the encoder's top layers train in each stage: none (frozen), the top
    `unfreeze_top` (partial), one more per stage (gradual), or all (full)."""
    if options.strategy == "frozen":
        return [0]
    if options.strategy == "gradual":
        return [0, *range(1, n_layers + 1)]
    if options.strategy == "partial":
        return [min(options.unfreeze_top, n_layers)]
    return [n_layers]


def open_stage(
    encoder: nn.Module,
    layers: Sequence[nn.Module],
    n_open: int,
    new: list[nn.Parameter],
    lr: float,
    options: FinetuneOptions,
) -> list[dict[str, Any]]:
    """Freeze `encoder` but its top `n_open` `layers`; the optimiser's parameter groups: the
    `new` parameters (head, ...) at the base rate, the opened layers at
    `lr * options.encoder_lr_scale`."""
    for p in encoder.parameters():
        p.requires_grad_(False)
    opened = [p for layer in layers[len(layers) - n_open :] for p in layer.parameters()]
    for p in opened:
        p.requires_grad_(True)
    groups: list[dict[str, Any]] = [{"params": new}]
    if opened:
        groups.append({"params": opened, "lr": lr * options.encoder_lr_scale})
    return groups


def merge_histories(histories: Sequence[History]) -> History:
    """One history of stages trained one after the other (epochs appended, the best epoch the
    last stage's, counted from the first)."""
    merged = History()
    for h in histories:
        offset = len(merged.val_loss)
        merged.train_loss += h.train_loss
        merged.val_loss += h.val_loss
        merged.seconds += h.seconds
        merged.samples_seen += h.samples_seen
        merged.notes += h.notes
        merged.stopped_early = h.stopped_early
        # each stage starts from the previous stage's best weights, so the last stage's best
        # is the kept state
        merged.best_epoch = offset + h.best_epoch
    return merged

"""Fine-tuning a multi-omics classifier: the transferred expression encoder by the usual strategy
(frozen, partial, gradual, full, as `training.methods.staged`), the new modality encoders and the
head always trained.

The modalities' scalings are fitted on the training rows only; the encoder passed in is never
modified (every strategy but frozen trains a copy).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from contract.preprocess.pipeline import PreprocessPipeline
from training.methods.options import FinetuneOptions
from training.methods.staged import Fixed, merge_histories, open_stage, unfrozen_stages
from training.multiomics.data import MultiOmics
from training.multiomics.network import (
    MAX_MODALITIES,
    ModalityScaler,
    ModalityScaling,
    MultiOmicsCore,
    MultiOmicsGraph,
    fused_width,
)
from training.nn.checkpoint import build_module
from training.nn.config import TrainConfig
from training.nn.device import resolve_device
from training.nn.heads import ClassifierHeadConfig
from training.nn.variants import encoder_layers
from training.preprocess.fused import pipeline_module
from training.train.loop import History, seeded, train_loop
from training.train.validation import chance_cross_entropy, class_split


@dataclass(frozen=True)
class MultiOmicsShape:
    """Sizes of the added parts: each modality encoder's hidden and embedding width, dropouts."""

    hidden: int = 32
    latent: int = 8
    dropout: float = 0.1
    modality_dropout: float = 0.15
    head_hidden: tuple[int, ...] = ()


@dataclass
class MultiOmicsResult:
    """The trained core (encoder, modality encoders, head), the scalings and how training went."""

    core: MultiOmicsCore
    scalings: list[ModalityScaling]
    labels: list[str]
    history: History
    strategy: str
    val_sample_ids: list[str] = field(default_factory=list)

    def graph(self, pipeline: PreprocessPipeline) -> MultiOmicsGraph:
        """The exportable graph: expression and each modality's raw values in."""
        scalers = [ModalityScaler(s) for s in self.scalings]
        return MultiOmicsGraph(pipeline_module(pipeline), scalers, self.core).eval()


def pack(
    pipeline: PreprocessPipeline, scalings: Sequence[ModalityScaling], data: MultiOmics
) -> torch.Tensor:
    """The core's packed input for every sample of `data` (expression in panel order)."""
    parts = [torch.from_numpy(pipeline.transform(data.expression.X))]
    with torch.no_grad():
        for s in scalings:
            z, present = ModalityScaler(s)(torch.from_numpy(data.dense(s.name)))
            parts += [z, present]
    return torch.cat(parts, dim=1)


def finetune_multiomics(
    encoder: nn.Module,
    pipeline: PreprocessPipeline,
    data: MultiOmics,
    label_column: str,
    train_cfg: TrainConfig,
    *,
    options: FinetuneOptions | None = None,
    logit: Collection[str] = ("methylation",),
    shape: MultiOmicsShape | None = None,
    progress: bool | None = False,
) -> MultiOmicsResult:
    """Train a classifier on expression plus every modality of `data`.

    Parameters
    ----------
    encoder:
        The published expression encoder (``autoencoder.encoder``); not modified.
    pipeline:
        Its preprocessing; `data.expression` must be in its panel order (``align_matrix``).
    data:
        Labelled samples (hold test samples out beforehand) with their modalities.
    label_column:
        obs column of `data.expression` with each sample's class.
    train_cfg:
        Optimisation; a stratified ``val_fraction`` split drives early stopping.
    options:
        The expression encoder's strategy (``strategy``, ``unfreeze_top``, ``encoder_lr_scale``,
        ``min_epochs``, ``device``); adaptation and semi-supervision are not supported here.
    logit:
        Modalities of β-values, turned into M-values before standardisation.
    shape:
        Sizes of the modality encoders and the head.
    progress:
        Progress bar (see `train_loop`).
    """
    options = options or FinetuneOptions("frozen")
    shape = shape or MultiOmicsShape()
    if options.adaptation != "none" or options.semi_supervised != "none":
        raise ValueError("multi-omics fine-tuning supports no adaptation or semi-supervision yet")
    if len(data.names) > MAX_MODALITIES:
        raise ValueError(f"at most {MAX_MODALITIES} modalities besides expression")
    if data.expression.gene_ids != pipeline.gene_ids:
        raise ValueError("expression must be aligned to the encoder's panel (align_matrix)")
    names = data.expression.labels(label_column)
    labels = sorted(set(names))
    if len(labels) < 2:
        raise ValueError(f"{label_column!r} has fewer than 2 classes")
    y = torch.tensor([labels.index(n) for n in names], dtype=torch.long)
    split = class_split(names, train_cfg.val_fraction, train_cfg.seed)
    train_rows = data.take(split.train)
    scalings = [
        ModalityScaling.fit(
            name,
            list(data.modalities[name].gene_ids),
            train_rows.dense(name),
            name in set(logit),
        )
        for name in data.names
    ]
    X = pack(pipeline, scalings, data)
    counts = torch.bincount(y[split.train], minlength=len(labels)).clamp(min=1).float()
    criterion = nn.CrossEntropyLoss(weight=len(split.train) / (len(labels) * counts))

    def loss_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        loss: torch.Tensor = criterion.to(x.device)(model(x).float(), target)
        return loss

    frozen = options.strategy == "frozen"
    tuned = encoder if frozen else copy.deepcopy(encoder)
    latent = _embedding_width(tuned, pipeline.n_genes)
    widths = [len(s.features) for s in scalings]
    with seeded(train_cfg.seed):
        head_cfg = ClassifierHeadConfig(
            n_in=fused_width(latent, len(widths), shape.latent),
            n_classes=len(labels),
            hidden=shape.head_hidden,
        )
        head = build_module(head_cfg)
        core = MultiOmicsCore(
            Fixed(tuned) if frozen else tuned,
            pipeline.n_genes,
            widths,
            head,
            hidden=shape.hidden,
            latent=shape.latent,
            dropout=shape.dropout,
            modality_dropout=shape.modality_dropout,
        )
    layers = encoder_layers(tuned)
    stages = unfrozen_stages(options, len(layers))
    tr, va = torch.from_numpy(split.train), torch.from_numpy(split.val)
    new = [*head.parameters(), *core.modality_encoders.parameters()]
    histories = []
    for stage, n_open in enumerate(stages):
        groups = open_stage(tuned, layers, n_open, new, train_cfg.lr, options)
        with seeded(train_cfg.seed + stage):
            histories.append(
                train_loop(
                    core,
                    loss_fn,
                    (X[tr], y[tr]),
                    (X[va], y[va]),
                    train_cfg,
                    progress=progress,
                    description=f"multi-omics {options.strategy} {stage}",
                    groups=groups,
                    device=resolve_device(options.device),
                    min_epochs=options.min_epochs,
                    chance=chance_cross_entropy(len(labels)),
                )
            )
    for p in tuned.parameters():
        p.requires_grad_(True)
    core.eval()
    history = merge_histories(histories)
    history.validation = split.validation
    val_ids = [] if split.on_training_loss else [data.expression.sample_ids[i] for i in split.val]
    return MultiOmicsResult(core, scalings, labels, history, options.strategy, val_ids)


def predict_proba(
    result: MultiOmicsResult, pipeline: PreprocessPipeline, data: MultiOmics
) -> npt.NDArray[np.float32]:
    """Class probabilities for every sample of `data` (its modalities as the model's, by name)."""
    missing = [s.name for s in result.scalings if s.name not in data.modalities]
    if missing:
        raise ValueError(f"the data lack the model's modalities {missing}")
    result.core.eval()
    with torch.no_grad():
        logits = result.core(pack(pipeline, result.scalings, data))
    return torch.softmax(logits, dim=-1).numpy().astype(np.float32)


def _embedding_width(encoder: nn.Module, n_genes: int) -> int:
    was = encoder.training
    encoder.eval()
    with torch.no_grad():
        width = int(encoder(torch.zeros(2, n_genes)).shape[1])
    encoder.train(was)
    return width

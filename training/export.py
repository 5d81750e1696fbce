"""Verified export of an encoder or classifier to a new ``models/<name>/<version>/`` folder.

Steps (after timm's ``onnx_export``): eval mode; wrap ``preprocess → encoder [→ head]`` so one
graph takes input-scale values; ``torch.onnx.export`` (the torch.export-based exporter, one
self-contained file); ``onnx.checker``; ONNX Runtime vs torch parity on random and real inputs;
then stage every file, write the card with their sha256 and publish the folder atomically.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.inference.card import (
    ONNX_FILE,
    GenePanel,
    Metric,
    ModelCard,
    ModelKind,
    ModelRef,
    TensorSpec,
    TrainingData,
    sha256_file,
)
from training.checkpoint import save_checkpoint
from training.nn.variants import Autoencoder
from training.onnx_check import INPUT_NAME, export_onnx, verify_onnx
from training.preprocess.pipeline import PreprocessPipeline
from training.preprocess.steps import Array
from training.versions import check_model_name, publish, staging_folder

__all__ = [
    "INPUT_NAME",
    "CardInfo",
    "export_classifier",
    "export_encoder",
    "parity_inputs",
    "publish_version",
]


@dataclass(frozen=True)
class CardInfo:
    """What the card says about a model beyond its graph.

    Parameters
    ----------
    description:
        What the model is and what it was trained on, in plain words.
    training_data:
        Name, fingerprint, size and held-out sample ids of the training data.
    metrics:
        Measured results, each with its protocol.
    extra:
        JSON-safe metadata saved in the checkpoint's config.json (training configs, history).
    """

    description: str
    training_data: TrainingData
    metrics: Sequence[Metric] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


class EncoderGraph(nn.Module):
    """Input-scale expression → embedding."""

    def __init__(self, preprocess: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.encoder = preprocess, encoder

    def forward(self, expression: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.encoder(self.preprocess(expression))
        return out


class ClassifierGraph(nn.Module):
    """Input-scale expression → (logits, probabilities)."""

    def __init__(self, preprocess: nn.Module, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.encoder, self.head = preprocess, encoder, head

    def forward(self, expression: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits: torch.Tensor = self.head(self.encoder(self.preprocess(expression)))
        return logits, torch.softmax(logits, dim=-1)


def export_encoder(
    autoencoder: Autoencoder,
    pipeline: PreprocessPipeline,
    *,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: Array,
) -> Path:
    """Export ``preprocess → encoder`` (output ``embedding``) as a new version; returns its folder.

    Parameters
    ----------
    autoencoder:
        Pretrained autoencoder; its encoder is exported, the whole of it is checkpointed.
    pipeline:
        The fitted preprocessing, fused in front of the encoder.
    name:
        Model name (folder under `models_dir`).
    models_dir:
        Root of the model store.
    info:
        Card text, training data and metrics.
    reference:
        Real input-scale samples (panel order) for the parity check.
    """
    graph = EncoderGraph(pipeline.torch_module(), autoencoder.encoder)
    outputs = [TensorSpec(name="embedding", shape=["batch", autoencoder.config.latent])]
    return _export(
        graph,
        kind=ModelKind.encoder,
        name=name,
        models_dir=models_dir,
        pipeline=pipeline,
        outputs=outputs,
        parts={"autoencoder": autoencoder},
        info=info,
        reference=reference,
    )


def export_classifier(
    autoencoder: Autoencoder,
    head: nn.Module,
    pipeline: PreprocessPipeline,
    labels: Sequence[str],
    *,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: Array,
    parent: ModelRef | None,
) -> Path:
    """Export ``preprocess → encoder → head`` (outputs ``logits``, ``probabilities``) as a version.

    Parameters
    ----------
    autoencoder, head:
        The encoder (inside its autoencoder) and the fine-tuned head.
    pipeline:
        The encoder's fitted preprocessing.
    labels:
        Class names in logit order.
    name, models_dir, info, reference:
        As for `export_encoder`.
    parent:
        The published encoder this head was fine-tuned on, if any.
    """
    n = int(getattr(getattr(head, "config", None), "n_classes", -1))
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for a head with {n} outputs")
    graph = ClassifierGraph(pipeline.torch_module(), autoencoder.encoder, head)
    outputs = [
        TensorSpec(name="logits", shape=["batch", n]),
        TensorSpec(name="probabilities", shape=["batch", n]),
    ]
    return _export(
        graph,
        kind=ModelKind.classifier,
        name=name,
        models_dir=models_dir,
        pipeline=pipeline,
        outputs=outputs,
        parts={"autoencoder": autoencoder, "head": head},
        info=info,
        reference=reference,
        labels=list(labels),
        parent=parent,
    )


def _export(
    graph: nn.Module,
    *,
    kind: ModelKind,
    name: str,
    models_dir: Path,
    pipeline: PreprocessPipeline,
    outputs: list[TensorSpec],
    parts: Mapping[str, nn.Module],
    info: CardInfo,
    reference: Array,
    labels: list[str] | None = None,
    parent: ModelRef | None = None,
) -> Path:
    check_model_name(name)
    graph.eval()
    output_names = [o.name for o in outputs]
    with staging_folder(models_dir / name) as staging:
        onnx_path = staging / ONNX_FILE
        export_onnx(graph, pipeline.n_genes, onnx_path, output_names)
        verify_onnx(onnx_path, graph, output_names, parity_inputs(pipeline, reference))
        written = [onnx_path, *pipeline.save(staging), *save_checkpoint(staging, parts, info.extra)]
        return publish_version(
            staging,
            written,
            name=name,
            kind=kind,
            pipeline=pipeline,
            outputs=outputs,
            info=info,
            labels=labels,
            parent=parent,
        )


def publish_version(
    staging: Path,
    written: Sequence[Path],
    *,
    name: str,
    kind: ModelKind,
    pipeline: PreprocessPipeline,
    outputs: list[TensorSpec],
    info: CardInfo,
    labels: list[str] | None = None,
    parent: ModelRef | None = None,
    extra_versions: Mapping[str, str] | None = None,
) -> Path:
    """Hash the staged files, write their card and publish the folder as the next version.

    Parameters
    ----------
    staging:
        The staging folder (from `staging_folder`) holding every file of the version.
    written:
        Those files; each is listed with its sha256 in the card.
    name, kind, outputs, labels, parent:
        As the card has them.
    pipeline:
        The fitted preprocessing the graph starts with (panel, input scale, fill values).
    info:
        Card text, training data and metrics.
    extra_versions:
        Library versions beyond the common ones (e.g. scikit-learn for a baseline).
    """
    for path in written:
        path.chmod(0o644)  # some writers create 0600 files; the server may run as another user
    files = {p.name: sha256_file(p) for p in sorted(written)}

    def write_card(version: int) -> None:
        ModelCard(
            name=name,
            version=version,
            kind=kind,
            description=info.description,
            created_at=datetime.now(UTC),
            input_scale=pipeline.input_scale,
            panel=GenePanel(ids=pipeline.gene_ids, fill_values=pipeline.fill_values),
            inputs=[TensorSpec(name=INPUT_NAME, shape=["batch", pipeline.n_genes])],
            outputs=outputs,
            labels=labels,
            preprocessing=pipeline.to_card(),
            training_data=info.training_data,
            metrics=list(info.metrics),
            parent=parent,
            library_versions={**library_versions(), **(extra_versions or {})},
            files=files,
        ).write(staging)

    return publish(staging, write_card)


def parity_inputs(pipeline: PreprocessPipeline, reference: Array) -> list[Array]:
    """Random plausible inputs, real ones and a batch of one, for the ONNX parity check."""
    if reference.ndim != 2 or reference.shape[1] != pipeline.n_genes or len(reference) == 0:
        raise ValueError(f"reference must be (n ≥ 1, {pipeline.n_genes}), got {reference.shape}")
    rng = np.random.default_rng(0)
    # random but plausible input-scale values: non-negative, sparse, around the training means
    shape = (16, pipeline.n_genes)
    dense = rng.exponential(pipeline.input_mean + 0.1, size=shape) * (rng.random(shape) < 0.5)
    return [
        dense.astype(np.float32),
        np.ascontiguousarray(reference[:64], dtype=np.float32),
        np.ascontiguousarray(reference[:1], dtype=np.float32),  # a batch of one: dynamic axis
    ]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the exported files."""
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    for dist in ("onnx", "onnxruntime", "onnxscript", "safetensors", "genexfer"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions

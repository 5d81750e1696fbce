"""The fused graph ``preprocess → encoder [→ top]``, its verified export and the staged version.

Steps (after timm's ``onnx_export``): eval mode; wrap ``preprocess → encoder [→ head]`` so one
graph takes input-scale values; ``torch.onnx.export`` (the torch.export-based exporter, one
self-contained file); ``onnx.checker``; ONNX Runtime vs torch parity on random and real inputs;
then stage every file, write the card with their sha256 and publish the folder atomically.

`export_encoder` publishes an encoder; `publish_with_head` any version with a head on top, for
`training.export.heads` (classifier, regressor, multi-task). Such a version also carries the head
alone (``head.onnx``: the parent encoder's ``embedding`` in, the same outputs out), verified the
same way on real and random embeddings, and a classifier ``explain.onnx`` and ``baseline.npy``:
integrated gradients of its logits against the training inputs' mean
(`training.export.explain`), where every layer allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contract.card import (
    HEAD_FILE,
    ONNX_FILE,
    HeadGraph,
    InputTransform,
    ModelKind,
    ModelRef,
    ModelTask,
    TensorSpec,
)
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.steps import Array
from training.export.card import CardInfo, parity_inputs, publish_version
from training.export.explain import explanation_or_none
from training.export.onnx import INPUT_NAME, export_onnx, verify_onnx
from training.export.store import check_model_name, staging_folder
from training.nn.checkpoint import save_checkpoint
from training.nn.variants import Autoencoder
from training.preprocess.fused import pipeline_module

__all__ = [
    "EMBEDDING",
    "INPUT_NAME",
    "CardInfo",
    "ClassifierGraph",
    "EncoderGraph",
    "export_encoder",
    "publish_with_head",
]

EMBEDDING = "embedding"


class EncoderGraph(nn.Module):
    """Input-scale expression → embedding."""

    def __init__(self, preprocess: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.encoder = preprocess, encoder

    def forward(self, expression: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.encoder(self.preprocess(expression))
        return out


class SoftmaxTop(nn.Module):
    """A classifier head with its softmax: embedding → (logits, probabilities)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits: torch.Tensor = self.head(embedding)
        return logits, torch.softmax(logits, dim=-1)


class FusedGraph(nn.Module):
    """Input-scale expression → preprocessing → encoder → top (a head, with softmax if any)."""

    def __init__(self, preprocess: nn.Module, encoder: nn.Module, top: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.encoder, self.top = preprocess, encoder, top

    def forward(self, expression: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out: torch.Tensor | tuple[torch.Tensor, ...] = self.top(
            self.encoder(self.preprocess(expression))
        )
        return out


class ClassifierGraph(FusedGraph):
    """Input-scale expression → (logits, probabilities)."""

    def __init__(self, preprocess: nn.Module, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__(preprocess, encoder, SoftmaxTop(head))


def export_encoder(
    autoencoder: Autoencoder,
    pipeline: PreprocessPipeline,
    *,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: Array,
    input_transforms: Sequence[InputTransform] = (),
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
    input_transforms:
        Other scales the encoder accepts, with the steps that made its input scale from each
        (the card's record; heads fine-tuned on it inherit it).
    """
    check_model_name(name)
    graph = EncoderGraph(pipeline_module(pipeline), autoencoder.encoder).eval()
    outputs = [TensorSpec(name=EMBEDDING, shape=["batch", autoencoder.config.latent])]
    with staging_folder(models_dir / name) as staging:
        written = _fused(staging, graph, pipeline, outputs, reference)
        written += save_checkpoint(staging, {"autoencoder": autoencoder}, info.extra)
        return publish_version(
            staging,
            written,
            name=name,
            kind=ModelKind.encoder,
            pipeline=pipeline,
            outputs=outputs,
            info=info,
            input_transforms=input_transforms,
        )


def publish_with_head(
    autoencoder: Autoencoder,
    head: nn.Module,
    top: nn.Module,
    pipeline: PreprocessPipeline,
    outputs: list[TensorSpec],
    *,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: Array,
    kind: ModelKind,
    parent: ModelRef | None,
    labels: list[str] | None = None,
    tasks: Sequence[ModelTask] = (),
    explained: bool = False,
) -> Path:
    """Stage ``preprocess → encoder → top`` as model.onnx and `top` alone as head.onnx (each
    verified), the explanation graph when `explained`, the checkpoint, then publish the version
    (a classifier's or regressor's `labels`, a multi-task model's `tasks`)."""
    check_model_name(name)
    encoder = EncoderGraph(pipeline_module(pipeline), autoencoder.encoder).eval()
    graph = FusedGraph(encoder.preprocess, encoder.encoder, top).eval()
    latent = autoencoder.config.latent
    head_spec = HeadGraph(
        inputs=[TensorSpec(name=EMBEDDING, shape=["batch", latent])], outputs=outputs
    )
    with staging_folder(models_dir / name) as staging:
        written = _fused(staging, graph, pipeline, outputs, reference)
        written.append(_head_alone(staging, top, encoder, latent, pipeline, outputs, reference))
        explain = None
        if explained:
            model = [encoder.preprocess, encoder.encoder, head]
            files, explain = explanation_or_none(
                staging, model, pipeline.input_mean, parity_inputs(pipeline, reference)
            )
            written += files
        parts = {"autoencoder": autoencoder, "head": head}
        written += save_checkpoint(staging, parts, info.extra)
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
            head=head_spec,
            explain=explain,
            tasks=tasks,
        )


def _head_alone(
    staging: Path,
    top: nn.Module,
    encoder: EncoderGraph,
    latent: int,
    pipeline: PreprocessPipeline,
    outputs: list[TensorSpec],
    reference: Array,
) -> Path:
    """Export the head alone as head.onnx, checked on the embeddings of the same real and random
    inputs as the fused graph; returns its path."""
    head_path = staging / HEAD_FILE
    names = [o.name for o in outputs]
    export_onnx(top, latent, head_path, names, input_name=EMBEDDING)
    with torch.no_grad():
        embedded = [
            encoder(torch.from_numpy(x)).numpy() for x in parity_inputs(pipeline, reference)
        ]
    noise = np.random.default_rng(1).normal(size=(8, latent)).astype(np.float32)
    verify_onnx(head_path, top, names, [*embedded, noise], input_name=EMBEDDING)
    return head_path


def _fused(
    staging: Path,
    graph: nn.Module,
    pipeline: PreprocessPipeline,
    outputs: list[TensorSpec],
    reference: Array,
) -> list[Path]:
    """Export and verify `graph` as model.onnx; returns its path (in a list, for more files)."""
    onnx_path = staging / ONNX_FILE
    names = [o.name for o in outputs]
    export_onnx(graph, pipeline.n_genes, onnx_path, names)
    verify_onnx(onnx_path, graph, names, parity_inputs(pipeline, reference))
    return [onnx_path]

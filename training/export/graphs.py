"""Verified export of an encoder, classifier or regressor to a new ``models/<name>/<version>/``.

Steps (after timm's ``onnx_export``): eval mode; wrap ``preprocess → encoder [→ head]`` so one
graph takes input-scale values; ``torch.onnx.export`` (the torch.export-based exporter, one
self-contained file); ``onnx.checker``; ONNX Runtime vs torch parity on random and real inputs;
then stage every file, write the card with their sha256 and publish the folder atomically.

A classifier also carries ``explain.onnx`` and ``baseline.npy``: integrated gradients of its
logits against the training inputs' mean (`training.export.explain`), where every layer allows.
A version with a head also carries the head alone (``head.onnx``: the parent encoder's
``embedding`` in, the same outputs out), verified the same way on real and random embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
from training.nn.heads import MultiTaskHead
from training.nn.variants import Autoencoder
from training.preprocess.fused import pipeline_module

__all__ = [
    "EMBEDDING",
    "INPUT_NAME",
    "CardInfo",
    "ClassifierGraph",
    "EncoderGraph",
    "export_classifier",
    "export_encoder",
    "export_multitask",
    "export_regressor",
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


@dataclass(frozen=True)
class _HeadKind:
    """How a kind of head is exported: its card kind, outputs and output-width field."""

    kind: ModelKind
    outputs: tuple[str, ...]  # graph outputs, with the head's width each
    width: str  # the head config's field holding that width
    names: str  # what the label names are, in the width check's error
    softmax: bool  # the graph adds probabilities after the head's logits


_CLASSIFIER = _HeadKind(
    kind=ModelKind.classifier,
    outputs=("logits", "probabilities"),
    width="n_classes",
    names="labels",
    softmax=True,
)
_REGRESSOR = _HeadKind(
    kind=ModelKind.regressor,
    outputs=("prediction",),
    width="n_targets",
    names="target names",
    softmax=False,
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
    """Export ``preprocess → encoder → head → softmax`` (``logits``, ``probabilities``).

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
    return _export_with_head(
        _CLASSIFIER, autoencoder, head, pipeline, labels,
        name=name, models_dir=models_dir, info=info, reference=reference, parent=parent,
    )  # fmt: skip


def export_regressor(
    autoencoder: Autoencoder,
    head: nn.Module,
    pipeline: PreprocessPipeline,
    targets: Sequence[str],
    *,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: Array,
    parent: ModelRef | None,
) -> Path:
    """Export ``preprocess → encoder → head`` (output ``prediction``, one column per target).

    Parameters are those of `export_classifier`, with `targets` the names of the head's outputs
    (the obs columns it predicts, on their own scale).
    """
    return _export_with_head(
        _REGRESSOR, autoencoder, head, pipeline, targets,
        name=name, models_dir=models_dir, info=info, reference=reference, parent=parent,
    )  # fmt: skip


def _export_with_head(
    how: _HeadKind,
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
    n = int(getattr(getattr(head, "config", None), how.width, -1))
    if len(labels) != n:
        raise ValueError(f"{len(labels)} {how.names} for a head with {n} outputs")
    outputs = [TensorSpec(name=o, shape=["batch", n]) for o in how.outputs]
    return _publish_with_head(
        autoencoder,
        head,
        SoftmaxTop(head) if how.softmax else head,
        pipeline,
        outputs,
        name=name,
        models_dir=models_dir,
        info=info,
        reference=reference,
        explained=how.softmax,  # a classifier: integrated gradients of its logits, beside it
        kind=how.kind,
        labels=list(labels),
        parent=parent,
    )


def _publish_with_head(
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


class MultiTaskTop(nn.Module):
    """A multi-task head split into its tasks' outputs: per classification task (logits,
    probabilities, the predicted class's index as a float (batch, 1)), per regression task its
    prediction, in task order (`contract.card.task_outputs`)."""

    def __init__(self, head: MultiTaskHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        for sub, kind in zip(self.head.heads, self.head.config.kinds, strict=True):
            values: torch.Tensor = sub(embedding)
            if kind == "classification":
                # the label's index: an output a v2 client can read without an argmax of its own
                index = torch.argmax(values, dim=-1, keepdim=True).to(values.dtype)
                out += [values, torch.softmax(values, dim=-1), index]
            else:
                out.append(values)
        return tuple(out)


def export_multitask(
    autoencoder: Autoencoder,
    head: MultiTaskHead,
    pipeline: PreprocessPipeline,
    tasks: Sequence[ModelTask],
    *,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: Array,
    parent: ModelRef | None,
) -> Path:
    """Export ``preprocess → encoder → every task's head`` as one graph with an output per task
    (`contract.card.task_outputs`: ``<task>.logits``, ``<task>.probabilities`` and the class
    index ``<task>.prediction`` for a classification task, ``<task>.prediction`` for a regression
    one), each verified against torch.

    Parameters are those of `export_classifier`, with `tasks` the card's tasks in the head's order.
    """
    if [t.name for t in tasks] != list(head.config.tasks):
        raise ValueError(
            f"tasks {[t.name for t in tasks]} differ from the head's {head.config.tasks}"
        )
    outputs = [
        TensorSpec(name=o, shape=["batch", 1 if o.endswith(".prediction") else w])
        for task, w in zip(tasks, head.config.widths, strict=True)
        for o in task.outputs
    ]
    return _publish_with_head(
        autoencoder,
        head,
        MultiTaskTop(head).eval(),
        pipeline,
        outputs,
        name=name,
        models_dir=models_dir,
        info=info,
        reference=reference,
        kind=ModelKind.multitask,
        parent=parent,
        tasks=tasks,
    )


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

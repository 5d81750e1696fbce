"""What each kind of head publishes: a classifier, a regressor or a multi-task model.

Each kind has its card kind and its outputs: a classifier ``logits`` and ``probabilities`` (and
an explanation graph), a regressor ``prediction``, a multi-task model an output per task
(`contract.card.task_outputs`). The graph and the version are made by
`training.export.graphs.publish_with_head`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from contract.card import ModelKind, ModelRef, ModelTask, TensorSpec
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.steps import Array
from training.export.card import CardInfo
from training.export.graphs import SoftmaxTop, publish_with_head
from training.nn.heads import MultiTaskHead
from training.nn.variants import Autoencoder

__all__ = ["MultiTaskTop", "export_classifier", "export_multitask", "export_regressor"]


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
        As for `training.export.graphs.export_encoder`.
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
    return publish_with_head(
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
    return publish_with_head(
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

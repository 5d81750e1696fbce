"""A prediction from an uploaded file, with a picture of its samples: what the web app's predict
page needs beyond /v1.

The file is read as a dataset upload is (CSV/TSV, gzip or not, Parquet, h5ad), the model's own
service (classify, regress or embed) answers and records the call, and the samples are projected
on two principal components of their embedding: the model's own embedding output, else the
embedding of the encoder its head was trained on (when that exact encoder is served), else the
profiles on the model's gene panel.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.codecs.payloads import Expression, check_count
from app.db.writer import PredictionWriter
from app.errors import InvalidRequest, ModelNotFound
from app.inference.registry import LoadedModel, ModelRegistry
from app.inference.routing import Viewer
from app.schemas.predict import Answer, ClassifyOut, EmbedOut
from app.services import datasets, predict
from app.services.pca import pca2
from contract.align import to_panel
from contract.card import ONNX_FILE, InputScale, ModelKind

Task = Literal["classify", "regress", "embed"]
TASKS: dict[ModelKind, Task] = {
    ModelKind.classifier: "classify",
    ModelKind.regressor: "regress",
    ModelKind.encoder: "embed",
}
MAX_PLOTTED = 5000


@dataclass(frozen=True)
class Point:
    """One sample in the picture: its scores on PC1 and PC2 and the group that colours it."""

    id: str
    x: float
    y: float
    group: str


@dataclass(frozen=True)
class Prediction:
    """The service's answer and the picture of its samples."""

    task: Task
    answer: Answer
    file_labels: dict[str, list[str]]
    points: list[Point]
    groups: list[str]
    coloured_by: str
    basis: str
    explained: tuple[float, float]


async def predict_upload(
    *,
    writer: PredictionWriter,
    registry: ModelRegistry,
    viewer: Viewer,
    name: str,
    version: int | None,
    data: bytes,
    filename: str,
    request_id: str,
    min_overlap: float,
    max_samples: int,
    max_values: int,
    declared_scale: InputScale | None,
) -> Prediction:
    """Run the model that `name` serves on the file's samples; record the call as /v1 does."""
    parsed, _ = await asyncio.to_thread(
        datasets.parse_upload,
        data=data,
        filename=filename,
        fmt=None,
        label_columns=None,
        labels=None,
        labels_filename=None,
        max_values=max_values,
    )
    check_count(len(parsed.sample_ids), max_samples)
    expr = Expression(sample_ids=parsed.sample_ids, genes=parsed.gene_ids, values=parsed.X)
    model = registry.get(name, version, viewer=viewer)
    task = TASKS.get(model.card.kind)
    if task is None:
        raise InvalidRequest(
            f"{model.card.name} is a {model.card.kind} model; it cannot be run here"
        )
    async with model.batcher.lease():
        answer: Answer = await getattr(predict, task)(
            writer=writer,
            model=model,
            expr=expr,
            request_id=request_id,
            min_overlap=min_overlap,
            declared_scale=declared_scale,
        )
        basis, words = await _basis(
            model, answer, expr, registry, viewer, min_overlap, declared_scale
        )
    projection = await asyncio.to_thread(pca2, basis[:MAX_PLOTTED])
    if isinstance(answer, ClassifyOut):
        groups, coloured_by = [p.label for p in answer.predictions], "predicted label"
        order = [g for g in model.card.labels or [] if g in set(groups)]
    elif parsed.labels:
        column = next(iter(parsed.labels))
        groups, coloured_by = parsed.labels[column], f"the file's column {column!r}"
        order = sorted(set(groups))
    else:
        groups, coloured_by, order = ["sample"] * len(expr.sample_ids), "", ["sample"]
    points = [
        Point(id=sid, x=float(x), y=float(y), group=g)
        for sid, (x, y), g in zip(expr.sample_ids, projection.coords, groups, strict=False)
    ]
    return Prediction(
        task=task,
        answer=answer,
        file_labels=parsed.labels,
        points=points,
        groups=order,
        coloured_by=coloured_by,
        basis=words,
        explained=projection.explained,
    )


async def _basis(
    model: LoadedModel,
    answer: Answer,
    expr: Expression,
    registry: ModelRegistry,
    viewer: Viewer,
    min_overlap: float,
    declared: InputScale | None,
) -> tuple[npt.NDArray[np.float32], str]:
    """What the samples are projected from, and those words for the page."""
    card = model.card
    if isinstance(answer, EmbedOut):
        values = np.array([e.embedding for e in answer.embeddings], dtype=np.float32)
        return values, f"the {card.name} v{card.version} embedding"
    encoder = _parent_encoder(model, registry, viewer)
    source = encoder or model
    x = await asyncio.to_thread(
        lambda: (
            to_panel(
                expr.values,
                expr.genes,
                source.index,
                source.card.input_scale,
                min_overlap=min_overlap,
                declared=declared,
                transforms=source.card.input_transforms,
            ).values
        )
    )
    if encoder is not None:
        async with encoder.batcher.lease():
            outputs = await encoder.batcher.run(x)
        what = f"the embedding of its encoder {encoder.card.name} v{encoder.card.version}"
        return outputs["embedding"], what
    return x, f"the profiles on the model's {len(card.panel.ids)} panel genes"


def _parent_encoder(
    model: LoadedModel, registry: ModelRegistry, viewer: Viewer
) -> LoadedModel | None:
    """The served encoder the model's head was trained on: the very file (sha256), else None."""
    parent = model.card.parent
    if parent is None:
        return None
    try:
        encoder = registry.get(parent.name, parent.version, viewer=viewer)
    except ModelNotFound:  # not served (any more): the profiles will do
        return None
    same = encoder.card.files.get(ONNX_FILE) == parent.sha256
    has_output = any(o.name == "embedding" for o in encoder.card.outputs)
    return encoder if same and has_output else None

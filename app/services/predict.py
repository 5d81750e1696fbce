"""Embed, classify and regress: check the input's scale, fold duplicate genes, align to the
model's panel, run the model, record the call.

The checks and alignment run in a worker thread; inference goes through the model version's
batcher, so concurrent requests share ONNX Runtime calls; the call's record goes through the
group-commit writer (`app.db.writer`) and the answer leaves only once it is committed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, TypeVar

from pydantic import TypeAdapter

from app.codecs.payloads import Expression
from app.db.writer import PredictionWriter
from app.errors import InvalidRequest, UnknownTask
from app.inference.backend import Array
from app.inference.registry import LoadedModel
from app.schemas.predict import (
    ClassifyOut,
    EmbedOut,
    GeneOverlap,
    ModelUsed,
    MultiTaskOut,
    RegressOut,
    SampleEmbedding,
    SamplePrediction,
    SampleTasks,
    SampleValues,
    TaskAnswer,
)
from app.services import explain as explanations
from contract.align import MAX_LISTED, Alignment, PanelInput, to_panel
from contract.card import InputScale, ModelCard, ModelKind, ModelTask
from contract.genes import Harmonised
from contract.scale import refuse_negative
from contract.vocab import GeneSetCollectionName


def gene_overlap(alignment: Alignment, folded: Harmonised) -> GeneOverlap:
    """What the answer says about how the input's genes met the panel."""
    return GeneOverlap(
        matched=alignment.matched,
        panel_size=alignment.panel_size,
        fraction=alignment.fraction,
        missing_genes=alignment.missing_genes[:MAX_LISTED],
        n_missing=len(alignment.missing_genes),
        n_unused_input_genes=len(alignment.unused_input_genes),
        aggregated_duplicates=list(folded.duplicates)[:MAX_LISTED],
        warning=folded.warning(MAX_LISTED),
        matched_directly=alignment.matched_directly,
        matched_via_table=alignment.matched_via_table,
        ambiguous_genes=list(alignment.ambiguous_genes[:MAX_LISTED]),
        n_ambiguous=len(alignment.ambiguous_genes),
    )


def _prepare(
    model: LoadedModel, expr: Expression, min_overlap: float, declared: InputScale | None
) -> PanelInput:
    done = to_panel(
        expr.values,
        expr.genes,
        model.index,
        model.card.input_scale,
        min_overlap=min_overlap,
        declared=declared,
        transforms=model.card.input_transforms,
    )
    # after the scale checks (a z-score input is better told it looks standardised): values
    # the detection let through may still be impossible on the model's scale
    refuse_negative(expr.values, model.card.input_scale, expr.sample_ids, declared)
    return done


async def _run(
    model: LoadedModel, expr: Expression, min_overlap: float, declared: InputScale | None
) -> tuple[dict[str, Array], PanelInput]:
    done = await asyncio.to_thread(_prepare, model, expr, min_overlap, declared)
    return await model.batcher.run(done.values), done


Row = TypeVar("Row", SamplePrediction, SampleValues, SampleEmbedding, SampleTasks)
Extend = Callable[[dict[str, Array], PanelInput, list[dict[str, Any]]], Awaitable[None]]


class Envelope(TypedDict):
    """What every answer carries besides its rows."""

    request_id: str
    model: ModelUsed
    gene_overlap: GeneOverlap
    transform_applied: str | None


async def _answer(
    writer: PredictionWriter,
    model: LoadedModel,
    expr: Expression,
    request_id: str,
    min_overlap: float,
    declared: InputScale | None,
    *,
    task: str,
    rows: Callable[[dict[str, Array]], list[dict[str, Any]]],
    row_type: type[Row],
    keep: bool,
    extend: Extend | None = None,
) -> tuple[list[Row], Envelope]:
    """Run the model, turn its outputs into per-sample rows, record the call (`keep`: the rows).

    `extend` adds to the rows (an explanation) before they are recorded and answered.

    The rows are built once as plain dicts (what the record stores) and validated into the
    answer's models in one call (pydantic-core, not a Python loop of constructors).
    """
    outputs, done = await _run(model, expr, min_overlap, declared)
    fraction = done.alignment.fraction
    plain = rows(outputs)
    if extend is not None:
        await extend(outputs, done, plain)
    card = model.card
    await writer.record(
        request_id=request_id,
        task=task,
        model_name=card.name,
        model_version=card.version,
        sample_ids=expr.sample_ids,
        outputs=plain if keep else None,
        gene_overlap=fraction,
    )
    used = ModelUsed(name=card.name, version=card.version)
    overlap = gene_overlap(done.alignment, done.folded)
    applied = done.transform.describe() if done.transform is not None else None
    envelope = Envelope(
        request_id=request_id, model=used, gene_overlap=overlap, transform_applied=applied
    )
    return _adapter(row_type).validate_python(plain), envelope


@functools.cache
def _adapter(row_type: type[Row]) -> TypeAdapter[list[Row]]:
    return TypeAdapter(list[row_type])  # type: ignore[valid-type]


async def classify(
    *,
    writer: PredictionWriter,
    model: LoadedModel,
    expr: Expression,
    request_id: str,
    min_overlap: float,
    declared_scale: InputScale | None = None,
    explain: int | None = None,
    gene_sets: GeneSetCollectionName | None = None,
    tasks: list[str] | None = None,
) -> ClassifyOut | MultiTaskOut:
    """Class probabilities and the most likely label for every sample; with `explain` the genes
    that most drove each label (and, with `gene_sets`, the sets they are enriched in). A
    multi-task model answers every task, or those named in `tasks`."""
    card = model.card
    chosen = chosen_tasks(card, tasks)
    if chosen is not None:
        if explain is not None or gene_sets is not None:
            raise InvalidRequest(f"{card.name} is a multi-task model; it cannot explain (yet)")
        return await _multitask(
            writer, model, expr, request_id, min_overlap, declared_scale, "classify", chosen
        )
    if card.kind is not ModelKind.classifier or card.labels is None:
        raise InvalidRequest(
            f"{card.name} is a {card.kind} model; classify needs a classifier "
            f"(use /v1/models/{card.name}/embed for an encoder)"
        )
    if card.modalities is not None:
        raise InvalidRequest(
            f"{card.name} is a multi-omics model: POST /v1/models/{card.name}/classify with a "
            "JSON block per modality"
        )
    explanations.check(model, explain, gene_sets)
    labels = card.labels
    extend: Extend | None = None
    if explain is not None:
        top = explain

        async def extend(
            outputs: dict[str, Array], done: PanelInput, plain: list[dict[str, Any]]
        ) -> None:
            await explanations.add_explanations(
                model, done, outputs["probabilities"], plain, top=top, gene_sets=gene_sets
            )

    def rows(outputs: dict[str, Array]) -> list[dict[str, Any]]:
        probabilities = outputs["probabilities"]
        best = probabilities.argmax(axis=1).tolist()
        return [
            {
                "id": sample_id,
                "label": labels[k],
                "probabilities": dict(zip(labels, row, strict=True)),
            }
            for sample_id, k, row in zip(expr.sample_ids, best, probabilities.tolist(), strict=True)
        ]

    predictions, envelope = await _answer(
        writer, model, expr, request_id, min_overlap, declared_scale,
        task="classify", rows=rows, row_type=SamplePrediction, keep=True, extend=extend,
    )  # fmt: skip
    return ClassifyOut(**envelope, predictions=predictions)


async def regress(
    *,
    writer: PredictionWriter,
    model: LoadedModel,
    expr: Expression,
    request_id: str,
    min_overlap: float,
    declared_scale: InputScale | None = None,
    tasks: list[str] | None = None,
) -> RegressOut | MultiTaskOut:
    """The predicted value of every target for every sample; a multi-task model answers every
    task, or those named in `tasks`."""
    card = model.card
    chosen = chosen_tasks(card, tasks)
    if chosen is not None:
        return await _multitask(
            writer, model, expr, request_id, min_overlap, declared_scale, "regress", chosen
        )
    if card.kind is not ModelKind.regressor or card.labels is None:
        hint = (
            f" (use /v1/models/{card.name}/classify)" if card.kind is ModelKind.classifier else ""
        )
        raise InvalidRequest(f"{card.name} is a {card.kind} model; regress needs a regressor{hint}")
    targets = card.labels

    def rows(outputs: dict[str, Array]) -> list[dict[str, Any]]:
        return [
            {"id": sample_id, "values": dict(zip(targets, row, strict=True))}
            for sample_id, row in zip(expr.sample_ids, outputs["prediction"].tolist(), strict=True)
        ]

    predictions, envelope = await _answer(
        writer, model, expr, request_id, min_overlap, declared_scale,
        task="regress", rows=rows, row_type=SampleValues, keep=True,
    )  # fmt: skip
    return RegressOut(**envelope, predictions=predictions)


def chosen_tasks(card: ModelCard, names: list[str] | None) -> list[ModelTask] | None:
    """The multi-task model's tasks asked for (all without `names`), in the model's order; None
    for a single-task model. 422 naming an unknown task (and the model's tasks)."""
    have = [t.name for t in card.tasks]
    if not card.tasks:
        if names:
            raise UnknownTask(
                f"{card.name} is a {card.kind} model with no tasks to name; leave task= out",
                unknown=names,
                tasks=have,
            )
        return None
    if not names:
        return list(card.tasks)
    unknown = [n for n in dict.fromkeys(names) if n not in have]
    if unknown:
        raise UnknownTask(
            f"{card.name} has no task {', '.join(map(repr, unknown))}; its tasks: "
            f"{', '.join(have)}",
            unknown=unknown,
            tasks=have,
        )
    return [t for t in card.tasks if t.name in names]


async def _multitask(
    writer: PredictionWriter,
    model: LoadedModel,
    expr: Expression,
    request_id: str,
    min_overlap: float,
    declared: InputScale | None,
    call: str,
    chosen: list[ModelTask],
) -> MultiTaskOut:
    """Every chosen task's answer: labels and probabilities, or values; recorded per sample."""

    def rows(outputs: dict[str, Array]) -> list[dict[str, Any]]:
        per_task: list[list[dict[str, Any]]] = []
        for task in chosen:
            if task.kind == "classification":
                probabilities = outputs[f"{task.name}.probabilities"]
                best = probabilities.argmax(axis=1).tolist()
                per_task.append(
                    [
                        {
                            "label": task.labels[k],
                            "probabilities": dict(zip(task.labels, row, strict=True)),
                        }
                        for k, row in zip(best, probabilities.tolist(), strict=True)
                    ]
                )
            else:
                values = outputs[f"{task.name}.prediction"][:, 0].tolist()
                per_task.append([{"values": {task.name: v}} for v in values])
        return [
            {
                "id": sample_id,
                "tasks": {t.name: answers[i] for t, answers in zip(chosen, per_task, strict=True)},
            }
            for i, sample_id in enumerate(expr.sample_ids)
        ]

    samples, envelope = await _answer(
        writer, model, expr, request_id, min_overlap, declared,
        task=call, rows=rows, row_type=SampleTasks, keep=True,
    )  # fmt: skip
    grouped = {
        t.name: TaskAnswer.model_validate(
            {"kind": t.kind, "predictions": [{"id": s.id, **s.tasks[t.name]} for s in samples]}
        )
        for t in chosen
    }
    return MultiTaskOut(**envelope, tasks=grouped)


async def embed(
    *,
    writer: PredictionWriter,
    model: LoadedModel,
    expr: Expression,
    request_id: str,
    min_overlap: float,
    declared_scale: InputScale | None = None,
) -> EmbedOut:
    """The embedding of every sample, from a model with an `embedding` output (an encoder)."""
    card = model.card
    if not any(o.name == "embedding" for o in card.outputs):
        raise InvalidRequest(
            f"{card.name} has no embedding output; embed with its encoder "
            f"{card.parent.name if card.parent else '(none recorded)'}"
        )

    def rows(outputs: dict[str, Array]) -> list[dict[str, Any]]:
        return [
            {"id": sample_id, "embedding": row}
            for sample_id, row in zip(expr.sample_ids, outputs["embedding"].tolist(), strict=True)
        ]

    embeddings, envelope = await _answer(
        writer, model, expr, request_id, min_overlap, declared_scale,
        task="embed", rows=rows, row_type=SampleEmbedding, keep=False,  # not kept
    )  # fmt: skip
    return EmbedOut(**envelope, embeddings=embeddings)

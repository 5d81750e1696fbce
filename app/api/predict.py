"""POST /v1/models/{name}/embed, /classify and /regress, in every payload format.

The formats are in app/codecs/negotiate.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.api.deps import CallerDep, MetricsDep, RegistryDep, RequestIdDep, SettingsDep, WriterDep
from app.caller import Caller
from app.codecs import multiomics as omics_codec
from app.codecs import negotiate as formats
from app.codecs.payloads import Expression
from app.config import Settings
from app.db.writer import PredictionWriter
from app.errors import InvalidRequest, NotAcceptable, documented
from app.inference.registry import LoadedModel, ModelRegistry
from app.metrics import Metrics
from app.schemas.predict import Answer, ClassifyOut, EmbedOut, MultiTaskOut, RegressOut
from app.services import multiomics, predict
from contract.card import InputScale
from contract.vocab import GeneSetCollectionName

router = APIRouter(prefix="/v1/models", tags=["predict"])

VersionQuery = Annotated[
    int | None,
    Query(
        ge=1,
        description="Model version. Left out: the version `{name}@alias` names, else the "
        "production alias's, else (GET /v1/models says which) the latest or first version.",
    ),
]
ScaleQuery = Annotated[
    InputScale | None,
    Query(description="Declare the input's scale instead of detecting it from the values."),
]
ExplainQuery = Annotated[
    int | None,
    Query(
        description="Explain each prediction: the N genes with the largest integrated-gradients "
        "attribution to the predicted label's logit (1 to the panel size). Only models with an "
        "explanation graph (GET /v1/models/{name}: `explain`); JSON answers only.",
    ),
]
GeneSetsQuery = Annotated[
    GeneSetCollectionName | None,
    Query(
        description="With explain=N: test each sample's top genes for over-representation in "
        "this committed collection (hypergeometric test, Benjamini-Hochberg q).",
    ),
]
TaskQuery = Annotated[
    list[str] | None,
    Query(
        description="A multi-task model: answer only these tasks (repeat for several; "
        "GET /v1/models/{name} lists them). Left out: every task. A name the model lacks is a "
        "422 listing its tasks.",
    ),
]
PROBLEMS = documented(
    e404="No such model or version",
    e406="The Accept header names no format we answer in",
    e413="Too many samples or too large a body",
    e415="A Content-Type or Content-Encoding we do not read",
    e422="Malformed body, bad values (the samples and genes are named), too few genes, "
    "values on the wrong scale, an explanation the model cannot give, or a task= the model "
    "lacks",
)
_TABLE = {"schema": {"type": "string", "format": "binary"}}
BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "JSON records or matrix; CSV/TSV (a row per sample, the first column its id); Arrow "
            "IPC stream or Parquet (a column per gene plus `sample_id`); npy (samples × the "
            "model's panel, in panel order; ids in `X-Sample-IDs: a,b,...`) or npz (`values`, "
            "`genes`, optional `sample_ids`). `Content-Encoding: gzip` is accepted."
        ),
        "content": {
            formats.JSON: {
                "schema": {"type": "object"},
                "examples": {
                    "records": {
                        "value": {
                            "genes": ["CD3E", "CD14"],
                            "samples": [{"id": "S1", "values": [1.2, 0.0]}],
                        }
                    },
                    "matrix": {
                        "value": {
                            "genes": ["CD3E", "CD14"],
                            "sample_ids": ["S1"],
                            "values": [[1.2, 0.0]],
                        }
                    },
                },
            },
            **{kind: _TABLE for kind in formats.REQUEST_TYPES if kind != formats.JSON},
        },
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {kind: {} for kind in formats.RESPONSE_TYPES if kind != formats.JSON}},
    **PROBLEMS,
}

Task = Callable[..., Awaitable[Answer]]


async def _serve(
    task: Task,
    request: Request,
    name: str,
    version: int | None,
    *,
    registry: ModelRegistry,
    caller: Caller,
    settings: Settings,
    writer: PredictionWriter,
    metrics: Metrics,
    request_id: str,
    input_scale: InputScale | None,
    options: dict[str, Any] | None = None,
) -> Response:
    kind = formats.choose(request.headers.get("accept"))  # before any work: 406 is cheap
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if options.get("explain") is not None and kind != formats.JSON:
        raise NotAcceptable("explanations are answered in JSON only (Accept: application/json)")
    model: LoadedModel = registry.get(name, version, viewer=caller)
    labels = (model.card.name, str(model.card.version))
    outcome = "failed"
    try:
        async with model.batcher.lease():
            if model.card.modalities is not None:  # a JSON block per modality
                out = await _multiomics(task, request, model, settings, writer, request_id,
                                        input_scale, options)  # fmt: skip
                outcome = "ok"
                return formats.render(out, kind)
            expr: Expression = await formats.read_expression(
                request,
                panel=model.card.panel.ids,
                max_samples=settings.max_samples_per_request,
                max_bytes=settings.max_body_bytes,
            )
            out = await task(
                writer=writer,
                model=model,
                expr=expr,
                request_id=request_id,
                min_overlap=settings.min_gene_overlap,
                declared_scale=input_scale,
                **options,
            )
        outcome = "ok"
    finally:
        metrics.inferences.labels(*labels, outcome).inc()
    return formats.render(out, kind)


async def _multiomics(
    task: Task,
    request: Request,
    model: LoadedModel,
    settings: Settings,
    writer: PredictionWriter,
    request_id: str,
    input_scale: InputScale | None,
    options: dict[str, Any],
) -> Answer:
    """classify for a multi-omics model (`app.services.multiomics`); the other tasks refused."""
    card = model.card
    if task is not predict.classify or options:
        raise InvalidRequest(
            f"{card.name} is a multi-omics classifier: it answers classify, without "
            "explanations, with a JSON block per modality"
        )
    req = await omics_codec.read_multiomics(
        request, card=card, max_samples=settings.max_samples_per_request,
        max_bytes=settings.max_body_bytes,
    )  # fmt: skip
    return await multiomics.classify(
        writer=writer, model=model, req=req, request_id=request_id,
        min_overlap=settings.min_gene_overlap, declared_scale=input_scale,
    )  # fmt: skip


def _endpoint(task: Task) -> Callable[..., Awaitable[Response]]:
    """The route function for one task: the tasks differ only in the service they call."""

    async def endpoint(
        name: str,
        request: Request,
        registry: RegistryDep,
        caller: CallerDep,
        settings: SettingsDep,
        writer: WriterDep,
        metrics: MetricsDep,
        request_id: RequestIdDep,
        version: VersionQuery = None,
        input_scale: ScaleQuery = None,
    ) -> Response:
        return await _serve(
            task,
            request,
            name,
            version,
            registry=registry,
            caller=caller,
            settings=settings,
            writer=writer,
            metrics=metrics,
            request_id=request_id,
            input_scale=input_scale,
        )

    endpoint.__name__ = task.__name__  # the OpenAPI operation id
    return endpoint


async def classify(
    name: str,
    request: Request,
    registry: RegistryDep,
    caller: CallerDep,
    settings: SettingsDep,
    writer: WriterDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    version: VersionQuery = None,
    input_scale: ScaleQuery = None,
    explain: ExplainQuery = None,
    gene_sets: GeneSetsQuery = None,
    task: TaskQuery = None,
) -> Response:
    """classify, with the explanation options and a multi-task model's task choice."""
    return await _serve(
        predict.classify,
        request,
        name,
        version,
        registry=registry,
        caller=caller,
        settings=settings,
        writer=writer,
        metrics=metrics,
        request_id=request_id,
        input_scale=input_scale,
        options={"explain": explain, "gene_sets": gene_sets, "tasks": task},
    )


async def regress(
    name: str,
    request: Request,
    registry: RegistryDep,
    caller: CallerDep,
    settings: SettingsDep,
    writer: WriterDep,
    metrics: MetricsDep,
    request_id: RequestIdDep,
    version: VersionQuery = None,
    input_scale: ScaleQuery = None,
    task: TaskQuery = None,
) -> Response:
    """regress, with a multi-task model's task choice."""
    return await _serve(
        predict.regress,
        request,
        name,
        version,
        registry=registry,
        caller=caller,
        settings=settings,
        writer=writer,
        metrics=metrics,
        request_id=request_id,
        input_scale=input_scale,
        options={"tasks": task},
    )


router.post(
    "/{name}/classify",
    response_model=ClassifyOut | MultiTaskOut,
    summary="Classify expression profiles (optionally explained)",
    responses=RESPONSES,
    openapi_extra=BODY,
)(classify)

router.post(
    "/{name}/regress",
    response_model=RegressOut | MultiTaskOut,
    summary="Predict continuous values (a regressor's targets, or every task of a multi-task "
    "model)",
    responses=RESPONSES,
    openapi_extra=BODY,
)(regress)

router.post(
    "/{name}/embed",
    response_model=EmbedOut,
    summary="Embed expression profiles with an encoder",
    responses=RESPONSES,
    openapi_extra=BODY,
)(_endpoint(predict.embed))

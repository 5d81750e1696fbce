"""The Open Inference Protocol (KServe v2) under /v2, as tritonclient.http speaks it.

Errors here are `{"error": "..."}` with the status the protocol expects (400 for a bad request,
404 for an unknown model), not problem+json: that is what v2 clients parse. Inference goes through
the same batcher as /v1 and is recorded (task "v2-infer", rows numbered from 0) through the
group-commit writer (`app.db.writer`): each call answers once its row is committed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.routing import Route

from app import __version__
from app.api.deps import CallerDep, RegistryDep
from app.codecs import v2 as v2codec
from app.codecs.negotiate import inflate
from app.config import Settings
from app.errors import AppError, InvalidRequest, ModelNotFound, v2_error
from app.inference.registry import LoadedModel, ModelRegistry
from app.inference.routing import EVERYONE, Viewer
from app.metrics import Metrics
from app.security import require
from contract.errors import DataError
from contract.scale import refuse_negative, require_scale

router = APIRouter(prefix="/v2", tags=["kserve-v2"])

HEADER_LENGTH = "inference-header-content-length"
INLINE_BYTES = 1 << 20
PLATFORM = "onnxruntime_onnx"  # what Triton reports for ONNX Runtime models


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


def _model(registry: ModelRegistry, name: str, version: str | None, viewer: Viewer) -> LoadedModel:
    if version is not None and not version.isdigit():
        raise ModelNotFound(f"model {name!r} has no version {version!r}")
    return registry.get(name, int(version) if version is not None else None, viewer=viewer)


# first in the file, so first in the route table: routes are matched in order, and inference is
# what small requests hammer. It needs a predict key when auth is on; health and metadata stay
# open, as on /v1
@router.post(
    "/models/{name}/infer",
    summary="Inference, JSON or binary tensors",
    dependencies=[Depends(require("predict"))],
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    include_in_schema=False,
    dependencies=[Depends(require("predict"))],
)
async def infer(name: str, request: Request, version: str | None = None) -> Response:
    # registry, settings and request id read straight from the app and request state, not through
    # RegistryDep/SettingsDep/RequestIdDep: here FastAPI's resolving of each dependency costs more
    # than the lookup itself (the same objects those dependencies return)
    registry: ModelRegistry = request.app.state.registry
    settings: Settings = request.app.state.settings
    request_id: str = request.state.request_id
    try:
        # the caller require() admitted: its tenant's models and the operator's
        m = _model(registry, name, version, request.state.caller)
    except (AppError, DataError) as exc:
        return v2_error(exc)
    metrics: Metrics = request.app.state.metrics
    outcome = "failed"
    try:
        async with m.batcher.lease():
            body, headers, n = await _infer(
                m, request, settings.max_samples_per_request, settings.max_body_bytes
            )
            # answered only once the row is committed; concurrent calls share the transaction
            await request.app.state.writer.record(
                request_id=request_id,
                task="v2-infer",
                model_name=m.card.name,
                model_version=m.card.version,
                sample_ids=[str(i) for i in range(n)],
                outputs=None,
                gene_overlap=1.0,
            )
        outcome = "ok"
    except (AppError, DataError) as exc:
        return v2_error(exc)
    finally:
        metrics.inferences.labels(m.card.name, str(m.card.version), outcome).inc()
    media = "application/octet-stream" if HEADER_LENGTH in headers else "application/json"
    return Response(body, media_type=media, headers=headers)


_predict_scope = require("predict")


async def _infer_route(request: Request) -> Response:
    """`infer` as a plain Starlette route, matched before the FastAPI one (which documents it).

    FastAPI resolves each route's dependencies and parameters on every request; for small
    requests that was a fifth of the event loop's time per call (64 concurrent single-profile
    clients, tests/perf/bench.py (d), (g)). Here the same scope check runs by hand, then the
    same endpoint; the middlewares (request id, body limit, metrics, Idempotency-Key) are the
    app's and apply as before.
    """
    try:
        await _predict_scope(request)
    except (AppError, DataError) as exc:
        return v2_error(exc)
    params = request.path_params
    return await infer(params["name"], request, params.get("version"))


for _path in ("/models/{name}/infer", "/models/{name}/versions/{version}/infer"):
    route = Route(router.prefix + _path, _infer_route, methods=["POST"], include_in_schema=False)
    router.routes.insert(0, route)


@router.get("", summary="Server metadata")
def server_metadata() -> Response:
    return _json({"name": "genexfer", "version": __version__, "extensions": ["binary_tensor_data"]})


@router.get("/health/live", summary="Server liveness")
def live() -> Response:
    return _json({"live": True})


@router.get(
    "/health/ready",
    summary="Server readiness: at least one model version is loaded",
    responses={
        503: {
            "description": "Not ready (no model version loaded), with Retry-After.",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"ready": {"type": "boolean"}},
                        "required": ["ready"],
                    }
                }
            },
        }
    },
)
def ready(registry: RegistryDep) -> Response:
    is_ready = bool(registry.models(viewer=EVERYONE))
    if is_ready:
        return _json({"ready": True})
    return _json({"ready": False}, 503, headers={"Retry-After": "5"})


@router.get("/models/{name}", summary="Model metadata (latest version)")
@router.get("/models/{name}/versions/{version}", summary="Model metadata", include_in_schema=False)
def model_metadata(
    name: str, registry: RegistryDep, caller: CallerDep, version: str | None = None
) -> Response:
    try:
        m = _model(registry, name, version, caller)
    except (AppError, DataError) as exc:
        return v2_error(exc)
    versions = [
        str(v.card.version) for v in registry.models(viewer=caller) if v.card.name == m.card.name
    ]
    card = m.card

    def tensor(spec_name: str, width: int) -> dict[str, Any]:
        return {"name": spec_name, "datatype": "FP32", "shape": [-1, width]}

    return _json(
        {
            "name": card.name,
            "versions": versions,
            "platform": PLATFORM,
            "inputs": [tensor(card.inputs[0].name, card.n_genes)]
            + [tensor(m.name, m.n_features) for m in card.modalities or []],
            "outputs": [
                tensor(o.name, int(o.shape[-1]) if isinstance(o.shape[-1], int) else -1)
                for o in card.outputs
            ],
        }
    )


@router.get("/models/{name}/ready", summary="Model readiness (latest version)")
@router.get("/models/{name}/versions/{version}/ready", include_in_schema=False)
def model_ready(
    name: str, registry: RegistryDep, caller: CallerDep, version: str | None = None
) -> Response:
    try:
        _model(registry, name, version, caller)
    except (AppError, DataError) as exc:
        return v2_error(exc)
    return _json({"name": name, "ready": True})


async def _infer(
    m: LoadedModel, request: Request, max_samples: int, max_bytes: int
) -> tuple[bytes, dict[str, str], int]:
    raw = await request.body()
    given = request.headers.get(HEADER_LENGTH)
    if given is not None and not given.strip().isdigit():
        raise InvalidRequest(f"Inference-Header-Content-Length must be a number, got {given!r}")
    header_length = int(given) if given is not None else None
    encoding = request.headers.get("content-encoding")

    def decode() -> v2codec.InferRequest:
        body = inflate(raw, encoding, max_bytes)
        parsed = v2codec.parse(body, header_length, m.card, max_samples)
        require_scale(parsed.x, m.card.input_scale, parsed.declared_scale)
        refuse_negative(parsed.x, m.card.input_scale, None, parsed.declared_scale)
        return parsed

    # a small binary body (one or a few profiles) decodes in microseconds, less than a thread
    # hop costs; anything large, compressed or JSON is decoded off the event loop
    small = header_length is not None and encoding is None and len(raw) <= INLINE_BYTES
    parsed = decode() if small else await asyncio.to_thread(decode)
    x = parsed.x if parsed.extra is None else np.hstack([parsed.x, parsed.extra])
    outputs = await m.batcher.run(x)
    if small:
        body, json_length = v2codec.encode(card=m.card, request=parsed, outputs=outputs)
    else:
        body, json_length = await asyncio.to_thread(
            lambda: v2codec.encode(card=m.card, request=parsed, outputs=outputs)
        )
    headers = {} if json_length is None else {HEADER_LENGTH: str(json_length)}
    return body, headers, parsed.x.shape[0]

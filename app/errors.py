"""Errors as RFC 9457 problem+json: every error the service answers on purpose is here.

AppError (500)
├── ModelLoadError                a model version could not be loaded
├── Unauthorized (401)            missing or invalid API key
├── Forbidden (403)               the key lacks a scope
│   └── NotOwner                  a model name of another tenant, or of the operator
├── NotFound (404)
│   └── ModelNotFound
├── NotAcceptable (406)           no answer format the client accepts
├── Conflict (409)                the resource's state forbids it (e.g. a job already finished)
│   └── IdempotencyConflict       a request with the same Idempotency-Key is still running
├── PayloadTooLarge (413)
├── UnsupportedMediaType (415)
├── TooManyRequests (429)         a key over its rate, a tenant at its job quota (Retry-After)
├── InvalidRequest (422)
│   ├── KeyReused                 an Idempotency-Key sent again with another request
│   ├── InvalidExpressionData     bad values; names the samples and genes at fault
│   ├── InsufficientGeneOverlap   too few of the model's genes present
│   ├── WrongInputScale           counts sent to a log model, and the like
│   ├── CannotExplain             explain= asked of a model without an explanation graph
│   └── UnknownTask               task= names no task of the model (names the model's tasks)
├── ServiceUnavailable (503)      e.g. the database cannot be reached (always with Retry-After)
└── RequestTimeout (504)

The shared core (`contract`) raises `contract.errors.DataError` and its subclasses, since it
knows nothing of HTTP; `from_contract` gives each its AppError here (one handler, every route).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from contract.errors import DataError, GeneOverlapError, InputScaleError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://genexfer.dev/problems/"


class AppError(Exception):
    """Base of every error the service answers on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}  # response headers, e.g. Retry-After

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extra)
        return problem


class ModelLoadError(AppError):
    slug = "model-load-error"
    title = "Model could not be loaded"


class Unauthorized(AppError):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "The API key lacks a scope"


class NotOwner(Forbidden):
    slug = "not-owner"
    title = "The model name belongs to another tenant or to the operator"


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"


class ModelNotFound(NotFound):
    slug = "model-not-found"
    title = "Model not found"


class NotAcceptable(AppError):
    status = 406
    slug = "not-acceptable"
    title = "Not acceptable"


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict with the resource's state"


class IdempotencyConflict(Conflict):
    slug = "idempotency-in-progress"
    title = "A request with this Idempotency-Key is still being processed"


class UnsupportedMediaType(AppError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class InvalidRequest(AppError):
    status = 422
    slug = "invalid-request"
    title = "Invalid request"


class UnknownTask(InvalidRequest):
    slug = "unknown-task"
    title = "The model has no such task"


class KeyReused(InvalidRequest):
    slug = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class InvalidExpressionData(InvalidRequest):
    slug = "invalid-expression-data"
    title = "Invalid expression data"


class InsufficientGeneOverlap(InvalidRequest):
    slug = "insufficient-gene-overlap"
    title = "Too few of the model's genes in the input"


class WrongInputScale(InvalidRequest):
    slug = "wrong-input-scale"
    title = "The values are not on the scale the model expects"


class CannotExplain(InvalidRequest):
    slug = "cannot-explain"
    title = "This model cannot explain its predictions"


class PayloadTooLarge(AppError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


def _retry_after(error: AppError, seconds: float) -> None:
    """Tell the client when to come back: whole seconds (RFC 9110), at least 1."""
    whole = max(1, math.ceil(seconds))
    error.headers["Retry-After"] = str(whole)
    error.extra["retry_after_s"] = whole


class TooManyRequests(AppError):
    """A key over its request rate, or a tenant at its quota; says when to retry."""

    status = 429
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: float, **extra: Any) -> None:
        super().__init__(detail, **extra)
        _retry_after(self, retry_after_s)


class ServiceUnavailable(AppError):
    """Every 503 says when to retry (Retry-After; 5 s unless the cause knows better)."""

    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after_s: float = 5.0, **extra: Any) -> None:
        super().__init__(detail, **extra)
        _retry_after(self, retry_after_s)


class RequestTimeout(AppError):
    status = 504
    slug = "request-timeout"
    title = "Request timed out"


def from_contract(error: DataError) -> AppError:
    """The AppError a data error of the shared core is answered with."""
    kind: type[AppError] = InvalidExpressionData
    if isinstance(error, GeneOverlapError):
        kind = InsufficientGeneOverlap
    elif isinstance(error, InputScaleError):
        kind = WrongInputScale
    return kind(error.detail, **error.extra)


def documented(**statuses: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for problem+json answers, e.g. documented(e404="No such model")."""
    return {
        int(code.removeprefix("e")): {"description": text, "content": {PROBLEM_JSON: {}}}
        for code, text in statuses.items()
    }


def problem_json(
    problem: dict[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> Response:
    """A problem+json response (orjson-encoded)."""
    return Response(orjson.dumps(problem), status, headers=headers, media_type=PROBLEM_JSON)


def v2_error(error: AppError | DataError) -> Response:
    """An error as the Open Inference Protocol has it: `{"error": ...}`, Triton's status mapping."""
    if isinstance(error, DataError):
        error = from_contract(error)
    status = error.status if error.status in (401, 403, 404, 413, 429, 503, 504) else 400
    if error.status >= 500 and status == 400:
        status = 500
    body = orjson.dumps({"error": error.detail})
    return Response(body, status, headers=error.headers, media_type="application/json")


def problem_response(error: AppError, request: Request) -> Response:
    """Render an AppError as problem+json (as `{"error": ...}` under /v2, for v2 clients)."""
    path = request.url.path
    if path == "/v2" or path.startswith("/v2/"):
        return v2_error(error)
    return problem_json(error.to_problem(instance=path), error.status, error.headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


def _place(loc: list[Any]) -> tuple[str, str | None]:
    """Where a validation error is, in words, and the parameter's name (None: in the body)."""
    kind, rest = (str(loc[0]), loc[1:]) if loc else ("body", [])
    name = ".".join(map(str, rest))
    if kind in ("query", "path", "header", "cookie"):
        return f"{kind} parameter {name!r}", name
    return (f"body field {name!r}" if name else "the body"), None


def validation_problem(exc: RequestValidationError) -> InvalidRequest:
    """A 422 naming each parameter or body field at fault (the first five in `detail`)."""
    errors = _validation_errors(exc)
    places = [_place(e["loc"]) for e in errors]
    shown = zip(places[:5], errors[:5], strict=True)
    where = "; ".join(f"{p}: {e['msg']}" for (p, _), e in shown)
    parameters = sorted({name for _, name in places if name is not None})
    if places and all(name is None for _, name in places):
        detail = f"The request body is malformed: {where}"
    else:
        detail = f"Invalid request: {where}"
    extra: dict[str, Any] = {"errors": errors}
    if parameters:
        extra["parameters"] = parameters
    return InvalidRequest(detail if len(errors) <= 5 else detail + "; ...", **extra)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error answer problem+json, unexpected ones too (without leaking internals)."""

    async def on_app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return problem_response(exc, request)

    async def on_data_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DataError)
        return problem_response(from_contract(exc), request)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc), request)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bad input is a 422 here
            return problem_response(
                InvalidRequest(f"The request body is malformed: {exc.detail}"), request
            )
        error = AppError(str(exc.detail))
        problem = error.to_problem(instance=request.url.path)
        problem.update(type="about:blank", title=_reason(exc.status_code), status=exc.status_code)
        return problem_json(problem, exc.status_code, exc.headers)

    async def on_db_down(request: Request, exc: Exception) -> Response:
        log.error("database unavailable: %s", first_line(exc))
        error = ServiceUnavailable("The database cannot be reached; try again shortly.")
        return problem_response(error, request)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if isinstance(exc, SQLAlchemyError):
            # a driver's message can quote the failing row (PostgreSQL's DETAIL does): rows
            # hold sample ids and outputs, so the class and first line only, no traceback
            log.error("unhandled database error on %s: %s", request.url.path, first_line(exc))
        else:
            log.exception("unhandled error on %s", request.url.path)
        error = AppError("An unexpected error occurred; it has been logged.")
        return problem_response(error, request)

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(DataError, on_data_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(OperationalError, on_db_down)
    app.add_exception_handler(Exception, on_unexpected)


def first_line(exc: BaseException) -> str:
    """An exception as its class and the first line of its message (no parameters, no rows)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"

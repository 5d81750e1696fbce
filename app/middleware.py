"""Request id (echoed as X-Request-ID, carried in every log line), NUL in the URL refused,
body-size limit, timeout."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import uuid
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import (
    AppError,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    problem_json,
    v2_error,
)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def nul_in_url(scope: Scope) -> InvalidRequest | None:
    """A 422 naming the path or the query parameters that hold a NUL character (U+0000): no
    route may take one (the database stores no NUL in text), so it is refused before any runs."""
    if "\x00" in scope.get("path", ""):
        return InvalidRequest("the path contains a NUL character (U+0000)", parameters=["path"])
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    names = sorted({name.replace("\x00", "\\x00") for name, v in pairs if "\x00" in name + v})
    return InvalidRequest(
        f"query parameter(s) {', '.join(names)} contain a NUL character (U+0000)",
        parameters=names,
    )


class RequestContext:
    """Pure ASGI middleware: request id in and out; the body-size limit, before the body is read."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, timeout_s: float = 60.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        refused = nul_in_url(scope)
        if refused is not None:
            try:
                await self._error(scope, send, request_id, refused)
            finally:
                request_id_var.reset(token)
            return

        too_large = False
        started = False
        received = 0

        async def limited_receive() -> Message:
            # A chunked body has no Content-Length: count it as it arrives, and once over the
            # limit tell the app the client left, so it stops reading; the 413 is ours to send.
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def send_with_id(message: Message) -> None:
            if too_large:
                return  # whatever the app answers to the cut-off body is replaced by the 413
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                too_large = True
            else:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        await self.app(scope, limited_receive, send_with_id)
                except TimeoutError:
                    if started:
                        raise  # half an answer is out: all we can do is drop the connection
                    timeout = RequestTimeout(
                        f"the request took longer than {self.timeout_s:g} s and was cancelled",
                        timeout_s=self.timeout_s,
                    )
                    await self._error(scope, send, request_id, timeout)
                except Exception:
                    if not too_large:
                        raise
            if too_large:
                error = PayloadTooLarge(
                    f"request body exceeds {self.max_body_bytes} bytes",
                    max_body_bytes=self.max_body_bytes,
                )
                await self._error(scope, send, request_id, error)
        finally:
            request_id_var.reset(token)

    async def _error(self, scope: Scope, send: Send, request_id: str, error: AppError) -> None:
        await send_error(scope, send, error, request_id)


async def send_error(
    scope: Scope, send: Send, error: AppError, request_id: str | None = None
) -> None:
    """Answer `error` from ASGI middleware: problem+json, or `{"error"}` under /v2 (the Open
    Inference Protocol's body, which tritonclient reads), with the error's own headers."""
    path = str(scope.get("path", ""))
    if path == "/v2" or path.startswith("/v2/"):
        response = v2_error(error)
    else:
        response = problem_json(error.to_problem(instance=path), error.status, error.headers)
    headers = list(response.raw_headers)
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})

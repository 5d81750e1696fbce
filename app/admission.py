"""Admission control: a bound on the inference requests in flight in this process; beyond it a
request is shed at once (503 with Retry-After), before its body is read.

Under overload a queue without a bound makes every request slow (each waits behind all the
others, then times out); shedding the excess keeps the admitted ones fast and tells the rest
when to come back, which a load balancer or the client's retry can act on. Only inference
routes count (POST /v1/models/{name}/classify|regress|embed, POST /v2/models/.../infer, the web
app's POST /ui/parts/predict): the others are cheap or have limits of their own.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import ServiceUnavailable
from app.metrics import Metrics
from app.middleware import send_error

INFERENCE = re.compile(
    r"^/(v1/models/[^/]+/(classify|regress|embed)|v2/models/.+/infer|ui/parts/predict)$"
)


class Admission:
    """Pure ASGI middleware: at most `max_inflight` inference requests at once; 0: no bound."""

    def __init__(
        self, app: ASGIApp, *, max_inflight: int, retry_after_s: float, metrics: Metrics
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.inflight = 0  # one event loop: no lock needed between the check and the count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.max_inflight <= 0
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or not INFERENCE.match(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            self.metrics.shed.inc()
            error = ServiceUnavailable(
                f"the service is at its bound of {self.max_inflight} inference requests in "
                "flight; this one was shed, retry after the time in Retry-After",
                retry_after_s=self.retry_after_s,
            )
            await send_error(scope, send, error)  # RequestContext, outside, adds X-Request-ID
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

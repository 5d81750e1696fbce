"""HTTP for the client: httpx with the API key, retries and problem+json errors.

A POST carries an `Idempotency-Key` (one per logical request, the same on every retry), so a
retry after a lost connection or a 5xx never runs it twice: the server replays the first answer
or runs it once. Retried: connection errors and timeouts, 500/502/503/504, a 429 whose
Retry-After is at most 10 s (a key over its rate; a longer one, a tenant at its job quota, is
raised), and a 409 saying the first request with the key is still running; a Retry-After the
server sends is waited out (at most 30 s). Everything else is raised at once as a
`GeneXferError` carrying the problem+json the server sent.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

RETRY_STATUSES = frozenset({500, 502, 503, 504})
RATE_LIMITED, SHORT_WAIT_S, LONGEST_WAIT_S = 429, 10.0, 30.0
IN_PROGRESS = "idempotency-in-progress"


class GeneXferError(Exception):
    """The service refused a request; `problem` is its problem+json (type, title, detail, …)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or "error"
        super().__init__(f"{status} {problem.get('title', '')}: {detail}".strip())
        self.status = status
        self.problem = problem

    @property
    def samples(self) -> list[str]:
        """The sample ids the service named as at fault."""
        return list(self.problem.get("samples", []))

    @property
    def genes(self) -> list[str]:
        """The genes the service named as at fault."""
        return list(self.problem.get("genes", []))


def _retry_after(response: httpx.Response) -> float:
    """The seconds a Retry-After header asks for (0 without one, or with an HTTP date)."""
    given = response.headers.get("retry-after", "").strip()
    return float(given) if given.isdigit() else 0.0


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"title": response.reason_phrase, "detail": response.text[:500]}
    return body if isinstance(body, dict) else {"detail": str(body)}


class Transport:
    """One httpx.Client to one service, with retries; `close` (or `with`) releases it."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self.retries = retries
        self.backoff_s = backoff_s

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying what may be retried; a 4xx (or the last failure) is raised."""
        headers = dict(kwargs.pop("headers", None) or {})
        if method == "POST":
            headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            wait = min(self.backoff_s * 2**attempt, 10.0)
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except (httpx.TransportError, httpx.TimeoutException):
                if last:
                    raise
            else:
                if response.is_success:
                    return response
                problem = _problem(response)
                busy = response.status_code == 409 and IN_PROGRESS in str(problem.get("type"))
                told = _retry_after(response)
                soon = response.status_code == RATE_LIMITED and told <= SHORT_WAIT_S
                if last or not (response.status_code in RETRY_STATUSES or busy or soon):
                    raise GeneXferError(response.status_code, problem)
                wait = max(wait, min(told, LONGEST_WAIT_S))
            time.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        """`request`, then the answer's JSON."""
        return self.request(method, url, **kwargs).json()

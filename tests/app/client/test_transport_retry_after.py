"""The client's transport honours Retry-After (issue 13): a 503 or a short 429 is waited out and
retried, a long 429 (a tenant at its job quota) is raised at once."""

from __future__ import annotations

import httpx
import pytest

from app.client import transport as transport_module
from app.client.transport import GeneXferError, Transport


def _transport(answers: list[httpx.Response]) -> Transport:
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        return queue.pop(0)

    return Transport(
        "http://t",
        api_key=None,
        timeout_s=5,
        retries=3,
        backoff_s=0.01,
        transport=httpx.MockTransport(handler),
    )


def _problem(status: int, retry_after: str | None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(status, json={"title": "t", "detail": "d"}, headers=headers)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(transport_module.time, "sleep", waited.append)
    return waited


def test_a_503_and_a_short_429_wait_their_retry_after(sleeps: list[float]) -> None:
    answers = [_problem(503, "3"), _problem(429, "2"), httpx.Response(200, json={"ok": True})]
    with_retries = _transport(answers)
    assert with_retries.json("GET", "/x") == {"ok": True}
    assert sleeps == [3.0, 2.0]


def test_a_long_retry_after_is_capped_and_a_long_429_is_raised(sleeps: list[float]) -> None:
    answers = [_problem(503, "120"), httpx.Response(200, json={})]
    assert _transport(answers).json("GET", "/x") == {}
    assert sleeps == [30.0]
    with pytest.raises(GeneXferError) as caught:
        _transport([_problem(429, "30")]).json("POST", "/v1/finetune-jobs")
    assert caught.value.status == 429
    assert sleeps == [30.0]  # no wait for the quota

"""Idempotency-Key: replay, reuse with another body (422), in progress (409), 5xx frees it."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.tables import IdempotencyRecord, Prediction
from app.idempotency import _claim, _finish
from contract.card import sha256_of
from tests.factories import expression_body

PROBLEM = "application/problem+json"
URL = "/v1/models/pbmc68k-encoder/embed"


def count(engine: Engine) -> int:
    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(Prediction)) or 0)


def test_a_retry_gets_the_first_answer_and_records_nothing(
    svc: TestClient, engine: Engine, pbmc_table: pd.DataFrame
) -> None:
    body = expression_body(pbmc_table, 3)
    first = svc.post(URL, json=body, headers={"Idempotency-Key": "lims-42"})
    again = svc.post(URL, json=body, headers={"Idempotency-Key": "lims-42"})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert count(engine) == 1
    with Session(engine) as s:
        assert s.scalars(select(Prediction.idempotency_key)).one() == "lims-42"
    assert svc.post(URL, json=body).status_code == 200  # no key: a new call
    assert count(engine) == 2


def test_same_key_other_body_is_422(svc: TestClient, pbmc_table: pd.DataFrame) -> None:
    svc.post(URL, json=expression_body(pbmc_table, 1), headers={"Idempotency-Key": "k"})
    r = svc.post(URL, json=expression_body(pbmc_table, 2), headers={"Idempotency-Key": "k"})
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    assert r.json()["type"].endswith("idempotency-key-reused")


def test_retry_while_the_first_still_runs_is_409(
    svc: TestClient, engine: Engine, pbmc_table: pd.DataFrame
) -> None:
    body = expression_body(pbmc_table, 1)
    raw = svc.build_request("POST", URL, json=body).content
    # the state a concurrent first request leaves while it runs: claimed, no answer yet
    with Session(engine) as s:
        s.add(
            IdempotencyRecord(
                scope_key=sha256_of(b"\0", b"\0", b"busy"),
                request_sha256=sha256_of(URL.encode(), b"?", b"", b"\0", raw),
            )
        )
        s.commit()
    r = svc.post(
        URL, content=raw, headers={"Idempotency-Key": "busy", "content-type": "application/json"}
    )
    assert (r.status_code, r.headers["content-type"]) == (409, PROBLEM)
    assert count(engine) == 0


def test_errors_are_replayed_but_keys_of_other_callers_are_not(
    svc: TestClient, pbmc_table: pd.DataFrame
) -> None:
    body = expression_body(pbmc_table, 1)
    r1 = svc.post("/v1/models/nope/embed", json=body, headers={"Idempotency-Key": "e"})
    r2 = svc.post("/v1/models/nope/embed", json=body, headers={"Idempotency-Key": "e"})
    assert r1.status_code == r2.status_code == 404
    assert r2.headers["content-type"] == PROBLEM
    other = svc.post(URL, json=body, headers={"Idempotency-Key": "e", "X-API-Key": "other"})
    assert other.status_code == 200  # another caller's namespace: runs, is not a 422


def test_invalid_key_is_422(svc: TestClient, pbmc_table: pd.DataFrame) -> None:
    r = svc.post(URL, json=expression_body(pbmc_table, 1), headers={"Idempotency-Key": "a b"})
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)


DAY = timedelta(hours=24)


def test_a_server_error_frees_the_key_for_a_retry(engine: Engine) -> None:
    factory = sessionmaker(engine)
    assert _claim(factory, "k5", "req", DAY) is None
    _finish(factory, "k5", 503, [], b"{}")
    assert _claim(factory, "k5", "req", DAY) is None  # claimable again: the retry runs
    _finish(factory, "k5", 201, [["content-type", "application/json"]], b"{}")
    record = _claim(factory, "k5", "req", DAY)
    assert record is not None
    assert record.status_code == 201


def test_records_expire_after_the_ttl(
    svc: TestClient, engine: Engine, pbmc_table: pd.DataFrame
) -> None:
    body = expression_body(pbmc_table, 1)
    assert svc.post(URL, json=body, headers={"Idempotency-Key": "old"}).status_code == 200
    with Session(engine) as s:  # a day and a minute later
        s.execute(
            update(IdempotencyRecord).values(created_at=utcnow() - DAY - timedelta(minutes=1))
        )
        s.commit()
    again = svc.post(URL, json=body, headers={"Idempotency-Key": "old"})
    assert again.status_code == 200
    assert "idempotent-replayed" not in again.headers  # expired: run afresh, recorded again
    assert count(engine) == 2
    # another body under the expired key is a new request too, not a 422; the old answer is gone
    factory = sessionmaker(engine)
    with Session(engine) as s:
        s.execute(update(IdempotencyRecord).values(created_at=utcnow() - 2 * DAY))
        s.commit()
    assert _claim(factory, "other-key", "x", DAY) is None
    with Session(engine) as s:
        assert s.scalars(select(IdempotencyRecord.scope_key)).all() == ["other-key"]

"""The group-commit writer: concurrent records share transactions; each waits for its commit."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.audit import api_key_id_var, idempotency_key_var
from app.db.session import make_sessionmaker
from app.db.tables import Prediction
from app.db.writer import PredictionWriter
from app.errors import AppError, InvalidRequest


async def _record(writer: PredictionWriter, i: int) -> None:
    await writer.record(
        request_id=f"r{i}",
        task="v2-infer",
        model_name="m",
        model_version=1,
        sample_ids=[str(j) for j in range(i % 3 + 1)],
        outputs=None,
        gene_overlap=1.0,
    )


def test_concurrent_records_share_transactions_and_are_all_committed(engine: Engine) -> None:
    async def scenario() -> PredictionWriter:
        writer = PredictionWriter(make_sessionmaker(engine))
        await asyncio.gather(*(_record(writer, i) for i in range(40)))
        await writer.close()
        return writer

    writer = asyncio.run(scenario())
    assert writer.transactions < 40  # the first row goes alone, the rest queue behind it
    with Session(engine) as s:
        rows = s.scalars(select(Prediction)).all()
    assert sorted(r.request_id for r in rows) == sorted(f"r{i}" for i in range(40))
    r7 = next(r for r in rows if r.request_id == "r7")
    assert (r7.n_samples, r7.sample_ids, r7.task) == (2, ["0", "1"], "v2-infer")
    assert r7.created_at.utcoffset() == timedelta(0)


def test_rows_carry_the_callers_key_and_idempotency_key(engine: Engine) -> None:
    key_id = uuid.uuid4()

    async def scenario() -> None:
        writer = PredictionWriter(make_sessionmaker(engine))

        async def as_caller() -> None:  # its own context, as a request has
            api_key_id_var.set(key_id)
            idempotency_key_var.set("idem-1")
            await _record(writer, 1)

        await asyncio.gather(asyncio.create_task(as_caller()), _record(writer, 2))
        await writer.close()

    asyncio.run(scenario())
    with Session(engine) as s:
        rows = {r.request_id: r for r in s.scalars(select(Prediction))}
    assert (rows["r1"].api_key_id, rows["r1"].idempotency_key) == (key_id, "idem-1")
    assert (rows["r2"].api_key_id, rows["r2"].idempotency_key) == (None, None)


def test_a_failed_transaction_fails_its_requests_and_the_next_one_is_written(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = PredictionWriter(make_sessionmaker(engine))
    real_write = writer._write
    calls = []

    def flaky(rows: list[dict[str, object]]) -> None:
        calls.append(len(rows))
        if any(row["request_id"] == "r0" for row in rows):
            raise RuntimeError("r0's row is refused")
        real_write(rows)

    monkeypatch.setattr(writer, "_write", flaky)

    async def scenario() -> list[BaseException | None]:
        results = await asyncio.gather(
            *(_record(writer, i) for i in range(3)), return_exceptions=True
        )
        await _record(writer, 99)  # a later request is not poisoned by the failure
        await writer.close()
        return list(results)

    results = asyncio.run(scenario())
    assert isinstance(results[0], AppError)  # its transaction failed: no answer for it
    assert results[0].status == 500
    with Session(engine) as s:
        written = {r.request_id for r in s.scalars(select(Prediction))}
    assert written == {"r1", "r2", "r99"}
    assert results[1:] == [None, None]


SECRET = "PATIENT-0042-SECRET"


async def _bad_or_good(writer: PredictionWriter, i: int, *, bad: bool) -> None:
    """A record whose task is missing (NOT NULL on every backend) when `bad`."""
    await writer.record(
        request_id=f"r{i}",
        task=None if bad else "classify",  # type: ignore[arg-type]
        model_name="m",
        model_version=1,
        sample_ids=[f"{SECRET}-{i}"],
        outputs=[{"id": f"{SECRET}-{i}", "label": "a", "probabilities": {"a": 0.987654}}],
        gene_overlap=1.0,
    )


def test_one_bad_row_fails_only_its_own_request(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[list[BaseException | None], PredictionWriter]:
        writer = PredictionWriter(make_sessionmaker(engine))
        results = await asyncio.gather(
            *(_bad_or_good(writer, i, bad=i == 5) for i in range(16)), return_exceptions=True
        )
        await writer.close()
        return list(results), writer

    with caplog.at_level(logging.DEBUG):
        results, writer = asyncio.run(scenario())
    failed = [i for i, r in enumerate(results) if r is not None]
    assert failed == [5]
    assert isinstance(results[5], AppError)
    assert writer.transactions <= 1 + 2 * 4  # bisected, not one transaction per row
    with Session(engine) as s:
        written = {r.request_id for r in s.scalars(select(Prediction))}
    assert written == {f"r{i}" for i in range(16) if i != 5}
    # the failure is logged (class and first line), never with a sample id or an output
    assert "writing it in halves" in caplog.text
    assert "not written" in caplog.text
    assert SECRET not in caplog.text
    assert "0.987654" not in caplog.text


def test_a_value_the_database_refuses_is_that_requests_422(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any text; PostgreSQL refuses a NUL in its JSONB index")

    async def scenario() -> list[BaseException | None]:
        writer = PredictionWriter(make_sessionmaker(engine))

        async def nul() -> None:
            await writer.record(
                request_id="nul",
                task="embed",
                model_name="m",
                model_version=1,
                sample_ids=["a\x00b"],
                outputs=None,
                gene_overlap=1.0,
            )

        results = await asyncio.gather(
            nul(), *(_record(writer, i) for i in range(4)), return_exceptions=True
        )
        await writer.close()
        return list(results)

    results = asyncio.run(scenario())
    assert isinstance(results[0], InvalidRequest)
    assert results[0].status == 422
    assert results[1:] == [None] * 4


def test_the_database_away_fails_the_group_without_retrying_row_by_row(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    writer = PredictionWriter(make_sessionmaker(engine))
    calls: list[int] = []

    def away(rows: list[dict[str, object]]) -> None:
        calls.append(len(rows))
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(writer, "_write", away)

    async def scenario() -> list[BaseException | None]:
        results = await asyncio.gather(
            *(_record(writer, i) for i in range(8)), return_exceptions=True
        )
        await writer.close()
        return list(results)

    results = asyncio.run(scenario())
    assert all(isinstance(r, OperationalError) for r in results)  # answered 503 by the handler
    assert len(calls) <= 2  # one transaction per group, no bisection

"""The group-commit writer: concurrent records share transactions; each waits for its commit."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.audit import api_key_id_var, idempotency_key_var
from app.db.session import make_sessionmaker
from app.db.tables import Prediction
from app.db.writer import PredictionWriter


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
        if len(calls) == 1:
            raise RuntimeError("database went away")
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
    assert isinstance(results[0], RuntimeError)  # its transaction failed: no answer for it
    with Session(engine) as s:
        written = {r.request_id for r in s.scalars(select(Prediction))}
    assert "r0" not in written
    assert "r99" in written
    assert {f"r{i}" for i, r in enumerate(results) if r is None} <= written

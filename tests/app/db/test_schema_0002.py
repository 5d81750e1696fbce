"""Migrations 0001 ⇄ 0002 ⇄ 0003 on SQLite and PostgreSQL; embed calls are on record too."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.repository import predictions as repository
from app.db.session import make_engine
from app.db.tables import Prediction
from tests.factories import expression_body

NEW_TABLES = {"api_keys", "datasets", "jobs", "model_versions", "idempotency_keys"}


def test_upgrade_downgrade_0002(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.downgrade(engine, "0001")
        tables = set(inspect(engine).get_table_names())
        assert not NEW_TABLES & tables
        assert "idempotency_key" not in {
            c["name"] for c in inspect(engine).get_columns("predictions")
        }
        migrate.upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= NEW_TABLES
        columns = {c["name"] for c in inspect(engine).get_columns("predictions")}
        assert {"idempotency_key", "api_key_id"} <= columns
        fks = inspect(engine).get_foreign_keys("jobs")
        assert fks[0]["options"].get("ondelete") == "SET NULL"
    finally:
        migrate.upgrade(engine)
        engine.dispose()


def test_embedding_answers_are_findable_too(svc: TestClient, pbmc_table: pd.DataFrame) -> None:
    svc.post("/v1/models/pbmc68k-encoder/embed", json=expression_body(pbmc_table, 1))
    (found,) = svc.get("/v1/predictions").json()["predictions"]
    assert (found["task"], found["output"]) == ("embed", None)


def test_sample_id_search_uses_the_index_on_postgresql(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        indexes = {i["name"] for i in inspect(engine).get_indexes("predictions")}
        postgres = engine.dialect.name == "postgresql"
        assert ("ix_predictions_sample_ids_gin" in indexes) is postgres
        if postgres:
            with Session(engine) as session:
                # the planner must be able to answer the service's own query from the index
                session.execute(text("SET LOCAL enable_seqscan = off"))
                stmt = select(Prediction.id).where(repository.includes_sample(session, "S1"))
                sql = stmt.compile(engine, compile_kwargs={"literal_binds": True})
                plan = "\n".join(session.scalars(text(f"EXPLAIN {sql}")))
            assert "ix_predictions_sample_ids_gin" in plan, plan
        migrate.downgrade(engine, "0002")
        indexes = {i["name"] for i in inspect(engine).get_indexes("predictions")}
        assert "ix_predictions_sample_ids_gin" not in indexes
    finally:
        migrate.upgrade(engine)
        engine.dispose()

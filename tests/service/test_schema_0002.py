"""Migrations 0001 ⇄ 0002 on SQLite and PostgreSQL; embed calls are on record too."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from app.db import migrate
from app.db.session import make_engine
from tests.service.conftest import expression_body

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

"""Migrations up and down, and the repository, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.base import utcnow
from app.db.repository import predictions as repository
from app.db.repository.tenancy import Tenancy
from app.db.session import make_engine


def test_upgrade_downgrade_roundtrip(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.downgrade(engine, "base")
        assert "predictions" not in inspect(engine).get_table_names()
        migrate.upgrade(engine)
        assert "predictions" in inspect(engine).get_table_names()
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("predictions")}
        assert {"ix_predictions_request_id", "ix_predictions_model_name"} <= indexes
    finally:
        migrate.upgrade(engine)
        engine.dispose()


def test_prediction_roundtrip_keeps_utc_and_json(engine: Engine) -> None:
    row = {
        "id": uuid.uuid4(),
        "created_at": utcnow(),
        "request_id": "r1",
        "task": "classify",
        "model_name": "m",
        "model_version": 3,
        "n_samples": 2,
        "sample_ids": ["a", "b"],
        "outputs": [{"id": "a", "label": "x", "probabilities": {"x": 1.0}}],
        "gene_overlap": 0.75,
        "api_key_id": None,
        "idempotency_key": None,
        "tenant": "lab-a",
    }
    with Session(engine) as s:
        repository.add_predictions(s, [row])
        s.commit()
    with Session(engine) as s:
        lab_a = Tenancy("lab-a")
        (found,), skip = repository.find_entries(
            s, tenancy=lab_a, sample_id="b", model="m", version=3, limit=10, offset=0
        )
        assert skip == 0
        none = repository.find_entries(
            s, tenancy=lab_a, sample_id="c", model=None, version=None, limit=9, offset=0
        )
        assert none == ([], 0)
        # another tenant finds nothing; an admin's tenancy finds every tenant's rows
        for tenancy, expected in ((Tenancy("lab-b"), 0), (Tenancy("lab-b", all_tenants=True), 1)):
            found_by, _ = repository.find_entries(
                s, tenancy=tenancy, sample_id="b", model=None, version=None, limit=9, offset=0
            )
            assert len(found_by) == expected
    assert found.sample_ids == ["a", "b"]
    assert found.n_samples == 2
    assert found.outputs == [{"id": "a", "label": "x", "probabilities": {"x": 1.0}}]
    assert found.created_at.tzinfo is not None
    assert found.created_at.utcoffset() == UTC.utcoffset(None)

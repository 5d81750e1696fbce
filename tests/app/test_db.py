"""Migrations up and down, and the repository, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from app.db import migrate, repository
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
    with Session(engine) as s:
        repository.add_prediction(
            s,
            request_id="r1",
            task="classify",
            model_name="m",
            model_version=3,
            sample_ids=["a", "b"],
            outputs=[{"id": "a", "label": "x", "probabilities": {"x": 1.0}}],
            gene_overlap=0.75,
        )
        s.commit()
    with Session(engine) as s:
        (row,) = repository.predictions_by_request(s, "r1")
    assert row.sample_ids == ["a", "b"]
    assert row.n_samples == 2
    assert row.outputs == [{"id": "a", "label": "x", "probabilities": {"x": 1.0}}]
    assert row.created_at.tzinfo is not None
    assert row.created_at.utcoffset() == UTC.utcoffset(None)

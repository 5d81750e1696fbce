"""Migration 0003 ⇄ 0004 on SQLite and PostgreSQL: rows made before it join the default tenant,
queued jobs count as dispatched, new rows must name their tenant, and the schema it builds is
the ORM's."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Table, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from app.db import migrate
from app.db.base import Base, utcnow
from app.db.session import make_engine

NEW_TABLES = {"model_names", "model_aliases", "audit_events"}
TENANT_TABLES = ("api_keys", "datasets", "jobs", "predictions", "model_versions")


@pytest.fixture
def bare(database_url: str) -> Iterator[Engine]:
    """The session's database, left migrated to head and empty afterwards."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    try:
        yield engine
    finally:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            for table in ("predictions", "model_versions", "jobs", "datasets", "api_keys"):
                conn.execute(text(f"DELETE FROM {table}"))
        engine.dispose()


def _uuid(engine: Engine) -> Any:
    """A new id as the Uuid type stores it (hex on SQLite, a UUID on PostgreSQL)."""
    u = uuid.uuid4()
    return u if engine.dialect.name == "postgresql" else u.hex


def _rows_at_0003(engine: Engine) -> None:
    meta = MetaData()
    tables = {n: Table(n, meta, autoload_with=engine) for n in TENANT_TABLES}
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(tables["api_keys"]).values(
            id=_uuid(engine), name="lims", prefix="abc", key_sha256="0" * 64,
            scopes=json.dumps(["predict"]) if engine.dialect.name == "sqlite" else ["predict"],
            created_at=now))  # fmt: skip
        dataset = _uuid(engine)
        conn.execute(insert(tables["datasets"]).values(
            id=dataset, name="d", path="/d.npz", source_format="csv", sha256="0" * 64,
            n_samples=1, n_genes=1, label_counts={}, gene_overlap=[], created_at=now))  # fmt: skip
        for status in ("queued", "succeeded"):
            conn.execute(insert(tables["jobs"]).values(
                id=_uuid(engine), status=status, dataset_id=dataset, params={}, history=[],
                progress=0.0, metrics={}, attempts=0, cancel_requested=False,
                created_at=now))  # fmt: skip
        conn.execute(insert(tables["predictions"]).values(
            id=_uuid(engine), request_id="r", task="embed", model_name="m", model_version=1,
            n_samples=1, sample_ids=["S1"], gene_overlap=1.0, created_at=now))  # fmt: skip


def test_upgrade_fills_existing_rows_then_requires_a_tenant(bare: Engine) -> None:
    migrate.downgrade(bare, "0003")
    assert not NEW_TABLES & set(inspect(bare).get_table_names())
    _rows_at_0003(bare)
    migrate.upgrade(bare, "0004")
    assert set(inspect(bare).get_table_names()) >= NEW_TABLES
    with bare.connect() as conn:
        for table in TENANT_TABLES:
            assert set(conn.scalars(text(f"SELECT tenant FROM {table}"))) <= {"default"}, table
        dispatched = dict(conn.execute(text("SELECT status, dispatched_at FROM jobs")).all())
    assert dispatched["queued"] is not None  # handed to the executor at its submission
    assert dispatched["succeeded"] is None
    # the default only filled the old rows: a new row without its tenant is refused
    with pytest.raises(IntegrityError), bare.begin() as conn:
        conn.execute(text(
            "INSERT INTO datasets (id, name, path, source_format, sha256, n_samples, n_genes, "
            "label_counts, gene_overlap, created_at) VALUES (:id, 'd', '/d', 'csv', 'x', 1, 1, "
            "'{}', '[]', :at)"), {"id": _uuid(bare), "at": utcnow()})  # fmt: skip
    key_columns = {c["name"] for c in inspect(bare).get_columns("api_keys")}
    assert {"tenant", "expires_at", "last_used_at", "rotated_from"} <= key_columns


def test_downgrade_removes_what_0004_added(bare: Engine) -> None:
    migrate.upgrade(bare)
    migrate.downgrade(bare, "0003")
    assert not NEW_TABLES & set(inspect(bare).get_table_names())
    for table in TENANT_TABLES:
        assert "tenant" not in {c["name"] for c in inspect(bare).get_columns(table)}, table
    assert "dispatched_at" not in {c["name"] for c in inspect(bare).get_columns("jobs")}
    uniques = inspect(bare).get_unique_constraints("model_versions")
    assert [u["column_names"] for u in uniques] == [["name", "version"]]
    migrate.upgrade(bare)
    assert set(inspect(bare).get_table_names()) >= NEW_TABLES


def test_the_migrated_schema_is_the_orm_s(bare: Engine) -> None:
    migrate.upgrade(bare)
    with bare.connect() as conn, warnings.catch_warnings():
        # the GIN index on an expression (PostgreSQL only) cannot be reflected on SQLite
        warnings.filterwarnings("ignore", "autogenerate skipping .* expression-based index")
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    # alembic's own bookkeeping table is not the ORM's
    assert [d for d in diff if "alembic_version" not in str(d)] == []
    with bare.connect() as conn:
        assert conn.scalar(select(text("version_num")).select_from(text("alembic_version"))) == (
            "0004"
        )

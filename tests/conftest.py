"""Shared fixtures: a real database per backend (SQLite file, PostgreSQL), migrated once; small
seeded synthetic data and short training settings."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from app.db import migrate
from app.db.session import make_engine
from contract.matrix import ExpressionMatrix
from tests.factories import ENCODER, REPO
from training.data.synthetic import make_synthetic
from training.nn.config import TrainConfig

# every table but predictions (emptied first), children before parents
TABLES = (
    "model_versions",
    "jobs",
    "datasets",
    "api_keys",
    "idempotency_keys",
    "model_aliases",
    "model_names",
    "audit_events",
)
POSTGRES_ADMIN_URL = os.environ.get(
    "GENEXFER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def fresh_postgresql(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database named `prefix`_<random>, dropped after."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session, dropped afterwards."""
    with fresh_postgresql("genexfer_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'genexfer.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each database-touching test runs on the embedded default and on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine) -> Iterator[Engine]:
    """The migrated engine; every table is emptied after the test."""
    yield migrated_engine
    with migrated_engine.begin() as conn:
        conn.execute(text("DELETE FROM predictions"))
        # fine-tuning service tables, children first
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="session")
def counts() -> ExpressionMatrix:
    """240 samples × 60 genes of NB counts, 3 well-separated labels, 2 batches."""
    return make_synthetic(240, 60, n_classes=3, separation=2.0, seed=7)


@pytest.fixture
def quick() -> TrainConfig:
    """A few epochs: enough to exercise the loop, fast on 2 cores."""
    return TrainConfig(epochs=8, batch_size=32, lr=3e-3, val_fraction=0.2, patience=3, seed=0)


@pytest.fixture(scope="session")
def pbmc_table() -> pd.DataFrame:
    """pbmc68k_reduced (scanpy's bundled 700 cells): log values, genes as columns, bulk_labels."""
    from training.data.pbmc68k import load_pbmc68k_reduced

    m = load_pbmc68k_reduced()
    table = pd.DataFrame(m.X, index=pd.Index(m.sample_ids, name="cell"), columns=m.gene_ids)
    table["bulk_labels"] = m.obs["bulk_labels"].to_numpy()
    return table


@pytest.fixture(scope="session")
def pbmc_csv(pbmc_table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("pbmc") / "pbmc.csv"
    pbmc_table.to_csv(path)
    return path.read_bytes()


@pytest.fixture
def service_models(tmp_path: Path) -> Path:
    """A writable models/ holding a copy of the demo encoder (jobs publish next to it)."""
    root = tmp_path / "models"
    shutil.copytree(REPO / "models" / ENCODER, root / ENCODER)
    return root

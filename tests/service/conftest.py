"""Fine-tuning service fixtures: a models/ folder with the real demo encoder, pbmc68k data."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.main import create_app
from tests.app.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]
ENCODER = "pbmc68k-encoder"


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


def service_client(engine: Engine, models: Path, data: Path, **overrides: object) -> TestClient:
    """The real app on `engine` with jobs in-process, on the CPU."""
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        models,
        data_dir=data,
        reload_interval_s=0.2,
        job_lease_seconds=3.0,
        **overrides,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def svc(engine: Engine, service_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    with service_client(engine, service_models, tmp_path / "data") as client:
        yield client


def expression_body(table: pd.DataFrame, n: int) -> dict[str, object]:
    """A predict request with the first `n` cells of a pbmc table."""
    genes = [c for c in table.columns if c != "bulk_labels"]
    rows = table.iloc[:n]
    return {
        "genes": genes,
        "samples": [
            {"id": str(i), "values": [float(v) for v in rows.loc[i, genes]]} for i in rows.index
        ],
    }

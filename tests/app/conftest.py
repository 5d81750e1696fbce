"""App fixtures: a models/ folder of small real ONNX models and a client on the real app; for the
job and dataset tests, a models/ folder with the real demo encoder and pbmc68k data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.main import create_app
from tests.factories import GENES, LABELS, TARGETS, make_settings, service_client, write_model


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_model(root=root, name="toy-encoder", genes=GENES, latent=4)
    write_model(
        root=root,
        name="toy-classifier",
        genes=GENES,
        labels=LABELS,
        aliases=[[f"ENSG{i:011d}"] for i in range(10)],
        fill_values=[float(i) for i in range(10)],
    )
    write_model(root=root, name="toy-classifier", version=2, genes=GENES, labels=LABELS, seed=1)
    return root


@pytest.fixture
def regressor(models_dir: Path) -> Path:
    """A regressor beside the other toy models (ask for it before `client`)."""
    return write_model(root=models_dir, name="toy-regressor", genes=GENES, targets=TARGETS, seed=2)


@pytest.fixture
def client(engine: Engine, models_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(engine.url.render_as_string(hide_password=False), models_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def svc(engine: Engine, service_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    with service_client(engine, service_models, tmp_path / "data") as client:
        yield client

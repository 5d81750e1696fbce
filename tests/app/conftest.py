"""API fixtures: a models/ folder of small real ONNX models and a client on the real app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.config import Settings
from app.main import create_app
from tests.factories import write_model

GENES = [f"G{i}" for i in range(10)]
LABELS = ["a", "b", "c"]
TARGETS = ["age", "score"]


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


def make_settings(database_url: str, models_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"providers": ["CPUExecutionProvider"], **overrides}
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        models_dir=models_dir,
        **values,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(engine: Engine, models_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(engine.url.render_as_string(hide_password=False), models_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client

"""App fixtures: a models/ folder of small real ONNX models and a client on the real app; for the
job and dataset tests, a models/ folder with the real demo encoder and pbmc68k data; for the
tenancy tests, the app with keys of two labs and an admin (`labs`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.main import create_app
from app.security import create_key
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


@dataclass(frozen=True)
class Labs:
    """The real app with keys on, jobs sent to a Celery queue no worker reads (they stay queued),
    and keys of two labs and an admin."""

    client: TestClient
    a: dict[str, str]  # lab-a, predict + train
    a_predict: dict[str, str]  # lab-a, predict only
    b: dict[str, str]  # lab-b, predict + train
    admin: dict[str, str]  # tenant ops, admin
    models: Path
    engine: Engine

    def upload(self, key: dict[str, str], name: str = "cells") -> str:
        """A small labelled dataset on the toy panel, uploaded with `key`; its id."""
        values = np.random.default_rng(0).gamma(2.0, 1.0, size=(12, len(GENES))).round(3)
        table = pd.DataFrame(values, columns=GENES, index=[f"S{i}" for i in range(12)])
        table["y"] = ["a", "b", "c"] * 4
        files = {"file": (f"{name}.csv", table.to_csv(index_label="sample").encode())}
        r = self.client.post("/v1/datasets", files=files, data={"name": name}, headers=key)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def job(self, key: dict[str, str], dataset_id: str, output_name: str) -> Any:
        """Submit a fine-tuning job on the toy encoder; the response."""
        body = {
            "encoder": {"name": "toy-encoder"},
            "dataset_id": dataset_id,
            "label_column": "y",
            "output_name": output_name,
        }
        return self.client.post("/v1/finetune-jobs", json=body, headers=key)

    def wait_visible(self, key: dict[str, str], name: str, seconds: float = 10) -> None:
        """Until the registry's poller serves `name` to `key`."""
        deadline = time.monotonic() + seconds
        while self.client.get(f"/v1/models/{name}", headers=key).status_code != 200:
            assert time.monotonic() < deadline, f"{name} never became visible"
            time.sleep(0.1)


def make_key(engine: Engine, tenant: str, *scopes: str, name: str = "lims") -> dict[str, str]:
    """A new key of `tenant` with `scopes`, as request headers."""
    with Session(engine) as s:
        _, key = create_key(s, name=name, scopes=list(scopes), tenant=tenant)
        s.commit()
    return {"X-API-Key": key}


@pytest.fixture
def job_queue() -> Iterator[str]:
    """A private Celery queue on the local Redis that no worker reads; deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    broker = redis.Redis.from_url(Settings(_env_file=None).broker_url)  # type: ignore[call-arg]
    broker.delete(name)
    broker.close()


@pytest.fixture
def labs(engine: Engine, models_dir: Path, tmp_path: Path, job_queue: str) -> Iterator[Labs]:
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        models_dir,
        auth_enabled=True,
        executor="celery",
        job_queue=job_queue,
        data_dir=tmp_path / "data",
        reload_interval_s=0.1,
        job_lease_seconds=3.0,
    )
    keys = {
        "a": make_key(engine, "lab-a", "predict", "train"),
        "a_predict": make_key(engine, "lab-a", "predict"),
        "b": make_key(engine, "lab-b", "predict", "train"),
        "admin": make_key(engine, "ops", "admin", name="operator"),
    }
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Labs(client=client, models=models_dir, engine=engine, **keys)

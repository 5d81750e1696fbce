"""API keys: hashed storage, scopes, 401/403 problem+json, `genexfer keys create`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.cli import main
from app.db.tables import ApiKey, Prediction
from app.security import create_key, hash_key, verify_key
from tests.factories import expression_body, service_client

PROBLEM = "application/problem+json"


@pytest.fixture
def secured(engine: Engine, service_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    with service_client(engine, service_models, tmp_path / "d", auth_enabled=True) as client:
        yield client


def make_key(engine: Engine, *scopes: str) -> tuple[str, ApiKey]:
    with Session(engine, expire_on_commit=False) as s:
        row, key = create_key(s, name="lims", scopes=list(scopes))
        s.commit()
    return key, row


def test_only_the_hash_is_stored(engine: Engine) -> None:
    key, _ = make_key(engine, "predict")
    with Session(engine) as s:
        stored = s.scalars(select(ApiKey)).one()
        assert key not in (stored.key_sha256, stored.prefix, stored.name)
        assert stored.key_sha256 == hash_key(key)
        assert verify_key(s, key) is not None
        assert verify_key(s, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert verify_key(s, "not-a-key") is None
    with pytest.raises(ValueError, match="scopes"):
        make_key(engine, "root")


def test_missing_invalid_and_underscoped_keys(secured: TestClient, engine: Engine) -> None:
    r = secured.get("/v1/datasets")
    assert (r.status_code, r.headers["content-type"]) == (401, PROBLEM)
    r = secured.get("/v1/datasets", headers={"Authorization": "Bearer gx_abc_def"})
    assert r.status_code == 401
    predict_key, _ = make_key(engine, "predict")
    r = secured.get("/v1/datasets", headers={"X-API-Key": predict_key})
    assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM)
    assert "train" in r.json()["detail"]
    train_key, _ = make_key(engine, "train")
    assert secured.get("/v1/datasets", headers={"X-API-Key": train_key}).status_code == 200
    admin_key, _ = make_key(engine, "admin")
    auth = {"Authorization": f"Bearer {admin_key}"}
    assert secured.get("/v1/finetune-jobs", headers=auth).status_code == 200
    assert secured.get("/healthz").status_code == 200  # health stays open for probes


def test_the_key_is_recorded_on_prediction_rows(
    secured: TestClient, engine: Engine, pbmc_table: pd.DataFrame
) -> None:
    key, row = make_key(engine, "predict")
    body = expression_body(pbmc_table, 2)
    r = secured.post("/v1/models/pbmc68k-encoder/embed", json=body, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    with Session(engine) as s:
        (prediction,) = s.scalars(select(Prediction)).all()
    assert prediction.api_key_id == row.id


def test_cli_creates_a_working_key(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("GENEXFER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        assert main(["keys", "create", "--name", "lims", "--scopes", "predict,train"]) == 0
        key = capsys.readouterr().out.strip()
        assert main(["keys", "create", "--name", "x", "--scopes", "everything"]) == 2
    finally:
        get_settings.cache_clear()
    with Session(engine) as s:
        row = verify_key(s, key)
        assert row is not None
        assert row.scopes == ["predict", "train"]


def test_v2_inference_needs_a_predict_key_and_answers_v2_errors(
    secured: TestClient, engine: Engine, pbmc_table: pd.DataFrame
) -> None:
    genes = [c for c in pbmc_table.columns if c != "bulk_labels"]
    x = pbmc_table[genes].to_numpy(dtype="float32")[:2]
    body = {
        "inputs": [
            {
                "name": "expression",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    url = "/v2/models/pbmc68k-encoder/infer"
    assert secured.get("/v2/health/live").status_code == 200  # probes stay open
    assert secured.get("/v2/models/pbmc68k-encoder").status_code == 200
    r = secured.post(url, json=body)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert "API key" in r.json()["error"]  # what tritonclient reads
    train_key, _ = make_key(engine, "train")
    r = secured.post(url, json=body, headers={"X-API-Key": train_key})
    assert r.status_code == 403
    assert "predict" in r.json()["error"]
    predict_key, row = make_key(engine, "predict")
    r = secured.post(url, json=body, headers={"X-API-Key": predict_key})
    assert r.status_code == 200, r.text
    with Session(engine) as s:
        recorded = s.scalars(select(Prediction).where(Prediction.task == "v2-infer")).one()
    assert recorded.api_key_id == row.id

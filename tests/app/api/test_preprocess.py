from __future__ import annotations

import gzip
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from contract.preprocess.pipeline import PreprocessPipeline
from tests.factories import REPO, make_settings
from training.data.pbmc68k import load_pbmc68k_reduced

ENCODER = REPO / "models" / "pbmc68k-encoder" / "1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("pre")
    shutil.copytree(ENCODER, root / "models" / "pbmc68k-encoder" / "1")
    settings = make_settings(
        f"sqlite:///{root / 'db.sqlite'}", root / "models", max_samples_per_request=60
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _counts(n: int = 12, genes: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.poisson(rng.gamma(2.0, 40.0, genes), size=(n, genes)).astype(float)
    return pd.DataFrame(
        X, index=[f"s{i}" for i in range(n)], columns=[f"G{j}" for j in range(genes)]
    )


def _records(frame: pd.DataFrame, **options: Any) -> dict[str, Any]:
    samples = [
        {"id": s, "values": [None if np.isnan(v) else v for v in row]}
        for s, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)
    ]
    return {"genes": list(frame.columns), "samples": samples, **options}


def test_records_with_named_steps_report_qc_and_scale(client: TestClient) -> None:
    frame = _counts()
    frame.iloc[0, :30] = np.nan  # 75% missing: dropped and listed
    frame.iloc[1, 0] = np.nan  # filled, counted
    steps = [{"step": "cpm"}, {"step": "log2p1"}, {"step": "pca", "n_components": 3}]
    r = client.post("/v1/preprocess", json=_records(frame, steps=steps))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["input_scale"]["detected"] == "counts"
    assert out["pipeline"]["steps"] == ["normalize_total", "log2p1", "pca"]
    assert out["qc"]["dropped"] == [
        {"sample": "s0", "reasons": ["75.0% of genes missing (more than 20%)"]}
    ]
    assert out["qc"]["filled_values"] == 1
    assert out["features"] == ["PC1", "PC2", "PC3"]
    assert [s["id"] for s in out["samples"]] == [f"s{i}" for i in range(1, 12)]


def test_a_models_pipeline_matches_the_training_code(client: TestClient) -> None:
    cells = load_pbmc68k_reduced().take(np.arange(20))
    frame = pd.DataFrame(cells.X, index=cells.sample_ids, columns=cells.gene_ids)
    frame = frame.iloc[:, ::-1]  # any column order
    r = client.post("/v1/preprocess", json=_records(frame, model="pbmc68k-encoder"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["gene_overlap"]["fraction"] == 1.0
    assert out["input_scale"]["used"] == "log"
    expected = PreprocessPipeline.load(ENCODER).transform(cells.X)
    got = np.array([s["values"] for s in out["samples"]], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_counts_sent_to_a_log_pipeline_are_refused(client: TestClient) -> None:
    cells = load_pbmc68k_reduced().take(np.arange(5))
    raw = np.round(np.expm1(cells.X) * 10)  # integer counts, far beyond a log range
    frame = pd.DataFrame(raw, index=cells.sample_ids, columns=cells.gene_ids)
    r = client.post("/v1/preprocess", json=_records(frame, model="pbmc68k-encoder"))
    assert r.status_code == 422
    problem = r.json()
    assert problem["type"].endswith("/wrong-input-scale")
    assert "expects log" in problem["detail"]


def test_upload_gz_tsv_genes_as_rows_answers_in_the_same_format(client: TestClient) -> None:
    frame = _counts(8)
    text = frame.T.rename_axis("gene").to_csv(sep="\t")
    files = {"file": ("m.tsv.gz", gzip.compress(text.encode()), "application/gzip")}
    options = {"steps": [{"step": "cpm"}], "output": "same", "orientation": "genes_as_rows"}
    r = client.post("/v1/preprocess/file", files=files, data={"options": orjson.dumps(options)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/tab-separated-values")
    qc = orjson.loads(r.headers["x-genexfer-qc"])
    assert (qc["n_samples_in"], qc["n_samples_kept"], qc["input_scale"]) == (8, 8, "counts")
    back = pd.read_csv(io.StringIO(r.text), sep="\t", index_col=0)
    np.testing.assert_allclose(back.sum(axis=1), 1e6, rtol=1e-5)


def test_upload_parquet_and_h5ad_answer_json(client: TestClient, tmp_path: Path) -> None:
    frame = _counts(6)
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    options = orjson.dumps({"steps": [{"step": "log1p"}]})
    r = client.post(
        "/v1/preprocess/file",
        files={"file": ("m.parquet", buffer.getvalue())},
        data={"options": options},
    )
    assert r.status_code == 200, r.text
    assert r.json()["samples"][0]["values"][0] == pytest.approx(np.log1p(frame.iloc[0, 0]))
    adata = anndata.AnnData(
        X=frame.to_numpy(),
        obs=pd.DataFrame(index=frame.index),
        var=pd.DataFrame(index=frame.columns),
    )
    adata.write_h5ad(tmp_path / "m.h5ad")
    files = {"file": ("m.h5ad", (tmp_path / "m.h5ad").read_bytes())}
    options = orjson.dumps({"steps": [{"step": "log1p"}], "output": "h5ad"})
    r = client.post("/v1/preprocess/file", files=files, data={"options": options})
    assert r.status_code == 200, r.text
    (tmp_path / "out.h5ad").write_bytes(r.content)
    back = anndata.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_allclose(back.X, np.log1p(frame.to_numpy()), rtol=1e-6)


def test_combat_steps_use_the_batches_given(client: TestClient) -> None:
    frame = np.log2(_counts(12, 60) + 1)
    batch = ["a"] * 6 + ["b"] * 6
    frame.iloc[6:] += 1.0
    body = _records(frame, steps=[{"step": "combat"}], batch=batch)
    r = client.post("/v1/preprocess", json=body)
    assert r.status_code == 200, r.text
    out = np.array([s["values"] for s in r.json()["samples"]])
    assert (
        abs(out[:6].mean() - out[6:].mean())
        < 0.1
        < abs(frame.iloc[:6].mean().mean() - frame.iloc[6:].mean().mean())
    )
    assert r.json()["batch_notes"] == [
        "a: training batch, stored batch effects removed",
        "b: training batch, stored batch effects removed",
    ]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "pbmc68k-encoder", "steps": []}, 422, "exactly one of 'model'"),
        ({}, 422, "exactly one of 'model'"),
        ({"steps": [{"step": "zscore"}]}, 422, "body field 'steps.0.step'"),
        ({"steps": [{"step": "standardize", "clip": "x"}]}, 422, "body field 'steps.0.clip'"),
        ({"steps": [{"step": "pca"}]}, 422, "step 'pca' needs the option 'n_components'"),
        ({"steps": [{"step": "combat"}]}, 422, "no obs column 'batch'"),
        ({"model": "nope"}, 404, "nope"),
        ({"steps": [], "batch": ["a"]}, 422, "batch has 1 labels for 12 samples"),
    ],
)
def test_request_errors(
    client: TestClient, body: dict[str, Any], status: int, message: str
) -> None:
    r = client.post("/v1/preprocess", json=_records(_counts(), **body))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert message in r.json()["detail"]


def test_data_errors_name_the_samples(client: TestClient) -> None:
    body = _records(_counts(3), steps=[])
    body["samples"][1]["values"][0] = 1e39  # beyond float32
    r = client.post("/v1/preprocess", json=body)
    assert r.status_code == 422
    assert r.json()["samples"] == ["s1"]
    r = client.post("/v1/preprocess", json=_records(_counts(61), steps=[]))
    assert r.status_code == 413
    files = {"file": ("m.csv", b"id,g1,g2\ns1,1,x\ns2,3,4\n")}
    r = client.post("/v1/preprocess/file", files=files, data={"options": '{"steps": []}'})
    assert r.status_code == 422
    assert "'m.csv'" in r.json()["detail"]
    assert "row 's1'" in r.json()["detail"]
    r = client.post("/v1/preprocess/file", files={"file": ("m.xlsx", b"PK")})
    assert r.status_code == 422
    assert "must end in one of" in r.json()["detail"]
    r = client.post("/v1/preprocess/file", files=files, data={"options": "{not json"})
    assert r.status_code == 422
    assert "'options' form field" in r.json()["detail"]

"""POST/GET/DELETE /v1/datasets with real files of every accepted format, and their errors."""

from __future__ import annotations

import io
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


def small_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        rng.random((6, 4)).astype(np.float32),
        index=pd.Index([f"s{i}" for i in range(6)], name="sample"),
        columns=["HES4", "TNFRSF4", "SSU72", "NOTAGENE"],
    )
    table["cell_type"] = ["a", "b", "a", "b", "a", "c"]
    return table


def upload(client: TestClient, name: str, data: bytes, **form: str) -> dict[str, object]:
    r = client.post("/v1/datasets", files={"file": (name, data)}, data=form)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/datasets/{r.json()['id']}"
    body: dict[str, object] = r.json()
    return body


def test_csv_upload_is_described_and_stored_without_pickles(
    svc: TestClient, tmp_path: Path
) -> None:
    data = small_table().to_csv().encode()
    body = upload(svc, "lab.csv", data)
    assert (body["n_samples"], body["n_genes"], body["source_format"]) == (6, 4, "csv")
    assert body["label_counts"] == {"cell_type": {"a": 3, "b": 2, "c": 1}}
    (overlap,) = body["gene_overlap"]  # type: ignore[misc]
    assert (overlap["model"], overlap["matched"], overlap["panel_size"]) == (
        "pbmc68k-encoder",
        3,
        765,
    )
    import hashlib

    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    (stored,) = (tmp_path / "data" / "datasets").glob("*.npz")
    with np.load(stored, allow_pickle=False) as npz:
        assert npz["X"].shape == (6, 4)
        assert list(npz["label_columns"]) == ["cell_type"]
    assert svc.get(f"/v1/datasets/{body['id']}").json()["name"] == "lab.csv"
    assert [d["id"] for d in svc.get("/v1/datasets").json()["datasets"]] == [body["id"]]


def test_tsv_with_a_separate_labels_table(svc: TestClient) -> None:
    table = small_table()
    labels = table[["cell_type"]].rename(columns={"cell_type": "grade"})
    r = svc.post(
        "/v1/datasets",
        files={
            "file": ("x.tsv", table.drop(columns="cell_type").to_csv(sep="\t").encode()),
            "labels": ("labels.csv", labels.to_csv().encode()),
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["label_counts"] == {"grade": {"a": 3, "b": 2, "c": 1}}


def test_parquet_and_h5ad(svc: TestClient, tmp_path: Path) -> None:
    table = small_table()
    buf = io.BytesIO()
    table.to_parquet(buf)
    assert upload(svc, "x.parquet", buf.getvalue())["n_genes"] == 4
    adata = anndata.AnnData(
        X=table.drop(columns="cell_type").to_numpy(),
        obs=pd.DataFrame({"cell_type": table["cell_type"].to_numpy()}, index=table.index),
        var=pd.DataFrame(index=table.columns[:4]),
    )
    adata.write_h5ad(tmp_path / "x.h5ad")
    body = upload(svc, "x.h5ad", (tmp_path / "x.h5ad").read_bytes())
    assert body["label_counts"] == {"cell_type": {"a": 3, "b": 2, "c": 1}}


def test_numeric_label_column_named_explicitly(svc: TestClient) -> None:
    table = small_table().drop(columns="cell_type")
    table["age"] = [30, 40, 50, 60, 70, 80]
    body = upload(svc, "x.csv", table.to_csv().encode(), label_columns="age")
    assert body["n_genes"] == 4
    assert set(body["label_counts"]["age"]) == {"30", "40", "50", "60", "70", "80"}  # type: ignore[index]


def test_bad_values_are_named(svc: TestClient) -> None:
    table = small_table()
    table.loc["s2", "SSU72"] = np.nan
    r = svc.post("/v1/datasets", files={"file": ("x.csv", table.to_csv().encode())})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert (r.json()["samples"], r.json()["genes"]) == (["s2"], ["SSU72"])


def test_labels_table_missing_samples_is_refused(svc: TestClient) -> None:
    table = small_table()
    labels = table[["cell_type"]].iloc[:4]
    r = svc.post(
        "/v1/datasets",
        files={
            "file": ("x.csv", table.drop(columns="cell_type").to_csv().encode()),
            "labels": ("l.csv", labels.to_csv().encode()),
        },
    )
    assert r.status_code == 422
    assert r.json()["samples"] == ["s4", "s5"]


def test_unreadable_and_unknown_files(svc: TestClient) -> None:
    r = svc.post("/v1/datasets", files={"file": ("x.xlsx", b"PK..")})
    assert r.status_code == 422
    assert "format" in r.json()["detail"]
    r = svc.post("/v1/datasets", files={"file": ("x.h5ad", b"not hdf5")})
    assert r.status_code == 422
    assert "h5ad" in r.json()["detail"]
    r = svc.post(
        "/v1/datasets",
        files={"file": ("x.csv", small_table().to_csv().encode())},
        data={"label_columns": "nope"},
    )
    assert r.status_code == 422
    assert "nope" in r.json()["detail"]


def test_upload_over_the_size_limit_is_413(engine, service_models: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import service_client

    with service_client(engine, service_models, tmp_path / "d", max_dataset_bytes=1024) as c:
        r = c.post("/v1/datasets", files={"file": ("x.csv", b"a," * 2000)})
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM


def test_delete_and_missing(svc: TestClient, tmp_path: Path) -> None:
    body = upload(svc, "x.csv", small_table().to_csv().encode())
    assert svc.delete(f"/v1/datasets/{body['id']}").status_code == 204
    assert not list((tmp_path / "data" / "datasets").glob("*.npz"))
    r = svc.get(f"/v1/datasets/{body['id']}")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM

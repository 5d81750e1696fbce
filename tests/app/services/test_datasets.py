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


# --- strict typing of uploaded tables (pyarrow reader) ---


def _csv(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode()


HEADER = "sample,HES4,TNFRSF4,SSU72"


def refused(client: TestClient, name: str, data: bytes, **form: str) -> dict[str, object]:
    r = client.post("/v1/datasets", files={"file": (name, data)}, data=form)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, object] = r.json()
    return body


def test_ids_stay_text(svc: TestClient, tmp_path: Path) -> None:
    data = _csv([HEADER + ",cell_type", "01003,1,2,3,a", "007,4,5,6,NA", "1e3,7,8,9,b"])
    body = upload(svc, "x.csv", data)
    assert body["label_counts"] == {"cell_type": {"a": 1, "NA": 1, "b": 1}}
    (stored,) = (tmp_path / "data" / "datasets").glob("*.npz")
    with np.load(stored, allow_pickle=False) as npz:
        assert list(npz["sample_ids"]) == ["01003", "007", "1e3"]
        assert npz["X"].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    labels = _csv(["id,grade", "01003,x", "007,y", "1e3,x"])
    r = svc.post(
        "/v1/datasets",
        files={
            "file": ("x.tsv", data.decode().replace(",", "\t").encode()),
            "labels": ("l.csv", labels),
        },
        data={"label_columns": "cell_type"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["label_counts"]["grade"] == {"x": 2, "y": 1}


def test_text_cell_in_a_gene_column_is_named(svc: TestClient) -> None:
    body = refused(svc, "x.csv", _csv([HEADER, "s1,1,2,3", "s2,4,oops,6", "s3,7,8,9"]))
    assert (body["samples"], body["genes"]) == (["s2"], ["TNFRSF4"])
    assert "'oops'" in str(body["detail"])


def test_text_cell_past_the_first_rows_is_named(svc: TestClient) -> None:
    rows = [HEADER] + [f"s{i},1,2,3" for i in range(200)]
    rows[150] = "s149,1,2,x3"
    body = refused(svc, "x.csv", _csv(rows))
    assert (body["samples"], body["genes"]) == (["s149"], ["SSU72"])


def test_declared_labels_make_every_other_column_a_gene(svc: TestClient) -> None:
    data = _csv([HEADER + ",cell_type,batch", "s1,1,2,3,a,b1", "s2,4,5,6,b,b2"])
    body = refused(svc, "x.csv", data, label_columns="cell_type")
    assert (body["samples"], body["genes"]) == (["s1", "s2"], ["batch"])
    assert upload(svc, "x.csv", data, label_columns="cell_type,batch")["n_genes"] == 3


def test_header_without_rows_is_refused(svc: TestClient) -> None:
    body = refused(svc, "x.csv", _csv([HEADER]))
    assert "no rows" in str(body["detail"])
    assert "no rows" in str(refused(svc, "x.csv", _csv([HEADER]), label_columns="SSU72")["detail"])


def test_duplicate_ids_and_missing_values_are_named(svc: TestClient) -> None:
    assert refused(svc, "x.csv", _csv(["sample,A,B,A", "s1,1,2,3"]))["genes"] == ["A"]
    assert refused(svc, "x.csv", _csv([HEADER, "s1,1,2,3", "s1,4,5,6"]))["samples"] == ["s1"]
    body = refused(svc, "x.csv", _csv([HEADER, "s1,1,,3", "s2,4,5,inf", "s3,7,8,NA"]))
    assert (body["samples"], body["genes"]) == (["s1", "s2", "s3"], ["SSU72", "TNFRSF4"])
    body = refused(svc, "x.csv", _csv([HEADER, ",1,2,3"]))
    assert "without an id" in str(body["detail"])


def test_gzipped_csv_and_unreadable_rows(svc: TestClient) -> None:
    import gzip

    data = _csv([HEADER, "s1,1,2,3", "s2,4,5,6"])
    assert upload(svc, "x.csv.gz", gzip.compress(data))["n_samples"] == 2
    body = refused(svc, "x.csv", _csv([HEADER, "s1,1,2,3", "s2,4,5"]))
    assert "not a readable table" in str(body["detail"])


def test_parquet_index_and_text_cells(svc: TestClient) -> None:
    table = small_table()
    table.index = pd.Index(["01", "02", "03", "04", "05", "06"], name="sample")
    buf = io.BytesIO()
    table.to_parquet(buf)
    body = upload(svc, "x.parquet", buf.getvalue())
    assert (body["n_samples"], body["n_genes"]) == (6, 4)
    table["HES4"] = table["HES4"].astype(str)
    table.loc["03", "HES4"] = "high"
    buf = io.BytesIO()
    table.to_parquet(buf)
    body = refused(svc, "x.parquet", buf.getvalue(), label_columns="cell_type")
    assert (body["samples"], body["genes"]) == (["03"], ["HES4"])

"""Genes named by another id type, and raw counts, sent to a model of real human genes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.main import create_app
from contract.card import InputTransform
from contract.preprocess.steps import Log1p, NormalizeTotal
from tests.factories import make_settings, write_model

PROBLEM = "application/problem+json"
SYMBOLS = ["TP53", "CD4", "ATP5IF1", "MS4A1", "CD14", "CD3E", "LYZ", "NKG7"]
# the same genes as versioned Ensembl ids, an Entrez id and a previous symbol
OTHER_IDS = [
    "ENSG00000141510.17",
    "920",
    "ATPIF1",
    "ENSG00000156738.18",
    "ENSG00000170458.14",
    "ensg00000198851",
    "ENSG00000090382",
    "ENSG00000105374",
]
SCANPY = InputTransform.library_size_log1p(1e4)


@pytest.fixture
def human(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    root = tmp_path / "models"
    write_model(root=root, name="cells", genes=SYMBOLS, labels=["t", "b", "m"],
                input_transforms=[SCANPY])  # fmt: skip
    write_model(root=root, name="cells-encoder", genes=SYMBOLS, latent=3)
    settings = make_settings(
        engine.url.render_as_string(hide_password=False), root, data_dir=tmp_path / "data"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _body(genes: list[str], x: np.ndarray) -> dict[str, Any]:
    return {
        "genes": genes,
        "samples": [{"id": f"S{i}", "values": row.tolist()} for i, row in enumerate(x)],
    }


LOGS = np.abs(np.random.default_rng(0).normal(size=(3, len(SYMBOLS)))).astype(np.float32)


def test_other_id_types_get_the_same_answer_as_symbols(human: TestClient) -> None:
    direct = human.post("/v1/models/cells/classify", json=_body(SYMBOLS, LOGS)).json()
    r = human.post("/v1/models/cells/classify", json=_body(OTHER_IDS, LOGS))
    assert r.status_code == 200, r.text
    overlap = r.json()["gene_overlap"]
    assert (overlap["matched"], overlap["matched_directly"], overlap["matched_via_table"]) == (
        8,
        0,
        8,
    )
    assert direct["gene_overlap"]["matched_directly"] == 8
    assert r.json()["predictions"] == direct["predictions"]
    assert r.json()["transform_applied"] is None


def test_ambiguous_names_are_listed_not_used(human: TestClient) -> None:
    genes = [*SYMBOLS[1:], "ENSG00000141510", "7157"]  # TP53 twice through the table
    x = np.abs(np.random.default_rng(1).normal(size=(1, len(genes)))).astype(np.float32)
    overlap = human.post("/v1/models/cells/classify", json=_body(genes, x)).json()["gene_overlap"]
    assert (overlap["matched_directly"], overlap["matched_via_table"]) == (7, 1)
    assert overlap["ambiguous_genes"] == ["7157 (is TP53, already matched by ENSG00000141510)"]
    assert overlap["n_ambiguous"] == 1


def test_raw_counts_are_transformed_by_the_card_and_said_so(human: TestClient) -> None:
    counts = np.random.default_rng(2).poisson(20, size=(3, len(SYMBOLS) + 1)).astype(np.float32)
    genes = [*SYMBOLS, "MALAT1"]  # a gene outside the panel still counts in the library size
    logs = Log1p().transform(NormalizeTotal(1e4).transform(counts))[:, : len(SYMBOLS)]
    expected = human.post("/v1/models/cells/classify", json=_body(SYMBOLS, logs)).json()
    r = human.post("/v1/models/cells/classify", json=_body(genes, counts))
    assert r.status_code == 200, r.text
    assert r.json()["transform_applied"] == "counts: normalize_total(target_sum=10000), log1p"
    for got, want in zip(r.json()["predictions"], expected["predictions"], strict=True):
        assert got["label"] == want["label"]
        np.testing.assert_allclose(
            list(got["probabilities"].values()), list(want["probabilities"].values()), rtol=1e-4
        )
    table = human.post(
        "/v1/models/cells/classify", json=_body(genes, counts), headers={"Accept": "text/csv"}
    )
    assert table.headers["x-input-transform"] == r.json()["transform_applied"]
    assert len(pd.read_csv(io.StringIO(table.text))) == 3
    plain = human.post(
        "/v1/models/cells/classify", json=_body(SYMBOLS, logs), headers={"Accept": "text/csv"}
    )
    assert "x-input-transform" not in plain.headers
    # declared log: taken as log values, not transformed
    declared = human.post("/v1/models/cells/classify?input_scale=log", json=_body(genes, counts))
    assert declared.status_code == 200  # a declared scale is the caller's word
    assert declared.json()["transform_applied"] is None


def test_values_on_no_accepted_scale_are_a_422_naming_the_transform(human: TestClient) -> None:
    z = np.random.default_rng(3).normal(size=(4, len(SYMBOLS))).astype(np.float32)
    z -= z.mean(axis=0)
    r = human.post("/v1/models/cells/classify", json=_body(SYMBOLS, z))
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    problem = r.json()
    assert problem["type"].endswith("/wrong-input-scale")
    assert problem["accepted_scales"] == ["log", "counts"]
    assert problem["transforms"] == ["counts: normalize_total(target_sum=10000), log1p"]
    assert "normalize_total(target_sum=10000), log1p" in problem["detail"]
    # a model without transforms still names only its own scale
    r = human.post("/v1/models/cells-encoder/embed", json=_body(SYMBOLS, z))
    assert r.status_code == 422
    assert "transforms" not in r.json()


def test_a_dataset_named_by_ensembl_ids_reports_its_overlap_both_ways(human: TestClient) -> None:
    table = pd.DataFrame(LOGS, columns=OTHER_IDS, index=pd.Index(["a", "b", "c"], name="cell"))
    table["kind"] = ["x", "y", "x"]
    r = human.post("/v1/datasets", files={"file": ("lab.csv", table.to_csv().encode())})
    assert r.status_code == 201, r.text
    (overlap,) = r.json()["gene_overlap"]
    assert overlap["model"] == "cells-encoder"
    assert (overlap["matched"], overlap["matched_directly"], overlap["matched_via_table"]) == (
        8,
        0,
        8,
    )
    assert overlap["fraction"] == 1.0
    assert (overlap["ambiguous_genes"], overlap["n_ambiguous"]) == ([], 0)

"""POST /v1/models/{name}/classify, /regress and /embed on small real ONNX models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from fastapi.testclient import TestClient
from onnx import numpy_helper
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.tables import Prediction
from app.inference.routing import EVERYONE
from tests.factories import GENES, LABELS, TARGETS

PROBLEM = "application/problem+json"


def _body(genes: list[str], rows: dict[str, list[float]]) -> dict[str, Any]:
    return {"genes": genes, "samples": [{"id": k, "values": v} for k, v in rows.items()]}


def _weights(client: TestClient, name: str, version: int) -> np.ndarray:
    folder = client.app.state.registry.get(name, version, viewer=EVERYONE).folder  # type: ignore[attr-defined]
    model = onnx.load(folder / "model.onnx")
    return numpy_helper.to_array(model.graph.initializer[0])


def test_classify_answers_each_sample_and_records_it(client: TestClient, engine: Engine) -> None:
    # the toy models take log-scale input: non-negative, fractional, small
    x = np.abs(np.random.default_rng(0).normal(size=(3, 10))).astype(np.float32)
    body = _body(GENES, {f"S{i}": row.tolist() for i, row in enumerate(x)})
    r = client.post(
        "/v1/models/toy-classifier/classify", json=body, headers={"X-Request-ID": "req-1"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == {"name": "toy-classifier", "version": 2}
    assert out["request_id"] == "req-1" == r.headers["x-request-id"]
    assert out["gene_overlap"]["fraction"] == 1.0
    logits = x @ _weights(client, "toy-classifier", 2)
    for i, pred in enumerate(out["predictions"]):
        assert pred["id"] == f"S{i}"
        assert pred["label"] == LABELS[int(logits[i].argmax())]
        assert math.isclose(sum(pred["probabilities"].values()), 1.0, rel_tol=1e-5)
    with Session(engine) as s:
        rows = s.scalars(select(Prediction)).all()
    assert len(rows) == 1
    assert rows[0].request_id == "req-1"
    assert rows[0].sample_ids == ["S0", "S1", "S2"]
    assert rows[0].model_version == 2
    assert rows[0].outputs is not None
    assert rows[0].outputs[0]["label"] == out["predictions"][0]["label"]


def test_genes_in_any_order_with_extras_and_aliases_align(client: TestClient) -> None:
    x = np.arange(10, dtype=np.float32) / 10
    order = list(reversed(range(10)))
    genes = [f"ensg{i:011d}" for i in order] + ["NOT_A_GENE"]  # aliases, any case, one extra
    body = _body(genes, {"S": [*x[order].tolist(), 5.0]})
    r = client.post("/v1/models/toy-classifier/classify?version=1", json=body)
    assert r.status_code == 200, r.text
    expected = x @ _weights(client, "toy-classifier", 1)
    probs = np.exp(expected) / np.exp(expected).sum()
    got = r.json()["predictions"][0]["probabilities"]
    np.testing.assert_allclose([got[label] for label in LABELS], probs, rtol=1e-5)
    assert r.json()["gene_overlap"]["n_unused_input_genes"] == 1


def test_missing_genes_are_filled_from_the_card(client: TestClient) -> None:
    # version 1's card fills gene i with the value i
    body = _body(GENES[:8], {"S": [float(i) for i in range(8)]})
    r = client.post("/v1/models/toy-classifier/classify?version=1", json=body)
    assert r.status_code == 200, r.text
    overlap = r.json()["gene_overlap"]
    assert overlap["missing_genes"] == ["G8", "G9"]
    assert overlap["n_missing"] == 2
    assert overlap["fraction"] == 0.8
    full = _body(GENES, {"S": [float(i) for i in range(10)]})
    same = client.post("/v1/models/toy-classifier/classify?version=1", json=full).json()
    assert r.json()["predictions"][0]["probabilities"] == same["predictions"][0]["probabilities"]


def test_embed_returns_embeddings(client: TestClient, engine: Engine) -> None:
    x = np.abs(np.random.default_rng(1).normal(size=(2, 10))).astype(np.float32)
    r = client.post(
        "/v1/models/toy-encoder/embed", json=_body(GENES, {"A": x[0].tolist(), "B": x[1].tolist()})
    )
    assert r.status_code == 200, r.text
    emb = np.array([e["embedding"] for e in r.json()["embeddings"]])
    np.testing.assert_allclose(emb, x @ _weights(client, "toy-encoder", 1), rtol=1e-5, atol=1e-6)
    with Session(engine) as s:
        row = s.scalars(select(Prediction)).one()
    assert (row.task, row.outputs, row.sample_ids) == ("embed", None, ["A", "B"])


def test_too_small_overlap_is_422_naming_missing_genes(client: TestClient, engine: Engine) -> None:
    r = client.post(
        "/v1/models/toy-classifier/classify", json=_body([*GENES[:4], "X1"], {"S": [0.0] * 5})
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["type"].endswith("insufficient-gene-overlap")
    assert problem["matched"] == 4
    assert problem["panel_size"] == 10
    assert "G9" in problem["missing_genes"]
    assert problem["unmatched_input_genes"] == ["X1"]
    with Session(engine) as s:
        assert s.scalars(select(Prediction)).all() == []  # nothing recorded for a refusal


def test_min_overlap_is_configurable(engine: Engine, models_dir: Any) -> None:
    from app.main import create_app
    from tests.factories import make_settings

    settings = make_settings(
        engine.url.render_as_string(hide_password=False), models_dir, min_gene_overlap=0.3
    )
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/models/toy-classifier/classify", json=_body(GENES[:4], {"S": [0.0] * 4}))
    assert r.status_code == 200, r.text


def test_nan_and_inf_are_422_naming_samples_and_genes(client: TestClient) -> None:
    raw = (
        '{"genes": ["G0","G1","G2","G3","G4","G5","G6","G7","G8","G9"], "samples": ['
        '{"id": "ok", "values": [0,0,0,0,0,0,0,0,0,0]},'
        '{"id": "bad1", "values": [NaN,0,0,0,0,0,0,0,0,0]},'
        '{"id": "bad2", "values": [0,0,0,Infinity,0,0,0,0,0,0]}]}'
    )
    r = client.post(
        "/v1/models/toy-classifier/classify",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["samples"] == ["bad1", "bad2"]
    assert problem["genes"] == ["G0", "G3"]
    assert "bad1" in problem["detail"]


def test_wrong_length_values_are_422_naming_samples(client: TestClient) -> None:
    body = _body(GENES, {"ok": [0.0] * 10, "short": [0.0] * 9, "long": [0.0] * 11})
    r = client.post("/v1/models/toy-classifier/classify", json=body)
    assert r.status_code == 422
    assert r.json()["samples"] == ["short", "long"]


def test_duplicate_genes_are_averaged_with_a_warning(client: TestClient) -> None:
    # g0 is G0 in another case: on the toy models' log scale the two columns are averaged
    genes = [*GENES, "g0"]
    values = [0.25, *[0.0] * 9, 0.75]
    r = client.post("/v1/models/toy-encoder/embed", json=_body(genes, {"S": values}))
    assert r.status_code == 200, r.text
    overlap = r.json()["gene_overlap"]
    assert overlap["aggregated_duplicates"] == ["G0"]
    assert "G0 (G0, g0)" in overlap["warning"]
    single = client.post(
        "/v1/models/toy-encoder/embed", json=_body(GENES, {"S": [0.5, *[0.0] * 9]})
    )
    assert r.json()["embeddings"] == single.json()["embeddings"]


def test_alias_duplicates_and_duplicate_samples_are_422(client: TestClient) -> None:
    # G0 and its alias ensg00000000000 are distinct names of one panel gene: refused, named
    r = client.post(
        "/v1/models/toy-classifier/classify?version=1",
        json=_body([*GENES, "ensg00000000000.4"], {"S": [0.0] * 11}),
    )
    assert r.status_code == 422
    assert "ensg00000000000 (same gene as G0)" in r.json()["detail"]
    body = {"genes": GENES, "samples": [{"id": "S", "values": [0.0] * 10}] * 2}
    r = client.post("/v1/models/toy-classifier/classify", json=body)
    assert r.status_code == 422
    assert r.json()["samples"] == ["S"]


def test_null_and_string_values_are_422(client: TestClient) -> None:
    r = client.post(
        "/v1/models/toy-classifier/classify", json=_body(GENES, {"S": [None] + [0.0] * 9})
    )  # type: ignore[list-item]
    assert r.status_code == 422
    assert r.json()["samples"] == ["S"]
    body = {"genes": GENES, "samples": [{"id": "S", "values": ["1.0"] + [0.0] * 9}]}
    r = client.post("/v1/models/toy-classifier/classify", json=body)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert "samples.0.values.0" in r.json()["detail"]


def test_malformed_bodies_are_problem_json(client: TestClient) -> None:
    for content in ("{not json", '{"genes": []}', '{"genes": ["A"], "samples": [], "x": 1}'):
        r = client.post(
            "/v1/models/toy-classifier/classify",
            content=content,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, content
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["detail"].startswith("The request body is malformed")


def test_unknown_model_and_version_are_404(client: TestClient) -> None:
    r = client.post("/v1/models/nope/classify", json=_body(GENES, {"S": [0.0] * 10}))
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("model-not-found")
    r = client.post(
        "/v1/models/toy-classifier/classify?version=7", json=_body(GENES, {"S": [0.0] * 10})
    )
    assert r.status_code == 404
    assert "[1, 2]" in r.json()["detail"]


def test_classify_on_an_encoder_and_embed_on_a_classifier_are_refused(client: TestClient) -> None:
    body = _body(GENES, {"S": [0.0] * 10})
    r = client.post("/v1/models/toy-encoder/classify", json=body)
    assert r.status_code == 422
    assert "embed" in r.json()["detail"]
    r = client.post("/v1/models/toy-classifier/embed", json=body)
    assert r.status_code == 422


def test_regress_answers_each_target_and_records_it(
    regressor: Path, client: TestClient, engine: Engine
) -> None:
    x = np.abs(np.random.default_rng(3).normal(size=(4, 10))).astype(np.float32)
    body = _body(GENES, {f"S{i}": row.tolist() for i, row in enumerate(x)})
    r = client.post("/v1/models/toy-regressor/regress", json=body, headers={"X-Request-ID": "r"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == {"name": "toy-regressor", "version": 1}
    want = x @ _weights(client, "toy-regressor", 1)
    for i, pred in enumerate(out["predictions"]):
        assert pred["id"] == f"S{i}"
        assert list(pred["values"]) == TARGETS
        np.testing.assert_allclose(list(pred["values"].values()), want[i], rtol=1e-5)
    with Session(engine) as s:
        (row,) = s.scalars(select(Prediction)).all()
    assert (row.task, row.request_id, row.sample_ids) == ("regress", "r", ["S0", "S1", "S2", "S3"])
    assert row.outputs is not None
    assert row.outputs[3]["values"] == out["predictions"][3]["values"]
    # the same answer as a table: a column per target
    r = client.post("/v1/models/toy-regressor/regress", json=body, headers={"Accept": "text/csv"})
    assert r.status_code == 200, r.text
    lines = r.text.strip().splitlines()
    assert lines[0].replace('"', "") == "sample_id,age,score"
    assert float(lines[1].split(",")[1]) == np.float32(want[0, 0])


def test_task_and_model_kind_must_agree(regressor: Path, client: TestClient) -> None:
    body = _body(GENES, {"S": [0.0] * 10})
    r = client.post("/v1/models/toy-classifier/regress", json=body)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert "needs a regressor" in r.json()["detail"]
    assert "/classify" in r.json()["detail"]
    r = client.post("/v1/models/toy-regressor/classify", json=body)
    assert r.status_code == 422
    assert "is a regressor model" in r.json()["detail"]
    r = client.post("/v1/models/toy-regressor/embed", json=body)
    assert r.status_code == 422


def test_too_many_samples_is_413(engine: Engine, models_dir: Any) -> None:
    from app.main import create_app
    from tests.factories import make_settings

    settings = make_settings(
        engine.url.render_as_string(hide_password=False), models_dir, max_samples_per_request=2
    )
    with TestClient(create_app(settings)) as c:
        r = c.post(
            "/v1/models/toy-classifier/classify", json=_body(GENES, {s: [0.0] * 10 for s in "abc"})
        )
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM


def test_oversized_body_is_413_before_parsing(engine: Engine, models_dir: Any) -> None:
    from app.main import create_app
    from tests.factories import make_settings

    settings = make_settings(
        engine.url.render_as_string(hide_password=False), models_dir, max_body_bytes=2048
    )
    with TestClient(create_app(settings)) as c:
        r = c.post(
            "/v1/models/toy-classifier/classify",
            json=_body(GENES, {f"S{i}": [0.0] * 10 for i in range(60)}),
        )
        assert r.status_code == 413
        assert r.headers["content-type"] == PROBLEM

        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"genes": ['
            for _ in range(500):
                yield b'"G0",'
            yield b'"G1"]}'

        r = c.post(
            "/v1/models/toy-classifier/classify",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413


def test_counts_sent_to_a_log_model_are_422_naming_both_scales(client: TestClient) -> None:
    body = _body(GENES, {"S": [float(v) for v in range(0, 1000, 100)]})
    r = client.post("/v1/models/toy-encoder/embed", json=body)
    assert r.status_code == 422
    problem = r.json()
    assert problem["type"].endswith("/wrong-input-scale")
    assert (problem["detected_scale"], problem["expected_scale"]) == ("counts", "log")
    assert "up to 900" in problem["detail"]


def test_declared_scale_overrides_detection_but_must_match(client: TestClient) -> None:
    # integers up to 900 look like counts; the caller vouches that they are log values
    big = np.random.default_rng(2).integers(0, 900, size=(2, 10)).astype(float)
    body = _body(GENES, {"A": big[0].tolist(), "B": big[1].tolist()})
    r = client.post("/v1/models/toy-encoder/embed?input_scale=log", json=body)
    assert r.status_code == 200, r.text
    r = client.post("/v1/models/toy-encoder/embed?input_scale=counts", json=body)
    assert r.status_code == 422
    assert r.json()["detail"] == "the input was declared counts but this model expects log"

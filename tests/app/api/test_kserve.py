"""/v2 (Open Inference Protocol) on small real ONNX models: JSON, binary tensors, gzip, errors."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pytest
from fastapi.testclient import TestClient
from onnx import numpy_helper
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.tables import Prediction
from app.inference.routing import EVERYONE
from app.main import create_app
from tests.factories import make_settings

URL = "/v2/models/toy-classifier/infer"
# the toy models take log-scale input: non-negative, fractional, small
X = np.abs(np.random.default_rng(5).normal(size=(4, 10))).astype(np.float32)


@pytest.fixture
def c(sqlite_url: str, models_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(sqlite_url, models_dir))) as client:
        yield client


def _softmax(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    z = np.exp(x @ w)
    return z / z.sum(axis=1, keepdims=True)


def _w(c: TestClient, version: int) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    folder = c.app.state.registry.get("toy-classifier", version, viewer=EVERYONE).folder  # type: ignore[attr-defined]
    return numpy_helper.to_array(onnx.load(folder / "model.onnx").graph.initializer[0])


def _binary(x: np.ndarray, outputs: list[dict[str, Any]] | None = None) -> tuple[bytes, int]:
    header: dict[str, Any] = {
        "id": "r1",
        "inputs": [
            {
                "name": "expression",
                "shape": list(x.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": x.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    if outputs is not None:
        header["outputs"] = outputs
    head = orjson.dumps(header)
    return head + x.tobytes(), len(head)


def test_metadata_health_and_readiness(c: TestClient) -> None:
    assert c.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").json() == {"ready": True}
    meta = c.get("/v2/models/toy-classifier").json()
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "expression", "datatype": "FP32", "shape": [-1, 10]}]
    assert {o["name"] for o in meta["outputs"]} == {"logits", "probabilities"}
    assert c.get("/v2/models/toy-classifier/versions/1/ready").json()["ready"] is True
    for path in (
        "/v2/models/nope",
        "/v2/models/toy-classifier/versions/9/ready",
        "/v2/models/toy-classifier/versions/x",
    ):
        r = c.get(path)
        assert r.status_code == 404
        assert "error" in r.json()


def test_json_inference_latest_and_pinned_version(c: TestClient, engine: Engine) -> None:
    body = {
        "id": "abc",
        "inputs": [
            {"name": "expression", "shape": [4, 10], "datatype": "FP32", "data": X.tolist()}
        ],
    }
    r = c.post(URL, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["model_version"], out["id"]) == ("2", "abc")
    probs = next(o for o in out["outputs"] if o["name"] == "probabilities")
    assert probs["shape"] == [4, 3]
    np.testing.assert_allclose(np.reshape(probs["data"], (4, 3)), _softmax(X, _w(c, 2)), rtol=1e-5)
    r = c.post("/v2/models/toy-classifier/versions/1/infer", json=body)
    assert r.json()["model_version"] == "1"


def test_binary_inference_with_gzip(c: TestClient) -> None:
    body, length = _binary(X, outputs=[{"name": "probabilities"}])
    for extra in ({}, {"content-encoding": "gzip"}):
        payload = gzip.compress(body) if extra else body
        r = c.post(
            URL,
            content=payload,
            headers={
                "inference-header-content-length": str(length),
                "content-type": "application/octet-stream",
                **extra,
            },
        )
        assert r.status_code == 200, r.text
        head_len = int(r.headers["inference-header-content-length"])
        head = orjson.loads(r.content[:head_len])
        (out,) = head["outputs"]
        assert out["parameters"]["binary_data_size"] == 4 * 3 * 4
        got = np.frombuffer(r.content[head_len:], dtype="<f4").reshape(4, 3)
        np.testing.assert_allclose(got, _softmax(X, _w(c, 2)), rtol=1e-5)


def test_raw_binary_request_is_one_sample(c: TestClient) -> None:
    r = c.post(URL, content=X[0].tobytes(), headers={"inference-header-content-length": "0"})
    assert r.status_code == 200, r.text
    head = orjson.loads(r.content)
    assert [o["shape"] for o in head["outputs"]] == [[1, 3], [1, 3]]


def test_bad_requests_are_v2_errors(c: TestClient) -> None:
    def infer(inputs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        r = c.post(URL, json={"inputs": inputs, **extra})
        assert r.status_code == 400, r.text
        assert r.headers["content-type"] == "application/json"
        error: dict[str, Any] = r.json()
        return error

    good = {"name": "expression", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}
    assert "one input named 'expression'" in infer([{**good, "name": "x"}])["error"]
    assert "[-1, 10]" in infer([{**good, "shape": [1, 9], "data": [0.0] * 9}])["error"]
    assert "needs more" in infer([{**good, "shape": [2, 10]}])["error"]
    assert "numbers only" in infer([{**good, "data": ["1"] * 10}])["error"]
    assert "datatype" in infer([{**good, "datatype": "BYTES"}])["error"]
    assert "unknown output" in infer([good], outputs=[{"name": "nope"}])["error"]
    nan = (
        '{"inputs": [{"name": "expression", "shape": [2, 10], "datatype": "FP32", "data": '
        "[0,0,0,0,0,0,0,0,0,0, 0,0,NaN,0,0,0,0,0,0,0]}]}"
    )
    r = c.post(URL, content=nan, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "rows [1]" in r.json()["error"]
    body, length = _binary(X)
    r = c.post(URL, content=body[:-4], headers={"inference-header-content-length": str(length)})
    assert r.status_code == 400
    assert "binary_data_size" in r.json()["error"]
    r = c.post(URL, content=body, headers={"inference-header-content-length": "99999"})
    assert r.status_code == 400
    r = c.post(URL, content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]
    r = c.post("/v2/models/nope/infer", json={"inputs": [good]})
    assert r.status_code == 404


def test_limits_answer_in_the_v2_error_shape(sqlite_url: str, models_dir: Path) -> None:
    settings = make_settings(sqlite_url, models_dir, max_body_bytes=2048, max_samples_per_request=2)
    with TestClient(create_app(settings)) as client:
        body, length = _binary(X)
        r = client.post(URL, content=body, headers={"inference-header-content-length": str(length)})
        assert r.status_code == 413
        assert "2 are accepted" in r.json()["error"]
        r = client.post(URL, content=b"0" * 5000, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert "exceeds 2048 bytes" in r.json()["error"]


def test_inference_is_recorded(client: TestClient, engine: Engine) -> None:
    body, length = _binary(X[:2])
    r = client.post(
        URL,
        content=body,
        headers={"inference-header-content-length": str(length), "x-request-id": "v2-req"},
    )
    assert r.status_code == 200, r.text
    with Session(engine) as s:
        row = s.scalars(select(Prediction)).one()
    assert (row.request_id, row.task, row.model_version, row.sample_ids) == (
        "v2-req",
        "v2-infer",
        2,
        ["0", "1"],
    )


def test_more_malformed_v2_requests(c: TestClient) -> None:
    good = {"name": "expression", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}
    cases: list[tuple[Any, str]] = [
        ({"inputs": "x"}, "'inputs' list"),
        ({"inputs": [{**good, "shape": "1x10"}]}, "list of sizes"),
        ({"inputs": [{k: v for k, v in good.items() if k != "data"}]}, "neither 'data'"),
        (
            {
                "inputs": [good],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
            },
            "classification",
        ),
    ]
    for body, message in cases:
        r = c.post(URL, json=body)
        assert r.status_code == 400, body
        assert message in r.json()["error"]
    r = c.post(URL, content=b"\0" * 12, headers={"inference-header-content-length": "0"})
    assert r.status_code == 400
    assert "raw binary body" in r.json()["error"]
    r = c.post(URL, content=b"{}", headers={"inference-header-content-length": "two"})
    assert r.status_code == 400
    assert "must be a number" in r.json()["error"]
    one = {"inputs": [{**good, "shape": [10]}]}  # a 1-d tensor is one sample
    assert c.post(URL, json=one).json()["outputs"][0]["shape"] == [1, 3]


def test_a_version_being_unloaded_answers_503(c: TestClient) -> None:
    model = c.app.state.registry.get("toy-classifier", 1, viewer=EVERYONE)  # type: ignore[attr-defined]
    model.batcher._closing = True  # as drain() leaves it, without stopping the app's loop
    r = c.post(
        "/v2/models/toy-classifier/versions/1/infer",
        json={
            "inputs": [
                {"name": "expression", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}
            ]
        },
    )
    assert r.status_code == 503
    assert "being unloaded" in r.json()["error"]


def test_wrong_input_scale_is_a_v2_error_unless_declared(c: TestClient) -> None:
    counts = np.arange(40, dtype=np.float32).reshape(4, 10) * 100  # integers up to 3900: counts
    spec = {"name": "expression", "shape": [4, 10], "datatype": "FP32"}
    r = c.post(URL, json={"inputs": [{**spec, "data": counts.ravel().tolist()}]})
    assert r.status_code == 400
    assert "look like counts" in r.json()["error"]
    assert "expects log" in r.json()["error"]
    # declared: the caller vouches for the scale (negative values would still be refused)
    body = {
        "inputs": [{**spec, "data": counts.ravel().tolist()}],
        "parameters": {"input_scale": "log"},
    }
    assert c.post(URL, json=body).status_code == 200
    body["parameters"] = {"input_scale": "counts"}
    r = c.post(URL, json=body)
    assert r.status_code == 400
    assert r.json()["error"] == "the input was declared counts but this model expects log"
    body["parameters"] = {"input_scale": "tpm"}
    r = c.post(URL, json=body)
    assert r.status_code == 400
    assert "parameters.input_scale 'tpm'" in r.json()["error"]


def test_a_regressor_answers_its_prediction_tensor(
    regressor: Path, sqlite_url: str, models_dir: Path
) -> None:
    with TestClient(create_app(make_settings(sqlite_url, models_dir))) as client:
        meta = client.get("/v2/models/toy-regressor").json()
        assert meta["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1, 2]}]
        body = {
            "inputs": [
                {
                    "name": "expression",
                    "shape": [4, 10],
                    "datatype": "FP32",
                    "data": X.ravel().tolist(),
                }
            ]
        }
        r = client.post("/v2/models/toy-regressor/infer", json=body)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert (out["name"], out["shape"]) == ("prediction", [4, 2])
    w = numpy_helper.to_array(onnx.load(regressor / "model.onnx").graph.initializer[0])
    np.testing.assert_allclose(np.reshape(out["data"], (4, 2)), X @ w, rtol=1e-5)

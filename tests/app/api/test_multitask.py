"""A multi-task model served: /v1 classify and regress answer every task (or those named by
task=), grouped per task; unknown tasks are a 422 naming them; /v2 lists and returns every
output. Single-task models answer as before (tests/app/api/test_predict.py)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pyarrow.csv as pacsv
import pytest
from fastapi.testclient import TestClient
from onnx import numpy_helper
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.tables import Prediction
from app.main import create_app
from tests.factories import GENES, LABELS, make_settings, write_multitask_model

PROBLEM = "application/problem+json"
X = np.abs(np.random.default_rng(3).normal(size=(3, 10))).astype(np.float32)
BODY = {"genes": GENES, "samples": [{"id": f"S{i}", "values": r.tolist()} for i, r in enumerate(X)]}


@pytest.fixture
def multi(models_dir: Path) -> Path:
    """A multi-task model (cell: 3 classes, phase: 2, score: regression) beside the toys."""
    return write_multitask_model(root=models_dir, name="toy-multi", genes=GENES)


@pytest.fixture
def mc(engine: Engine, models_dir: Path, multi: Path) -> Iterator[TestClient]:
    settings = make_settings(engine.url.render_as_string(hide_password=False), models_dir)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _weights(folder: Path) -> dict[str, np.ndarray]:
    model = onnx.load(folder / "model.onnx")
    return {w.name[2:]: numpy_helper.to_array(w) for w in model.graph.initializer}


@pytest.mark.parametrize("call", ["classify", "regress"])
def test_every_task_answers_grouped_per_task(
    mc: TestClient, multi: Path, engine: Engine, call: str
) -> None:
    r = mc.post(f"/v1/models/toy-multi/{call}", json=BODY)
    assert r.status_code == 200, r.text
    out = r.json()
    assert list(out["tasks"]) == ["cell", "phase", "score"]
    assert "predictions" not in out
    w = _weights(multi)
    cell = out["tasks"]["cell"]
    assert cell["kind"] == "classification"
    for i, p in enumerate(cell["predictions"]):
        assert p["id"] == f"S{i}"
        assert p["label"] == LABELS[int((X[i] @ w["cell"]).argmax())]
        assert math.isclose(sum(p["probabilities"].values()), 1.0, rel_tol=1e-5)
    assert set(out["tasks"]["phase"]["predictions"][0]["probabilities"]) == {"G1", "S"}
    score = out["tasks"]["score"]
    assert score["kind"] == "regression"
    for i, p in enumerate(score["predictions"]):
        assert math.isclose(p["values"]["score"], float(X[i] @ w["score"][:, 0]), rel_tol=1e-4)
    with Session(engine) as s:
        row = s.scalars(select(Prediction)).one()
    assert row.task == call
    assert row.outputs is not None
    assert set(row.outputs[0]["tasks"]) == {"cell", "phase", "score"}


def test_task_query_names_the_tasks_answered(mc: TestClient) -> None:
    r = mc.post("/v1/models/toy-multi/regress?task=score", json=BODY)
    assert r.status_code == 200, r.text
    assert list(r.json()["tasks"]) == ["score"]
    r = mc.post("/v1/models/toy-multi/classify?task=score&task=cell", json=BODY)
    assert list(r.json()["tasks"]) == ["cell", "score"]  # the model's order


def test_unknown_task_is_a_422_naming_it_and_the_tasks(mc: TestClient) -> None:
    r = mc.post("/v1/models/toy-multi/classify?task=cell&task=age&task=sex", json=BODY)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["type"].endswith("/unknown-task")
    assert problem["unknown"] == ["age", "sex"]
    assert problem["tasks"] == ["cell", "phase", "score"]
    assert "'age'" in problem["detail"]
    assert "cell, phase, score" in problem["detail"]


def test_task_query_on_a_single_task_model_is_a_422(mc: TestClient) -> None:
    r = mc.post("/v1/models/toy-classifier/classify?task=cell", json=BODY)
    assert r.status_code == 422
    assert r.json()["type"].endswith("/unknown-task")
    assert r.json()["tasks"] == []
    # without task= the single-task model answers as it always did
    r = mc.post("/v1/models/toy-classifier/classify", json=BODY)
    assert r.status_code == 200
    assert "tasks" not in r.json()
    assert len(r.json()["predictions"]) == 3


def test_a_multi_task_model_cannot_explain_or_embed(mc: TestClient) -> None:
    r = mc.post("/v1/models/toy-multi/classify?explain=3", json=BODY)
    assert r.status_code == 422
    assert "multi-task" in r.json()["detail"]
    r = mc.post("/v1/models/toy-multi/embed", json=BODY)
    assert r.status_code == 422


def test_table_answer_has_a_column_group_per_task(mc: TestClient) -> None:
    r = mc.post("/v1/models/toy-multi/classify", json=BODY, headers={"Accept": "text/csv"})
    assert r.status_code == 200, r.text
    table = pacsv.read_csv(io.BytesIO(r.content)).to_pydict()
    assert table["sample_id"] == ["S0", "S1", "S2"]
    assert {"cell.label", "cell.p_a", "phase.p_G1", "score"} <= set(table)
    assert r.headers["x-model"] == "toy-multi/1"


def test_v2_lists_and_returns_every_output(mc: TestClient, multi: Path) -> None:
    meta = mc.get("/v2/models/toy-multi").json()
    names = ["cell.logits", "cell.probabilities", "cell.prediction", "phase.logits",
             "phase.probabilities", "phase.prediction", "score.prediction"]  # fmt: skip
    assert [o["name"] for o in meta["outputs"]] == names
    shapes = {o["name"]: o["shape"] for o in meta["outputs"]}
    assert [shapes[n] for n in names if n.endswith(".prediction")] == [[-1, 1]] * 3
    assert shapes["cell.probabilities"] == [-1, len(LABELS)]
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "expression",
                "datatype": "FP32",
                "shape": list(X.shape),
                "data": X.reshape(-1).tolist(),
            }
        ]
    }
    r = mc.post("/v2/models/toy-multi/infer", json=body)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert list(outputs) == names
    w = _weights(multi)
    np.testing.assert_allclose(
        np.asarray(outputs["score.prediction"]["data"]), (X @ w["score"])[:, 0], rtol=1e-4
    )
    cell = np.asarray(outputs["cell.probabilities"]["data"]).reshape(len(X), -1)
    assert outputs["cell.prediction"]["data"] == cell.argmax(1).astype(float).tolist()
    one = dict(body, outputs=[{"name": "phase.probabilities"}])
    r = mc.post("/v2/models/toy-multi/infer", json=one)
    assert [o["name"] for o in r.json()["outputs"]] == ["phase.probabilities"]


def test_models_listing_shows_the_tasks(mc: TestClient) -> None:
    r = mc.get("/v1/models/toy-multi")
    assert r.status_code == 200, r.text
    version = r.json()
    assert version["kind"] == "multitask"
    assert [t["name"] for t in version["tasks"]] == ["cell", "phase", "score"]
    assert version["tasks"][2]["outputs"] == ["score.prediction"]
    assert "tasks" not in mc.get("/v1/models/toy-classifier").json()
    listed = {m["name"]: m for m in mc.get("/v1/models").json()["models"]}
    assert listed["toy-multi"]["versions"][0]["tasks"][0]["labels"] == LABELS


def test_the_python_client_frames_a_multi_task_answer(mc: TestClient) -> None:
    from app.client.frames import answer_frame

    answers = [mc.post("/v1/models/toy-multi/regress", json=BODY).json()]
    frame = answer_frame("regress", answers)
    assert list(frame.index) == ["S0", "S1", "S2"]
    assert list(frame.columns) == [
        "cell.label", "cell.p_a", "cell.p_b", "cell.p_c", "phase.label", "phase.p_G1",
        "phase.p_S", "score",
    ]  # fmt: skip
    assert frame.attrs["model"] == {"name": "toy-multi", "version": 1}
    assert (
        frame.loc["S1", "score"]
        == answers[0]["tasks"]["score"]["predictions"][1]["values"]["score"]
    )


def test_the_python_client_names_tasks(mc: TestClient) -> None:
    import pandas as pd

    from app.client import GeneXferClient

    def through_the_app(request: httpx.Request) -> httpx.Response:
        r = mc.request(
            request.method, str(request.url), content=request.content, headers=request.headers
        )
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)

    client = GeneXferClient("http://testserver", transport=httpx.MockTransport(through_the_app))
    data = pd.DataFrame(X, columns=GENES, index=["S0", "S1", "S2"])
    frame = client.classify("toy-multi", data, tasks=["score"])
    assert list(frame.columns) == ["score"]
    assert list(frame.index) == ["S0", "S1", "S2"]

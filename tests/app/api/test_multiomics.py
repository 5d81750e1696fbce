"""/v1 classify and /v2 infer of a real multi-omics model (trained and exported here, served by
the real app on ONNX Runtime): a block per modality, missing modalities, errors by modality."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.codecs.payloads import Expression
from app.errors import InvalidRequest, ModelLoadError
from app.inference.onnx import OnnxBackend
from app.inference.routing import EVERYONE
from app.main import create_app
from app.services import predict
from contract.card import ModelCard, TrainingData
from contract.preprocess.pipeline import PreprocessPipeline
from tests.factories import make_settings
from tests.training.multiomics import conftest as fixtures
from training.export.card import CardInfo
from training.multiomics.data import MultiOmics
from training.multiomics.export import export_multiomics_classifier
from training.multiomics.finetune import MultiOmicsResult, predict_proba

pytestmark = pytest.mark.slow

# the synthetic data, encoder and trained network of the training tests
omics, omics_encoder, omics_trained = (
    fixtures.omics,
    fixtures.omics_encoder,
    fixtures.omics_trained,
)

URL = "/v1/models/omics-clf/classify"
Trained = tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline]
IDS = [f"s{i:05d}" for i in range(12)]


@pytest.fixture(scope="module")
def omics_models(omics_trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    result, data, pipe = omics_trained
    root = tmp_path_factory.mktemp("served")
    e = data.expression
    td = TrainingData(name="omics", fingerprint=e.fingerprint(), n_samples=e.shape[0],
                      n_genes=e.shape[1], label_column="label")  # fmt: skip
    export_multiomics_classifier(
        result, pipe, name="omics-clf", models_dir=root,
        info=CardInfo(description="served", training_data=td), reference=data, parent=None,
    )  # fmt: skip
    return root


@pytest.fixture
def c(tmp_path: Path, omics_models: Path) -> Iterator[TestClient]:
    # a database of its own: the session's shared one must stay empty between tests
    url = f"sqlite:///{tmp_path / 'omics.db'}"
    with TestClient(create_app(make_settings(url, omics_models))) as client:
        yield client


def _block(m: Any, ids: list[str]) -> dict[str, Any]:
    rows = {s: i for i, s in enumerate(m.sample_ids)}
    return {
        "features": list(m.gene_ids),
        "samples": [{"id": s, "values": m.X[rows[s]].tolist()} for s in ids if s in rows],
    }


def _body(data: MultiOmics, ids: list[str] = IDS, **drop: bool) -> dict[str, Any]:
    e = data.expression
    rows = [e.sample_ids.index(s) for s in ids]
    body: dict[str, Any] = {
        "expression": {"genes": e.gene_ids, "sample_ids": ids, "values": e.X[rows].tolist()},
        "modalities": {
            name: _block(m, ids) for name, m in data.modalities.items() if not drop.get(name)
        },
    }
    return body


def _expected(trained: Trained, ids: list[str], without: tuple[str, ...] = ()) -> np.ndarray:
    result, data, pipe = trained
    rows = [data.expression.sample_ids.index(s) for s in ids]
    part = data.take(np.asarray(rows))
    for name in without:
        m = part.modalities[name]
        part = MultiOmics(
            part.expression, {**part.modalities, name: m.take(np.zeros(m.shape[0], bool))}
        )
    order = [part.expression.sample_ids.index(s) for s in ids]
    return predict_proba(result, pipe, part)[order]


def _probs(answer: dict[str, Any], labels: list[str]) -> np.ndarray:
    return np.asarray([[p["probabilities"][k] for k in labels] for p in answer["predictions"]])


def test_classify_with_a_block_per_modality(c: TestClient, omics_trained: Trained) -> None:
    result, data, _ = omics_trained
    r = c.post(URL, json=_body(data))
    assert r.status_code == 200, r.text
    answer = r.json()
    np.testing.assert_allclose(
        _probs(answer, result.labels), _expected(omics_trained, IDS), atol=1e-4
    )
    protein = set(data.modalities["protein"].sample_ids)
    for p in answer["predictions"]:
        assert ("protein" in p["missing_modalities"]) == (p["id"] not in protein)
    overlap = answer["modality_overlap"]
    assert overlap["protein"]["sent"] is True
    assert overlap["protein"]["fraction"] == 1.0
    assert overlap["methylation"]["n_samples_present"] == sum(
        s in set(data.modalities["methylation"].sample_ids) for s in IDS
    )
    assert answer["gene_overlap"]["fraction"] == 1.0


def test_an_absent_block_is_a_missing_modality(c: TestClient, omics_trained: Trained) -> None:
    result, data, _ = omics_trained
    r = c.post(URL, json=_body(data, protein=True))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert all("protein" in p["missing_modalities"] for p in answer["predictions"])
    assert answer["modality_overlap"]["protein"]["sent"] is False
    want = _expected(omics_trained, IDS, without=("protein",))
    np.testing.assert_allclose(_probs(answer, result.labels), want, atol=1e-4)


def test_missing_features_are_filled_and_reported(c: TestClient, omics_trained: Trained) -> None:
    _, data, _ = omics_trained
    body = _body(data)
    block = body["modalities"]["methylation"]
    keep = len(block["features"]) - 3
    block["features"] = [*block["features"][:keep], "cg_unknown"]
    for s in block["samples"]:
        s["values"] = [*s["values"][:keep], 0.5]
    r = c.post(URL, json=body)
    assert r.status_code == 200, r.text
    meth = r.json()["modality_overlap"]["methylation"]
    assert meth["n_missing"] == 3
    assert meth["n_unused_input_features"] == 1
    block["features"], block["samples"] = (
        block["features"][:2],
        [{"id": s["id"], "values": s["values"][:2]} for s in block["samples"]],
    )
    r = c.post(URL, json=body)
    assert r.status_code == 422
    assert r.json()["modality"] == "methylation"
    assert "features in the block" in r.json()["detail"]


def _bad(data: MultiOmics, case: str) -> bytes:
    body = _body(data)
    blocks = body["modalities"]
    if case == "unknown":
        blocks["rna_velocity"] = blocks["protein"]
    elif case == "count":
        blocks["protein"]["samples"][0]["values"].pop()
    elif case == "beta":
        blocks["methylation"]["samples"][0]["values"][0] = 1.5
    elif case == "sample":
        blocks["protein"]["samples"][0]["id"] = "nobody"
    elif case == "duplicate":
        blocks["protein"]["features"][1] = blocks["protein"]["features"][0]
    elif case == "type":
        blocks["protein"]["samples"][0]["values"][0] = "high"
    raw = orjson.dumps(body)
    if case == "nan":
        first = blocks["protein"]["samples"][0]["values"][0]
        raw = raw.replace(orjson.dumps(first), b"NaN", 1)
    return raw


@pytest.mark.parametrize(
    ("case", "modality", "message"),
    [
        ("unknown", "rna_velocity", "unknown modality"),
        ("count", "protein", "one value per feature"),
        ("beta", "methylation", "outside [0, 1]"),
        ("sample", "protein", "among the expression's"),
        ("duplicate", "protein", "duplicate features"),
        ("type", "protein", "valid number"),
        ("nan", "protein", "non-finite"),
    ],
)
def test_a_bad_block_is_a_422_naming_it(
    c: TestClient, omics_trained: Trained, case: str, modality: str, message: str
) -> None:
    raw = _bad(omics_trained[1], case)
    r = c.post(URL, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["modality"] == modality
    assert message in r.json()["detail"]


def test_other_requests_are_refused(c: TestClient, omics_trained: Trained) -> None:
    data = omics_trained[1]
    r = c.post(URL, content=b"id,g\na,1\n", headers={"content-type": "text/csv"})
    assert r.status_code == 415
    assert "block per modality" in r.json()["detail"]
    r = c.post("/v1/models/omics-clf/regress", json=_body(data))
    assert r.status_code == 422
    r = c.post(URL + "?explain=3", json=_body(data))
    assert r.status_code == 422
    assert "without explanations" in r.json()["detail"]


def _v2(data: MultiOmics, ids: list[str], names: tuple[str, ...]) -> dict[str, Any]:
    e = data.expression
    rows = [e.sample_ids.index(s) for s in ids]
    inputs = [{"name": "expression", "datatype": "FP32", "shape": [len(ids), e.shape[1]],
               "data": e.X[rows].ravel().tolist()}]  # fmt: skip
    for name in names:
        m = data.modalities[name]
        inputs.append({"name": name, "datatype": "FP32", "shape": [len(ids), m.shape[1]],
                       "data": data.dense(name, ids).ravel().tolist()})  # fmt: skip
    return {"inputs": inputs}


def test_v2_takes_a_tensor_per_modality(c: TestClient, omics_trained: Trained) -> None:
    _result, data, _ = omics_trained
    meta = c.get("/v2/models/omics-clf").json()
    assert [i["name"] for i in meta["inputs"]] == ["expression", "methylation", "protein"]
    have = [s for s in IDS if s in set(data.modalities["methylation"].sample_ids)]
    r = c.post("/v2/models/omics-clf/infer", json=_v2(data, have, ("methylation",)))
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}["probabilities"]
    got = np.asarray(out["data"]).reshape(out["shape"])
    want = _expected(omics_trained, have, without=("protein",))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_v2_binary_nan_rows_are_missing(c: TestClient, omics_trained: Trained) -> None:
    _result, data, _ = omics_trained
    e = data.expression
    rows = [e.sample_ids.index(s) for s in IDS]
    tensors = [("expression", e.X[rows])] + [(n, data.dense(n, IDS)) for n in data.names]
    header = {"inputs": [
        {"name": n, "datatype": "FP32", "shape": list(x.shape),
         "parameters": {"binary_data_size": x.nbytes}} for n, x in tensors
    ]}  # fmt: skip
    head = orjson.dumps(header)
    body = head + b"".join(np.ascontiguousarray(x, "<f4").tobytes() for _, x in tensors)
    r = c.post("/v2/models/omics-clf/infer", content=body,
               headers={"inference-header-content-length": str(len(head))})  # fmt: skip
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}["probabilities"]
    got = np.asarray(out["data"]).reshape(out["shape"])
    np.testing.assert_allclose(got, _expected(omics_trained, IDS), atol=1e-4)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b["inputs"].append(dict(b["inputs"][1], name="atac")), "input 'atac'"),
        (lambda b: b["inputs"].reverse(), "first input must be 'expression'"),
        (lambda b: b["inputs"][1].update(shape=[2, 24], data=[0.5] * 48), "has 2 rows"),
        (lambda b: b["inputs"][1]["data"].__setitem__(0, 7.0), "outside [0, 1]"),
    ],
)
def test_v2_bad_modality_tensors(
    c: TestClient, omics_trained: Trained, mutate: Any, message: str
) -> None:
    data = omics_trained[1]
    have = [s for s in IDS if s in set(data.modalities["methylation"].sample_ids)]
    body = _v2(data, have, ("methylation",))
    mutate(body)
    r = c.post("/v2/models/omics-clf/infer", json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_model_detail_lists_the_modalities(c: TestClient, omics_trained: Trained) -> None:
    detail = c.get("/v1/models/omics-clf").json()
    assert [m["name"] for m in detail["modalities"]] == ["methylation", "protein"]
    assert detail["modalities"][1]["features"] == omics_trained[1].modalities["protein"].gene_ids


def test_the_single_input_path_refuses_a_multiomics_model(c: TestClient) -> None:
    """The web app's upload path reaches predict.classify with expression alone: refused."""
    model = c.app.state.registry.get("omics-clf", None, viewer=EVERYONE)  # type: ignore[attr-defined]
    expr = Expression(["a"], ["gene_00000"], np.ones((1, 1), dtype=np.float32))
    with pytest.raises(InvalidRequest, match="JSON block per modality"):
        asyncio.run(
            predict.classify(
                writer=None,  # type: ignore[arg-type]
                model=model,
                expr=expr,
                request_id="r",
                min_overlap=0.5,
            )
        )


def test_a_graph_unlike_its_card_does_not_load(omics_models: Path) -> None:
    folder = omics_models / "omics-clf" / "1"
    card = ModelCard.read(folder)
    assert card.modalities is not None
    fewer = card.modalities[1].model_copy(
        update={"features": card.modalities[1].features[:-1],
                "fill_values": card.modalities[1].fill_values[:-1]}
    )  # fmt: skip
    wrong = card.model_copy(update={"modalities": [card.modalities[0], fewer]})
    with pytest.raises(ModelLoadError, match="do not match the card"):
        OnnxBackend(folder, wrong, providers=["CPUExecutionProvider"], allow_cpu_fallback=True)


def test_v2_bytes_after_the_tensors_are_refused(c: TestClient, omics_trained: Trained) -> None:
    data = omics_trained[1]
    x = data.expression.X[:2]
    header = {"inputs": [{"name": "expression", "datatype": "FP32", "shape": list(x.shape),
                          "parameters": {"binary_data_size": x.nbytes}}]}  # fmt: skip
    head = orjson.dumps(header)
    r = c.post("/v2/models/omics-clf/infer", content=head + x.tobytes() + b"\0\0\0\0",
               headers={"inference-header-content-length": str(len(head))})  # fmt: skip
    assert r.status_code == 400
    assert "4 bytes after the binary inputs" in r.json()["error"]


def test_answers_in_csv_and_on_record(c: TestClient, omics_trained: Trained) -> None:
    result, data, _ = omics_trained
    r = c.post(URL, json=_body(data), headers={"accept": "text/csv"})
    assert r.status_code == 200, r.text
    header = r.text.splitlines()[0].replace('"', "").split(",")
    assert header[:2] == ["sample_id", "label"]
    assert len(r.text.splitlines()) == len(IDS) + 1
    found = c.get("/v1/predictions", params={"model": "omics-clf"}).json()
    row = found["predictions"][0]
    assert row["output"]["label"] in result.labels
    assert "missing_modalities" in row["output"]
    for fmt in ("csv", "fhir"):
        assert (
            c.get("/v1/predictions", params={"model": "omics-clf", "format": fmt}).status_code
            == 200
        )

"""GET /healthz, /readyz, /v1/models, /v1/models/{name}."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.main import create_app
from tests.factories import GENES, LABELS, make_settings


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_shows_providers_per_model_version(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True
    assert body["database"] == "ok"
    loaded = {(m["name"], m["version"]): m for m in body["models"]}
    assert set(loaded) == {("toy-classifier", 1), ("toy-classifier", 2), ("toy-encoder", 1)}
    for m in loaded.values():
        assert m["providers"] == ["CPUExecutionProvider"]
        assert m["requested_providers"] == ["CPUExecutionProvider"]


def test_broken_model_folder_is_reported_not_fatal(engine: Engine, models_dir: Path) -> None:
    broken = models_dir / "toy-encoder" / "2"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    tampered = models_dir / "toy-classifier" / "2" / "model.onnx"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    (models_dir / "toy-encoder" / ".tmp-export").mkdir()  # an export in progress: ignored
    settings = make_settings(engine.url.render_as_string(hide_password=False), models_dir)
    with TestClient(create_app(settings)) as c:
        body = c.get("/readyz").json()
        errors = {e["path"]: e["error"] for e in body["model_errors"]}
        assert body["ready"] is True
        assert str(broken) in errors
        assert "sha256 differs" in errors[str(tampered.parent)]
        assert [m["name"] for m in body["models"]] == ["toy-classifier", "toy-encoder"]
        assert c.get("/v1/models/toy-classifier").json()["version"] == 1


def test_readyz_is_503_without_models(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(engine.url.render_as_string(hide_password=False), tmp_path / "none")
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["ready"] is False


def test_readyz_is_503_when_database_unreachable(models_dir: Path, tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    settings = make_settings(url, models_dir, auto_migrate=False)
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["database"].startswith("unreachable")
        # a prediction needs the database: 503 problem+json, not a 500
        body = {"genes": GENES, "samples": [{"id": "S", "values": [0.0] * 10}]}
        r = c.post("/v1/models/toy-classifier/classify", json=body)
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"


def test_list_models(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"toy-classifier", "toy-encoder"}
    assert models["toy-classifier"]["latest_version"] == 2
    assert [v["version"] for v in models["toy-classifier"]["versions"]] == [1, 2]
    v = models["toy-classifier"]["versions"][0]
    assert v["kind"] == "classifier"
    assert v["labels"] == LABELS
    assert v["n_genes"] == 10
    assert models["toy-encoder"]["versions"][0]["outputs"][0]["name"] == "embedding"


def test_get_model_shows_its_panel(client: TestClient) -> None:
    r = client.get("/v1/models/toy-classifier", params={"version": 1})
    assert r.status_code == 200
    body = r.json()
    assert body["genes"] == GENES
    assert body["gene_aliases"][0] == ["ENSG00000000000"]
    assert client.get("/v1/models/toy-classifier").json()["version"] == 2
    r = client.get("/v1/models/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_unknown_route_is_problem_json(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404


def test_request_id_is_generated_or_echoed(client: TestClient) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    assert (
        client.get("/healthz", headers={"X-Request-ID": "lims-42"}).headers["x-request-id"]
        == "lims-42"
    )
    # an id with characters that could forge log lines is replaced
    assert (
        client.get("/healthz", headers={"X-Request-ID": "a b\tc"}).headers["x-request-id"]
        != "a b\tc"
    )


def test_a_model_whose_preprocessing_is_not_in_its_graph_is_refused(
    engine: Engine, models_dir: Path
) -> None:
    from contract.card import ModelCard, Preprocessing, PreprocessStep

    folder = models_dir / "toy-encoder" / "1"
    card = ModelCard.read(folder)
    steps = [PreprocessStep(name="combat"), PreprocessStep(name="standardize")]
    unfused = Preprocessing(steps=steps, fused_in_graph=False)
    card.model_copy(update={"preprocessing": unfused}).write(folder)
    settings = make_settings(engine.url.render_as_string(hide_password=False), models_dir)
    with TestClient(create_app(settings)) as c:
        errors = {e["path"]: e["error"] for e in c.get("/readyz").json()["model_errors"]}
        assert "not fused into the graph" in errors[str(folder)]
        assert c.get("/v1/models/toy-encoder").status_code == 404


def test_a_model_answers_how_it_was_chosen_with_its_warnings(
    engine: Engine, models_dir: Path
) -> None:
    from contract.card import CandidateScore, ModelCard, Selection

    folder = models_dir / "toy-classifier" / "2"
    frozen = CandidateScore(name="frozen", kind="transfer", mean=0.6, sd=0.1, folds=[0.5, 0.7])
    logistic = CandidateScore(name="logistic", kind="baseline", mean=0.9, sd=0.0, folds=[0.9, 0.9])
    warning = "the classical baseline logistic scored balanced accuracy 0.900 ± 0.000"
    selection = Selection(
        metric="balanced_accuracy",
        protocol="stratified 2-fold cross-validation of the 8 training samples",
        candidates=[frozen, logistic],
        winner="frozen",
        forced=True,
        reason="frozen was named by the caller",
        warnings=[warning],
    )
    card = ModelCard.read(folder)
    card.model_copy(update={"selection": selection}).write(folder)  # model.json is not hashed
    settings = make_settings(engine.url.render_as_string(hide_password=False), models_dir)
    with TestClient(create_app(settings)) as c:
        chosen = c.get("/v1/models/toy-classifier", params={"version": 2}).json()["selection"]
        plain = c.get("/v1/models/toy-classifier", params={"version": 1}).json()["selection"]
    assert chosen["warnings"] == [warning]
    assert [x["name"] for x in chosen["candidates"]] == ["frozen", "logistic"]
    assert plain is None

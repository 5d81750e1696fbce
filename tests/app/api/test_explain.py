"""POST /v1/models/{name}/classify?explain=N[&gene_sets=] on small models exported by training."""

from __future__ import annotations

from collections.abc import Iterator
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.tables import Prediction
from app.main import create_app
from contract.card import InputScale, ModelCard, TrainingData
from contract.genesets import load
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from tests.factories import make_settings
from training.evaluation.baselines import fit_baseline
from training.export.baseline import export_baseline
from training.export.card import CardInfo
from training.export.heads import export_classifier
from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
from training.nn.heads import ClassifierHead, ClassifierHeadConfig

PROBLEM = "application/problem+json"
N_GENES = 40


def _panel() -> tuple[list[str], list[str]]:
    """15 JAK-STAT genes of PROGENy (the signal), then 25 genes of other pathways."""
    sets = {s.id: s for s in load("progeny").sets}
    jak = sorted(sets["JAK-STAT"].genes)[:15]
    others = sorted(sets["Hypoxia"].genes - sets["JAK-STAT"].genes)[:25]
    return jak, [*jak, *others]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExpressionMatrix]:
    """A neural classifier (random weights), a logistic baseline whose label is the JAK-STAT
    genes' total, and a random forest (which cannot explain)."""
    jak, genes = _panel()
    rng = np.random.default_rng(0)
    X = np.log1p(rng.poisson(3.0, size=(200, N_GENES))).astype(np.float32)
    signal = X[:, : len(jak)].sum(axis=1)
    labels = np.where(signal > np.median(signal), "high", "low")
    obs = pd.DataFrame({"label": labels}, index=[f"c{i}" for i in range(200)])
    matrix = ExpressionMatrix(X, list(obs.index), genes, obs)
    root = tmp_path_factory.mktemp("models")
    data = TrainingData(name="synthetic", fingerprint=matrix.fingerprint(), n_samples=200,
                        n_genes=N_GENES, label_column="label")  # fmt: skip
    info = CardInfo("explain test", data)
    pipe = PreprocessPipeline.fit(matrix, InputScale.log)
    torch.manual_seed(0)
    ae = DenseAutoencoder(AutoencoderConfig(n_genes=N_GENES, hidden=(16,), latent=4))
    head = ClassifierHead(ClassifierHeadConfig(n_in=4, n_classes=3, hidden=(8,)))
    export_classifier(ae.eval(), head.eval(), pipe, ["a", "b", "c"], name="xp-net",
                      models_dir=root, info=info, reference=X, parent=None)  # fmt: skip
    linear = PreprocessPipeline.fit(matrix, InputScale.log, clip=None)
    for name, p in (("logistic", linear), ("random_forest", pipe)):
        model = fit_baseline(name, p.transform(X), list(labels))
        export_baseline(model, p, baseline=name, name=f"xp-{name.replace('_', '-')}",
                        models_dir=root, info=info, reference=X)  # fmt: skip
    return root, matrix


@pytest.fixture
def client(engine: Engine, exported: tuple[Path, ExpressionMatrix]) -> Iterator[TestClient]:
    settings = make_settings(engine.url.render_as_string(hide_password=False), exported[0])
    with TestClient(create_app(settings)) as client:
        yield client


def _body(genes: list[str], x: np.ndarray) -> dict[str, Any]:
    return {
        "genes": genes,
        "samples": [{"id": f"S{i}", "values": r.tolist()} for i, r in enumerate(x)],
    }


def test_explain_gives_each_sample_its_top_genes_in_the_callers_names(
    client: TestClient, engine: Engine, exported: tuple[Path, ExpressionMatrix]
) -> None:
    root, matrix = exported
    x = matrix.X[:6]
    # the caller's own names: lower case, in another order, one panel gene left out (filled)
    order = list(reversed(range(1, N_GENES)))
    sent = [matrix.gene_ids[j].lower() for j in order]
    r = client.post("/v1/models/xp-net/classify?explain=5", json=_body(sent, x[:, order]))
    assert r.status_code == 200, r.text
    card = ModelCard.read(root / "xp-net" / "1")
    assert card.explain is not None
    # what the graph itself gives on the aligned input (the missing gene at its baseline)
    aligned = x.copy()
    aligned[:, 0] = card.panel.fill_values[0]
    session = ort.InferenceSession(str(root / "xp-net" / "1" / "explain.onnx"))
    predictions = r.json()["predictions"]
    target = np.array([card.labels.index(p["label"]) for p in predictions])  # type: ignore[union-attr]
    (want,) = session.run(None, {"expression": aligned, "target": target})
    for i, p in enumerate(predictions):
        e = p["explanation"]
        assert (e["target"], e["method"], e["baseline"], e["steps"]) == (
            p["label"],
            "integrated_gradients",
            "training_mean",
            32,
        )
        assert "gene_sets" not in e
        top = e["top_genes"]
        assert len(top) == 5
        expected = np.argsort(-np.abs(want[i]), kind="stable")[:5]
        assert [g["panel_gene"] for g in top] == [matrix.gene_ids[j] for j in expected]
        assert [g["gene"] for g in top] == [matrix.gene_ids[j].lower() for j in expected]
        np.testing.assert_allclose([g["attribution"] for g in top], want[i, expected], rtol=1e-5)
        assert all(g["in_input"] for g in top)  # the filled gene has attribution 0
    with Session(engine) as s:
        row = s.scalars(select(Prediction)).one()
    assert row.outputs is not None
    assert row.outputs[0]["explanation"] == predictions[0]["explanation"]  # recorded with it
    # without explain= the answer has no explanation at all
    plain = client.post("/v1/models/xp-net/classify", json=_body(sent, x[:, order]))
    assert "explanation" not in plain.json()["predictions"][0]


def test_a_linear_baseline_explains_exactly(
    client: TestClient, exported: tuple[Path, ExpressionMatrix]
) -> None:
    root, matrix = exported
    baseline = np.load(root / "xp-logistic" / "1" / "baseline.npy")
    x = np.vstack([matrix.X[:4], baseline])
    r = client.post(
        f"/v1/models/xp-logistic/classify?explain={N_GENES}", json=_body(matrix.gene_ids, x)
    )
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert predictions[0]["explanation"]["exact"] is True

    # logits (−z/2, z/2) with z = log(p_high / p_low): every gene's attribution sums to the
    # predicted class's logit at x minus at the baseline
    def half_z(p: dict[str, Any]) -> float:
        return 0.5 * float(np.log(p["probabilities"]["low"] / p["probabilities"]["high"]))

    at_baseline = half_z(predictions[-1])
    for p in predictions[:4]:
        sign = 1.0 if p["label"] == "low" else -1.0
        total = sum(g["attribution"] for g in p["explanation"]["top_genes"])
        assert total == pytest.approx(sign * (half_z(p) - at_baseline), rel=1e-3, abs=1e-4)


def test_gene_sets_are_tested_per_sample(
    client: TestClient, exported: tuple[Path, ExpressionMatrix]
) -> None:
    _, matrix = exported
    jak, _ = _panel()
    n = 15
    r = client.post(
        f"/v1/models/xp-logistic/classify?explain={n}&gene_sets=progeny",
        json=_body(matrix.gene_ids, matrix.X[:3]),
    )
    assert r.status_code == 200, r.text
    universe = len(matrix.gene_ids)
    for p in r.json()["predictions"]:
        e = p["explanation"]
        assert e["gene_set_collection"] == "progeny"
        top = {g["panel_gene"] for g in e["top_genes"]}
        assert len(top & set(jak)) >= 10  # the label is the JAK-STAT genes' total
        found = {s["id"]: s for s in e["gene_sets"]}
        assert "JAK-STAT" in found
        for s in e["gene_sets"]:
            # the hypergeometric tail by hand: at least h of the n top genes in a set of K of M
            h, K = len(s["overlap"]), s["set_size"]
            p_hand = sum(comb(K, k) * comb(universe - K, n - k) for k in range(h, min(K, n) + 1))
            assert s["p"] == pytest.approx(p_hand / comb(universe, n), rel=1e-9)
            assert s["p"] <= s["q"] <= 1.0
        assert found["JAK-STAT"]["set_size"] == 15
        assert found["JAK-STAT"]["q"] < 0.05


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("explain=0", 422, "ask for 1 to 40 genes"),
        ("explain=41", 422, "ask for 1 to 40 genes"),
        ("explain=x", 422, "explain"),
        ("explain=5&gene_sets=kegg", 422, "go_bp"),
        ("gene_sets=progeny", 422, "ask for them with explain=N"),
    ],
)
def test_bad_explain_options_are_refused(
    client: TestClient, exported: tuple[Path, ExpressionMatrix], query: str, status: int, says: str
) -> None:
    _, matrix = exported
    r = client.post(
        f"/v1/models/xp-net/classify?{query}", json=_body(matrix.gene_ids, matrix.X[:1])
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert says in r.text


def test_a_model_without_an_explanation_graph_says_which_can(
    client: TestClient, exported: tuple[Path, ExpressionMatrix]
) -> None:
    _, matrix = exported
    r = client.post(
        "/v1/models/xp-random-forest/classify?explain=3", json=_body(matrix.gene_ids, matrix.X[:1])
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith("/cannot-explain")
    assert "xp-random-forest/1 has no explanation graph" in problem["detail"]
    assert "logistic-regression and MLP baselines" in problem["detail"]
    assert client.get("/v1/models/xp-random-forest").json()["explain"] is None
    assert client.get("/v1/models/xp-net").json()["explain"]["steps"] == 32


def test_explanations_are_answered_in_json_only(
    client: TestClient, exported: tuple[Path, ExpressionMatrix]
) -> None:
    _, matrix = exported
    r = client.post(
        "/v1/models/xp-net/classify?explain=3",
        json=_body(matrix.gene_ids, matrix.X[:1]),
        headers={"Accept": "text/csv"},
    )
    assert r.status_code == 406, r.text
    assert "JSON only" in r.json()["detail"]

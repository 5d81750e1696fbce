"""In-process fine-tuning jobs: real training on pbmc68k, served without a restart; cancel."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.tables import ModelVersion
from tests.factories import expression_body, once_loaded, service_client

pytestmark = pytest.mark.slow  # real fine-tuning jobs

PROBLEM = "application/problem+json"


def upload_pbmc(client: TestClient, csv: bytes) -> str:
    r = client.post("/v1/datasets", files={"file": ("pbmc.csv", csv)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def job_body(dataset_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "encoder": {"name": "pbmc68k-encoder"},
        "dataset_id": dataset_id,
        "label_column": "bulk_labels",
        "strategy": "frozen",  # a named strategy: only logistic regression is compared
        "hyperparameters": {"epochs": 5, "patience": 5},
        "output_name": "lab-celltype",
    }
    return {**body, **overrides}


def wait_for(client: TestClient, job_id: str, statuses: set[str], seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        job = client.get(f"/v1/finetune-jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_finetune_publishes_a_served_version(
    svc: TestClient, engine: Engine, pbmc_csv: bytes, pbmc_table: pd.DataFrame, service_models: Path
) -> None:
    dataset_id = upload_pbmc(svc, pbmc_csv)
    r = svc.post("/v1/finetune-jobs", json=job_body(dataset_id))
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/finetune-jobs/{r.json()['id']}"
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert (job["result_model"], job["result_version"], job["progress"]) == ("lab-celltype", 1, 1.0)
    assert [e["status"] for e in job["history"]] == ["queued", "running", "succeeded"]
    assert 0 <= job["metrics"]["test"]["balanced_accuracy"] <= 1
    # the loss curve: one point per epoch run, apart from the metrics
    assert "curve" not in job["metrics"]
    assert [p["step"] for p in job["curve"]] == list(range(1, job["metrics"]["epochs_run"] + 1))
    assert all(p["train_loss"] > 0 for p in job["curve"])
    card = json.loads((service_models / "lab-celltype" / "1" / "model.json").read_text())
    test_scores = {m["name"]: m["value"] for m in card["metrics"] if m["split"] == "test"}
    assert test_scores == job["metrics"]["test"]
    with Session(engine) as s:
        row = s.scalars(select(ModelVersion)).one()
        assert (row.name, row.version, row.parent_name) == ("lab-celltype", 1, "pbmc68k-encoder")
    # the poller loads the new version: served without a restart
    body = expression_body(pbmc_table, 2)
    r = once_loaded(svc.post, "/v1/models/lab-celltype/classify", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == {"name": "lab-celltype", "version": 1}
    assert svc.get("/v1/finetune-jobs?status=succeeded").json()["jobs"][0]["id"] == job["id"]
    assert svc.get("/v1/finetune-jobs?status=failed").json()["jobs"] == []
    # a dataset whose jobs finished can go; the job keeps its record
    assert svc.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert svc.get(f"/v1/finetune-jobs/{job['id']}").json()["dataset_id"] is None


def test_cancel_stops_a_running_job_within_seconds(svc: TestClient, pbmc_csv: bytes) -> None:
    dataset_id = upload_pbmc(svc, pbmc_csv)
    long = {"epochs": 10_000, "patience": 10_000, "batch_size": 8}
    r = svc.post("/v1/finetune-jobs", json=job_body(dataset_id, hyperparameters=long))
    job_id = r.json()["id"]
    running = wait_for(svc, job_id, {"running"})
    conflict = svc.delete(f"/v1/datasets/{dataset_id}")
    assert (conflict.status_code, conflict.headers["content-type"]) == (409, PROBLEM)
    # 10,000 epochs: the job is still in its inner cross-validation (the comparison with
    # logistic regression) when it is cancelled; it shows as progress, not on the curve
    wait_until_epoch = time.monotonic() + 30
    while not (seen := svc.get(f"/v1/finetune-jobs/{job_id}").json())["epoch"]:
        assert time.monotonic() < wait_until_epoch
        time.sleep(0.2)
    assert seen["metrics"]["stage"].startswith("inner CV · ")
    assert seen["curve"] == []
    asked = time.monotonic()
    assert svc.post(f"/v1/finetune-jobs/{job_id}/cancel").json()["cancel_requested"]
    job = wait_for(svc, job_id, {"cancelled", "failed", "succeeded"}, seconds=15)
    assert job["status"] == "cancelled"
    assert time.monotonic() - asked < 10
    assert running["started_at"] is not None
    assert job["result_model"] is None
    again = svc.post(f"/v1/finetune-jobs/{job_id}/cancel")
    assert (again.status_code, again.headers["content-type"]) == (409, PROBLEM)


def test_a_regression_job_publishes_a_served_regressor(
    svc: TestClient, engine: Engine, pbmc_csv: bytes, pbmc_table: pd.DataFrame, service_models: Path
) -> None:
    """G2M_score (scanpy's cell-cycle score) from the expression: a real continuous target."""
    from training.data.pbmc68k import load_pbmc68k_reduced

    m = load_pbmc68k_reduced()
    scores = pd.DataFrame({"cell": m.sample_ids, "G2M_score": m.obs["G2M_score"].to_numpy()})
    files = {"file": ("pbmc.csv", pbmc_csv), "labels": ("g2m.csv", scores.to_csv(index=False))}
    r = svc.post("/v1/datasets", files=files)
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    body = job_body(
        dataset_id,
        task="regression",
        label_column="G2M_score",
        strategy="full",
        output_name="lab-g2m",
        hyperparameters={"epochs": 40, "patience": 10},
    )
    r = svc.post("/v1/finetune-jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"}, seconds=600)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["selection"]["metric"] == "r2"
    test = job["metrics"]["test"]
    assert set(test) == {"r2", "mae", "spearman"}
    assert test["r2"] > 0.1, test  # beats predicting the mean: the score is in the expression
    card = json.loads((service_models / "lab-g2m" / "1" / "model.json").read_text())
    assert (card["kind"], card["labels"]) == ("regressor", ["G2M_score"])
    assert card["head"]["inputs"] == [
        {"name": "embedding", "dtype": "float32", "shape": ["batch", 64]}
    ]
    with Session(engine) as s:
        row = s.scalars(select(ModelVersion)).one()
        assert (row.name, row.kind) == ("lab-g2m", "regressor")
    request = expression_body(pbmc_table, 3)
    r = once_loaded(svc.post, "/v1/models/lab-g2m/regress", json=request)
    assert r.status_code == 200, r.text
    assert [list(p["values"]) for p in r.json()["predictions"]] == [["G2M_score"]] * 3


def test_a_regression_target_must_be_numeric(svc: TestClient, pbmc_csv: bytes) -> None:
    dataset_id = upload_pbmc(svc, pbmc_csv)
    r = svc.post("/v1/finetune-jobs", json=job_body(dataset_id, task="regression"))
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    assert "regression needs a number in label column 'bulk_labels'" in r.json()["detail"]
    assert "700 samples have" in r.json()["detail"]
    assert "CD14+ Monocyte" in r.json()["detail"]


def test_the_requested_strategy_reaches_training(
    svc: TestClient, pbmc_csv: bytes, service_models: Path
) -> None:
    dataset_id = upload_pbmc(svc, pbmc_csv)
    r = svc.post("/v1/finetune-jobs", json=job_body(dataset_id, strategy="partial"))
    job = wait_for(svc, r.json()["id"], {"failed", "succeeded"})
    assert job["status"] == "succeeded", job
    card = json.loads((service_models / "lab-celltype" / "1" / "model.json").read_text())
    protocols = {m["protocol"] for m in card["metrics"]}
    assert any("partial encoder" in p for p in protocols), protocols


def test_bad_job_requests(svc: TestClient, pbmc_csv: bytes) -> None:
    dataset_id = upload_pbmc(svc, pbmc_csv)
    cases = [
        (job_body("00000000-0000-0000-0000-000000000000"), 404, "no dataset"),
        (job_body(dataset_id, label_column="nope"), 422, "bulk_labels"),
        (job_body(dataset_id, encoder={"name": "nope"}), 404, "nope"),
        (job_body(dataset_id, strategy="sideways"), 422, "strategy"),
        (job_body(dataset_id, output_name="../x"), 422, "output_name"),
        (job_body(dataset_id, hyperparameters={"epochs": 0}), 422, "epochs"),
        (job_body(dataset_id, candidates=["full"]), 422, "candidates are compared by strategy"),
        (job_body(dataset_id, strategy="auto", candidates=["best"]), 422, "unknown candidate"),
        (
            job_body(dataset_id, strategy="auto", candidates=["frozen+dann"]),
            422,
            "encoder must train",
        ),
        (job_body(dataset_id, adaptation={"method": "mmd"}), 422, "strategy 'frozen+mmd'"),
        (
            job_body(dataset_id, strategy="full", adaptation={"domain_column": "lab"}),
            422,
            "adaptation.domain_column 'lab'",
        ),
    ]
    for body, status, words in cases:
        r = svc.post("/v1/finetune-jobs", json=body)
        assert (r.status_code, r.headers["content-type"]) == (status, PROBLEM), r.text
        assert words in r.text
    r = svc.get("/v1/finetune-jobs/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404
    assert svc.get("/v1/finetune-jobs?status=nonsense").status_code == 422


def test_an_embedded_api_restart_requeues_and_resumes_the_job(
    engine: Engine, service_models: Path, tmp_path: Path, pbmc_csv: bytes
) -> None:
    from tests.factories import service_client

    with service_client(engine, service_models, tmp_path / "data") as first:
        dataset_id = upload_pbmc(first, pbmc_csv)
        long = {"epochs": 10_000, "patience": 10_000, "batch_size": 8}
        job_id = first.post("/v1/finetune-jobs", json=job_body(dataset_id, hyperparameters=long))
        job_id = job_id.json()["id"]
        wait_for(first, job_id, {"running"})
    # the stopping API handed the job back at once instead of leaving it 'running'
    with service_client(engine, service_models, tmp_path / "data") as second:
        job = second.get(f"/v1/finetune-jobs/{job_id}").json()
        handed_back = job["history"][2]
        assert handed_back["status"] == "queued"
        assert "process shutdown" in handed_back["reason"]
        job = wait_for(second, job_id, {"running"})  # the new process took it up again
        assert [e["status"] for e in job["history"]] == ["queued", "running", "queued", "running"]
        second.post(f"/v1/finetune-jobs/{job_id}/cancel")
        job = wait_for(second, job_id, {"cancelled"}, seconds=20)
    assert job["attempts"] == 1  # the interrupted run is not counted against the job


def _publish_encoder(models: Path, name: str, genes: list[str]) -> None:
    """A small encoder on synthetic counts whose panel is `genes` (for gene-id tests)."""
    from contract.card import InputScale
    from training.data.synthetic import make_synthetic
    from training.evaluation.splits import hold_out
    from training.nn.config import TrainConfig
    from training.nn.encoders import AutoencoderConfig
    from training.publish.encoder import pretrain_and_export

    m = make_synthetic(120, len(genes), n_classes=3, seed=5)
    m = type(m)(X=m.X, sample_ids=m.sample_ids, gene_ids=genes, obs=m.obs)
    pretrain_and_export(
        hold_out("synthetic", m, test_fraction=0.0, seed=0, stratify_by=None),
        input_scale=InputScale.counts,
        model_cfg=AutoencoderConfig(n_genes=len(genes), hidden=(16,), latent=8),
        train_cfg=TrainConfig(epochs=3, batch_size=32, seed=0),
        name=name,
        models_dir=models,
        description="gene-id test encoder",
        progress=False,
    )


def test_versioned_and_unversioned_ensembl_ids_match_both_ways(
    svc: TestClient, service_models: Path
) -> None:
    from training.data.synthetic import make_synthetic

    plain = [f"ENSG{j:011d}" for j in range(1, 41)]
    versioned = [f"{g}.{j % 7 + 1}" for j, g in enumerate(plain)]
    for panel, sent, name in ((plain, versioned, "ens-plain"), (versioned, plain, "ens-versioned")):
        _publish_encoder(service_models, name, panel)
        data = make_synthetic(60, len(sent), n_classes=3, seed=6)
        table = pd.DataFrame(data.X, index=pd.Index(data.sample_ids, name="id"), columns=sent)
        table["label"] = data.obs["label"].to_numpy()
        once_loaded(svc.get, f"/v1/models/{name}")
        r = svc.post("/v1/datasets", files={"file": ("ens.csv", table.to_csv().encode())})
        assert r.status_code == 201, r.text
        overlap = {o["model"]: o for o in r.json()["gene_overlap"]}[name]
        assert (overlap["matched"], overlap["panel_size"]) == (40, 40)
        body = job_body(
            r.json()["id"], encoder={"name": name}, label_column="label", output_name=f"{name}-c"
        )
        r = svc.post("/v1/finetune-jobs", json=body)
        assert r.status_code == 202, r.text
        job = wait_for(svc, r.json()["id"], {"succeeded", "failed"})
        assert job["status"] == "succeeded", job["error"]
        assert job["metrics"]["missing_panel_genes"] == 0


def test_a_dataset_named_by_ensembl_ids_fine_tunes_the_symbol_encoder(
    svc: TestClient, pbmc_table: pd.DataFrame, service_models: Path
) -> None:
    from contract import idmap

    genes = [c for c in pbmc_table.columns if c != "bulk_labels"]
    ensembl = {}
    for name, entrez in zip(genes, idmap.resolve(genes).entrez, strict=True):
        ids = idmap.gene(entrez).ensembl if entrez else ()
        ensembl[name] = f"{ids[0]}.3" if ids else name
    csv = pbmc_table.rename(columns=ensembl).to_csv().encode()
    r = svc.post("/v1/datasets", files={"file": ("ensembl.csv", csv)})
    assert r.status_code == 201, r.text
    (overlap,) = r.json()["gene_overlap"]
    assert overlap["fraction"] >= 0.95
    assert overlap["matched_via_table"] > 0.9 * overlap["panel_size"]
    assert overlap["n_ambiguous"] == len(overlap["ambiguous_genes"])
    r = svc.post("/v1/finetune-jobs", json=job_body(r.json()["id"], output_name="lab-ensembl"))
    assert r.status_code == 202, r.text
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["missing_panel_genes"] == overlap["panel_size"] - overlap["matched"]
    assert job["metrics"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    # the head's card: the encoder's input transforms, the panel's species and id type
    card = json.loads((service_models / "lab-ensembl" / "1" / "model.json").read_text())
    encoder = json.loads((service_models / "pbmc68k-encoder" / "1" / "model.json").read_text())
    assert card["input_transforms"] == encoder["input_transforms"] != []
    assert (card["panel"]["species"], card["panel"]["id_type"]) == ("Homo sapiens", "symbol")
    # and it is served to requests that name genes by Ensembl id too
    body = expression_body(pbmc_table.rename(columns=ensembl), 2)
    r = once_loaded(svc.post, "/v1/models/lab-ensembl/classify", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["gene_overlap"]["matched_via_table"] == overlap["matched_via_table"]


def test_a_job_trains_on_the_device_the_runner_is_told(
    engine: Engine, pbmc_csv: bytes, service_models: Path, tmp_path: Path
) -> None:
    """GENEXFER_TRAIN_DEVICE=cuda: on the GPU where there is one, else a clear failure."""
    with service_client(engine, service_models, tmp_path / "data", train_device="cuda") as svc:
        dataset_id = upload_pbmc(svc, pbmc_csv)
        r = svc.post("/v1/finetune-jobs", json=job_body(dataset_id, output_name="on-cuda"))
        job = wait_for(svc, r.json()["id"], {"succeeded", "failed"})
    if torch.cuda.is_available():
        assert (job["status"], job["metrics"]["device"]) == ("succeeded", "cuda"), job["error"]
    else:
        assert job["status"] == "failed"
        assert job["error"].startswith("GENEXFER_TRAIN_DEVICE=cuda: ")
        assert "CUDA is not available" in job["error"]


def test_the_default_job_publishes_the_best_candidate_of_its_inner_cv(
    svc: TestClient, pbmc_csv: bytes, pbmc_table: pd.DataFrame, service_models: Path
) -> None:
    """strategy auto: transfer strategies and baselines on the same inner folds; the best mean
    is published and served, whatever its kind, and the job and card say why."""
    dataset_id = upload_pbmc(svc, pbmc_csv)
    body = job_body(dataset_id, candidates=["frozen", "logistic", "random_forest"])
    del body["strategy"]  # the default
    r = svc.post("/v1/finetune-jobs", json=body)
    assert r.status_code == 202, r.text
    assert r.json()["params"]["strategy"] == "auto"
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"}, seconds=300)
    assert job["status"] == "succeeded", job["error"]
    selection = job["metrics"]["selection"]
    means = {c["name"]: c["mean"] for c in selection["candidates"]}
    assert set(means) == {"frozen", "logistic", "random_forest"}
    assert means[selection["winner"]] == max(means.values())
    assert job["metrics"]["published"]["candidate"] == selection["winner"]
    assert selection["winner"] in selection["reason"]
    assert job["metrics"]["warnings"] == []
    card = json.loads((service_models / "lab-celltype" / "1" / "model.json").read_text())
    assert card["selection"] == selection
    r = once_loaded(
        svc.post, "/v1/models/lab-celltype/classify", json=expression_body(pbmc_table, 4)
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 4


def test_a_job_with_two_labelled_samples_per_class_runs(
    svc: TestClient, pbmc_table: pd.DataFrame, service_models: Path
) -> None:
    """Nothing is held out of classes that small; the card's scores are the inner CV's."""
    small = pbmc_table.groupby("bulk_labels").head(2)
    three = small[small["bulk_labels"].isin(sorted(set(small["bulk_labels"]))[:3])]
    csv = three.to_csv().encode()
    r = svc.post("/v1/datasets", files={"file": ("few.csv", csv)})
    assert r.status_code == 201, r.text
    body = job_body(r.json()["id"], strategy="auto", candidates=["frozen", "logistic"])
    r = svc.post("/v1/finetune-jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["n_test"] == 0
    assert "no samples held out" in job["metrics"]["held_out"]
    selection = job["metrics"]["selection"]
    assert "2-fold" in selection["protocol"]
    assert all(len(c["folds"]) == 30 for c in selection["candidates"])  # 2-fold × 15
    card = json.loads((service_models / "lab-celltype" / "1" / "model.json").read_text())
    inner = [m for m in card["metrics"] if m["split"] == "inner_cv"]
    assert [m["name"] for m in inner] == ["balanced_accuracy"]


def test_a_named_strategy_that_logistic_regression_beats_is_published_with_a_warning(
    svc: TestClient, pbmc_csv: bytes, service_models: Path
) -> None:
    """Two epochs of a frozen head cannot match logistic regression on pbmc68k: the lab asked
    for frozen and gets it, told in the job and the card."""
    dataset_id = upload_pbmc(svc, pbmc_csv)
    body = job_body(dataset_id, hyperparameters={"epochs": 1, "patience": 1, "min_epochs": 0})
    r = svc.post("/v1/finetune-jobs", json=body)
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    selection = job["metrics"]["selection"]
    assert (selection["winner"], selection["forced"]) == ("frozen", True)
    (warning,) = job["metrics"]["warnings"]
    assert warning.startswith("the classical baseline logistic scored balanced accuracy")
    card = json.loads((service_models / "lab-celltype" / "1" / "model.json").read_text())
    assert card["selection"]["warnings"] == [warning]


def test_values_on_a_scale_the_encoder_cannot_take_are_refused_at_submission(
    svc: TestClient, pbmc_table: pd.DataFrame
) -> None:
    genes = pbmc_table.drop(columns="bulk_labels")
    z = (genes - genes.mean()) / (genes.std() + 1e-6)  # z-scores: negative values
    z["bulk_labels"] = pbmc_table["bulk_labels"]
    r = svc.post("/v1/datasets", files={"file": ("z.csv", z.to_csv().encode())})
    assert r.status_code == 201, r.text
    r = svc.post("/v1/finetune-jobs", json=job_body(r.json()["id"]))
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), r.text
    assert "standardized" in r.json()["detail"]
    assert svc.get("/v1/finetune-jobs").json()["jobs"] == []

"""The web app's pages and fragments on the real app (no browser), and /docs and /redoc from
packaged assets. The browser tests are in tests/e2e/test_ui.py."""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.tables import Job
from app.main import create_app
from app.security import create_key
from tests.factories import GENES, LABELS, make_settings

PROBLEM = "application/problem+json"
PAGES = ("/ui/models", "/ui/models/toy-classifier", "/ui/predict", "/ui/datasets", "/ui/jobs",
         "/ui/history", "/ui/sign-in", f"/ui/jobs/{uuid.uuid4()}")  # fmt: skip
LINKS = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def _csv(n: int = 6, seed: int = 0) -> bytes:
    values = np.random.default_rng(seed).gamma(2.0, 1.0, size=(n, len(GENES))).round(3)
    table = pd.DataFrame(values, columns=GENES, index=[f"S{i}" for i in range(n)])
    return table.to_csv(index_label="sample").encode()


def _local_assets(client: TestClient, page: str) -> list[str]:
    """Every src/href of `page`; asserts none leaves this server."""
    text = client.get(page).text
    assert not re.search(r"https?://|//cdn", text), page
    links = LINKS.findall(text)
    assert all(link[0] in "/#" and not link.startswith("//") for link in links), links
    return links


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_reference_no_external_host_and_their_assets_are_served(
    client: TestClient, page: str
) -> None:
    r = client.get(page)
    assert r.status_code == 200
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assets = [a for a in _local_assets(client, page) if a.startswith("/docs-assets/")]
    assert len(assets) == (2 if page == "/docs" else 1)  # swagger js + css; redoc js
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200, asset
        assert len(got.content) > 100_000, asset  # the real bundle, not a stub
    assert client.get("/openapi.json").json()["info"]["title"] == "GeneXfer"


def test_every_page_renders_with_local_assets_only(client: TestClient) -> None:
    seen: set[str] = set()
    for page in PAGES:
        r = client.get(page)
        assert r.status_code == 200, (page, r.text)
        assert r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        seen |= {a for a in _local_assets(client, page) if a.startswith("/ui/static/")}
    assert {"/ui/static/app.js", "/ui/static/app.css"} <= seen
    assert any("htmx" in a for a in seen)
    for asset in seen:
        assert client.get(asset).status_code == 200, asset
    home = client.get("/ui", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (303, "/ui/models")
    # the page holds no data: the card comes as a fragment, for the models the key may see
    page = client.get("/ui/models/toy-classifier").text
    assert 'hx-get="/ui/parts/models/toy-classifier"' in page
    model_card = client.get("/ui/parts/models/toy-classifier").text
    assert all(f"<li>{gene}" in model_card for gene in GENES)  # the panel
    assert client.get("/ui/parts/models/nope").headers["content-type"] == PROBLEM
    cards = client.get("/ui/parts/models").text
    assert {"toy-classifier", "toy-encoder"} <= set(
        re.findall(r'href="/ui/models/([^"?]+)"', cards)
    )
    options = client.get("/ui/parts/model-options").text
    assert 'value="toy-classifier:2"' in options
    assert 'value="toy-encoder:1"' in options


def test_classify_an_upload_then_download_the_answer(client: TestClient) -> None:
    r = client.post(
        "/ui/parts/predict",
        files={"file": ("cells.csv", _csv())},
        data={"model": "toy-classifier:2"},
    )
    assert r.status_code == 200, r.text
    page = r.text
    assert page.count('class="prob-bar"') == 6
    assert page.count('class="point"') == 6
    assert "the profiles on the model&#39;s 10 panel genes" in page  # no embedding output
    rows = re.findall(r'<th scope="row" class="mono">(S\d)</th>', page)
    assert rows == [f"S{i}" for i in range(6)]
    # recorded as any /v1 call is
    found = client.get("/v1/predictions", params={"sample_id": "S3"}).json()["predictions"]
    assert [(p["model"], p["version"]) for p in found] == [("toy-classifier", 2)]

    answer = html.unescape(re.search(r'<pre id="answer-json" hidden>(.*?)</pre>', page, re.S)[1])  # type: ignore[index]
    got = client.post("/ui/parts/answer", content=answer, headers={"Accept": "text/csv"})
    assert got.headers["content-disposition"].endswith('.csv"')
    table = list(csv.DictReader(io.StringIO(got.text)))
    assert [t["sample_id"] for t in table] == rows
    assert {t["label"] for t in table} <= set(LABELS)
    assert found[0]["output"]["label"] == table[3]["label"]
    parquet = client.post(
        "/ui/parts/answer",
        content=answer,
        headers={"Accept": "application/vnd.apache.parquet"},
    )
    assert list(pd.read_parquet(io.BytesIO(parquet.content))["sample_id"]) == rows
    refused = client.post("/ui/parts/answer", content=answer, headers={"Accept": "text/xml"})
    assert (refused.status_code, refused.headers["content-type"]) == (406, PROBLEM)
    bad = client.post("/ui/parts/answer", content=b"{}", headers={"Accept": "text/csv"})
    assert (bad.status_code, bad.headers["content-type"]) == (422, PROBLEM)


def test_an_encoder_upload_is_plotted_from_its_embedding(client: TestClient) -> None:
    r = client.post(
        "/ui/parts/predict", files={"file": ("cells.csv.gz", _gz(_csv(5)))},
        data={"model": "toy-encoder", "input_scale": "log"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert "Principal components of the toy-encoder v1 embedding" in r.text
    assert r.text.count('class="point"') == 5


def _gz(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def test_bad_uploads_answer_problem_json(client: TestClient) -> None:
    wrong_genes = b"sample,X1,X2\nS1,1,2\n"
    r = client.post(
        "/ui/parts/predict",
        files={"file": ("a.csv", wrong_genes)},
        data={"model": "toy-classifier"},
    )
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    assert r.json()["detail"]
    for data, name in (({"model": "nope"}, "a.csv"), ({"model": "toy-classifier:x"}, "a.csv")):
        r = client.post("/ui/parts/predict", files={"file": (name, _csv())}, data=data)
        assert r.headers["content-type"] == PROBLEM
    r = client.post(
        "/ui/parts/predict",
        files={"file": ("a.csv", _csv())},
        data={"model": "toy-classifier", "input_scale": "furlongs"},
    )
    assert (r.status_code, r.json()["status"]) == (422, 422)


def test_history_fragment_and_its_export_link(client: TestClient) -> None:
    client.post(
        "/ui/parts/predict", files={"file": ("a.csv", _csv())}, data={"model": "toy-classifier"}
    )
    r = client.get("/ui/parts/history", params={"sample_id": "S2"})
    assert "1 result for" in r.text
    (export,) = re.findall(r'data-download="([^"]+)"', r.text)
    got = client.get(html.unescape(export))
    assert [row["sample_id"] for row in csv.DictReader(io.StringIO(got.text))] == ["S2"]


def test_a_job_page_shows_its_curve_and_polls_only_while_active(
    client: TestClient, engine: Engine
) -> None:
    curve = [
        {"step": i + 1, "stage": "head", "epoch": i + 1, "train_loss": 1 / (i + 1),
         "val_loss": None if i == 2 else 1.2 / (i + 1)}
        for i in range(6)
    ]  # fmt: skip
    ids = {}
    with Session(engine) as s:
        for status in ("running", "succeeded"):
            job = Job(
                status=status,
                params={"output_name": f"out-{status}", "task": "classification",
                        "label_column": "y", "strategy": "frozen",
                        "encoder": {"name": "toy-encoder", "version": 1},
                        "hyperparameters": {"epochs": 6}},
                history=[{"status": status, "at": datetime.now(UTC).isoformat(), "reason": None}],
                progress=0.5, epoch=3, metrics={"train_loss": 0.3, "curve": curve},
                attempts=1, cancel_requested=False, tenant="default",
            )  # fmt: skip
            s.add(job)
            s.flush()
            ids[status] = job.id
        s.commit()
    running = client.get(f"/ui/parts/jobs/{ids['running']}").text
    assert 'hx-trigger="every 2s"' in running
    assert running.count("<polyline") == 3  # training; validation broken by its missing epoch
    assert "Cancel the job" in running
    done = client.get(f"/ui/parts/jobs/{ids['succeeded']}").text
    assert "hx-trigger" not in done
    listing = client.get("/ui/parts/jobs").text
    assert 'hx-trigger="every 3s"' in listing  # one job still runs
    assert "out-running" in listing
    assert "out-succeeded" in listing


@pytest.fixture
def auth_client(engine: Engine, models_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(
        engine.url.render_as_string(hide_password=False), models_dir, auth_enabled=True
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_fragments_check_the_key_pages_do_not(auth_client: TestClient, engine: Engine) -> None:
    with Session(engine) as s:
        _, predict_only = create_key(s, name="lims", scopes=["predict"])
        _, trainer = create_key(s, name="bench", scopes=["predict", "train"])
        s.commit()
    assert auth_client.get("/ui/datasets").status_code == 200  # the page itself holds no data
    r = auth_client.get("/ui/parts/datasets")
    assert (r.status_code, r.headers["content-type"]) == (401, PROBLEM)
    as_lims = {"Authorization": f"Bearer {predict_only}"}
    r = auth_client.get("/ui/parts/jobs", headers=as_lims)
    assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM)
    assert auth_client.get("/ui/parts/history", headers=as_lims).status_code == 200
    assert auth_client.get("/ui/parts/datasets", headers={"X-API-Key": trainer}).status_code == 200
    who = auth_client.get("/ui/parts/session", headers=as_lims)
    assert "Signed in as <strong>lims</strong>" in who.text
    assert "Sign in" in auth_client.get("/ui/parts/session").text
    bad = auth_client.get("/ui/parts/session", headers={"Authorization": "Bearer gx_00_nope"})
    assert (bad.status_code, bad.headers["content-type"]) == (401, PROBLEM)


def test_a_job_page_says_how_its_model_was_chosen_and_warns(
    client: TestClient, engine: Engine
) -> None:
    from contract.card import CandidateScore, Selection

    frozen = CandidateScore(name="frozen", kind="transfer", mean=0.62, sd=0.05, folds=[0.6, 0.64])
    logistic = CandidateScore(
        name="logistic", kind="baseline", mean=0.93, sd=0.01, folds=[0.92, 0.94]
    )
    selection = Selection(
        metric="balanced_accuracy",
        protocol="stratified 2-fold cross-validation of the 8 training samples",
        candidates=[frozen, logistic],
        winner="frozen",
        forced=True,
        reason="frozen was named by the caller and scored balanced accuracy 0.620 ± 0.050",
        warnings=["the classical baseline logistic scored balanced accuracy 0.930 ± 0.010"],
    )
    with Session(engine) as s:
        job = Job(
            status="succeeded",
            params={"output_name": "out", "task": "classification", "label_column": "y",
                    "strategy": "frozen", "encoder": {"name": "toy-encoder", "version": 1},
                    "hyperparameters": {"epochs": 6}},
            history=[], progress=1.0, epoch=6, attempts=1, cancel_requested=False,
            metrics={"test": {"balanced_accuracy": 0.6}, "n_test": 4,
                     "selection": selection.model_dump(mode="json")},
            tenant="default",
        )  # fmt: skip
        s.add(job)
        s.commit()
        job_id = job.id
    page = html.unescape(client.get(f"/ui/parts/jobs/{job_id}").text)
    assert "How the model was chosen" in page
    assert 'role="alert"><strong>Warning:</strong> the classical baseline logistic' in page
    rows = re.findall(r'<th scope="row">([^<]+)</th><td>(\w+)</td><td class="num">([\d.]+)', page)
    assert rows == [("logistic", "baseline", "0.93"), ("frozen (published)", "transfer", "0.62")]
    assert "epochs run" not in page  # no epochs_run in these metrics: the row is left out

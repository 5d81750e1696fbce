"""The web app end to end: a real server (uvicorn, SQLite, the demo models, in-process jobs, API
keys on) driven by Debian's headless Chromium through Selenium, as a lab scientist would use it.

The tests run in order on one server and one browser tab: sign in, read the models, classify
uploaded files, upload datasets, fine-tune and watch the job finish, find a prediction by sample
id. With GENEXFER_SCREENSHOTS=<folder> each page is also saved there as a PNG
(docs/screenshots/take.py sets it).
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.ui_harness import LiveServer, browser, have_browser, screenshot
from tests.factories import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = REPO / "examples"
FOUR_CELLS = EXAMPLES / "pbmc68k-4cells.csv"
LAB_CELLS = EXAMPLES / "lab-cells.csv.gz"
LAB_LABELS = EXAMPLES / "lab-labels.csv"
CLASSIFIER = "pbmc68k-celltype"
A_LAB_CELL = "AAACGGCTAGCAAA-2"  # first row of lab-cells.csv.gz
SHOTS = Path(os.environ["GENEXFER_SCREENSHOTS"]) if os.environ.get("GENEXFER_SCREENSHOTS") else None

T = TypeVar("T")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not have_browser():
        if os.environ.get("CI"):
            pytest.fail(
                "chromium and chromium-driver are missing (bash .ci/services.sh installs them)"
            )
        pytest.skip("needs Debian's chromium and chromium-driver (bash .ci/services.sh)")
    live = LiveServer(tmp_path_factory.mktemp("ui-server"))
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(server: LiveServer, downloads: Path) -> Iterator[Chrome]:
    d = browser(downloads)
    yield d
    d.quit()


def wait(driver: Chrome, condition: Callable[[Chrome], T], seconds: float = 30) -> T:
    return WebDriverWait(
        driver, seconds, ignored_exceptions=[StaleElementReferenceException]
    ).until(condition)


def shown(driver: Chrome, css: str, seconds: float = 30) -> WebElement:
    found = wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, css)), seconds)
    assert isinstance(found, WebElement)
    return found


def shot(driver: Chrome, name: str) -> None:
    if SHOTS is not None:
        screenshot(driver, SHOTS / f"{name}.png")


def downloaded(folder: Path, suffix: str, before: set[Path], seconds: float = 20) -> Path:
    """The file with `suffix` that appears in `folder` (complete, not a .crdownload)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        new = [p for p in folder.iterdir() if p not in before and p.suffix == suffix]
        if new and new[0].stat().st_size > 0:
            return new[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} download in {seconds} s: {sorted(folder.iterdir())}")


def problem_text(driver: Chrome) -> str:
    return shown(driver, "#problem").text


def assert_no_problem(driver: Chrome) -> None:
    box = driver.find_element(By.ID, "problem")
    assert not box.is_displayed(), box.text


def test_sign_in_with_an_api_key(driver: Chrome, server: LiveServer) -> None:
    driver.get(f"{server.base}/ui/models")
    wait(driver, ec.url_contains("/ui/sign-in?next="))  # no key yet: sent to sign in
    field = shown(driver, "#sign-in input[name=key]")
    shot(driver, "sign-in")
    field.send_keys("gx_0000_not-a-key")
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    text = problem_text(driver)
    assert "Missing or invalid API key (401)" in text
    assert "not valid" in text  # the problem's detail, as the API words it
    field.clear()
    field.send_keys(server.key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait(driver, ec.url_to_be(f"{server.base}/ui/models"))
    wait(driver, ec.text_to_be_present_in_element((By.ID, "who"), "lab-bench"))
    assert "predict, train" in driver.find_element(By.ID, "who").text


def test_models_with_their_cards_metrics_and_gene_panels(
    driver: Chrome, server: LiveServer
) -> None:
    driver.get(f"{server.base}/ui/models")
    shown(driver, ".card h2")  # the cards arrive as a fragment, with the key
    titles = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".card h2")]
    assert any(t.startswith(CLASSIFIER) for t in titles)
    assert any(t.startswith("pbmc68k-encoder") for t in titles)
    assert "balanced accuracy (test)" in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "models")
    driver.find_element(By.LINK_TEXT, CLASSIFIER).click()
    shown(driver, "#gene-list")
    metrics = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=metrics]").text
    assert "balanced accuracy 0.663 test" in metrics
    assert "140 of 700 samples" in metrics  # the protocol, in words
    genes = driver.find_elements(By.CSS_SELECTOR, "#gene-list li")
    assert len(genes) == 765
    assert (
        "CD4+/CD25 T Reg" in driver.find_element(By.ID, "labels").find_element(By.XPATH, "..").text
    )
    shot(driver, "model-card")
    driver.find_element(By.CSS_SELECTOR, "input[data-filter]").send_keys("CD3")
    wait(driver, lambda d: len([g for g in genes if g.is_displayed()]) < 10)
    visible = [g.text for g in genes if g.is_displayed()]
    assert {"CD3E", "CD3D", "CD3G"} <= set(visible)
    assert driver.find_element(By.ID, "gene-list-count").text == f"{len(visible)} shown"


def _predict(driver: Chrome, server: LiveServer, path: Path, model: str | None = None) -> None:
    driver.get(f"{server.base}/ui/predict")
    # the choice of models arrives as a fragment, with the key
    choice = f"select[name=model] option[value='{model}']" if model else "option[selected]"
    wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, choice)))
    if model:
        Select(shown(driver, "select[name=model]")).select_by_value(model)
    shown(driver, "#predict-form input[type=file]").send_keys(str(path))
    driver.find_element(By.CSS_SELECTOR, "#predict-form button[type=submit]").click()


def test_classify_an_uploaded_file_with_probabilities_plot_and_downloads(
    driver: Chrome, server: LiveServer, downloads: Path
) -> None:
    _predict(driver, server, FOUR_CELLS, f"{CLASSIFIER}:1")
    table = shown(driver, "#predictions")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    shown_labels = {
        r.find_element(By.TAG_NAME, "th").text: r.find_elements(By.TAG_NAME, "td")[0].text
        for r in rows
    }
    # the page shows what the API answers for the same file
    with server.api() as api:
        answer = api.post(
            f"/v1/models/{CLASSIFIER}/classify",
            content=FOUR_CELLS.read_bytes(),
            headers={"Content-Type": "text/csv"},
        ).json()
    assert shown_labels == {p["id"]: p["label"] for p in answer["predictions"]}
    bars = driver.find_elements(By.CSS_SELECTOR, "#predictions svg.prob-bar")
    assert len(bars) == 4
    top = answer["predictions"][0]
    label = bars[0].get_attribute("aria-label") or ""
    assert label.startswith(f"{top['label']} {top['probabilities'][top['label']]:.0%}")
    plot = driver.find_element(By.CSS_SELECTOR, "svg.pca-plot")
    assert len(plot.find_elements(By.CSS_SELECTOR, "circle.point")) == 4
    caption = driver.find_element(By.TAG_NAME, "figcaption").text
    assert "embedding of its encoder pbmc68k-encoder v1" in caption
    assert "coloured by predicted label" in caption

    before = set(downloads.iterdir())
    driver.find_element(By.XPATH, "//button[normalize-space()='CSV']").click()
    got = downloaded(downloads, ".csv", before)
    records = list(csv.DictReader(io.StringIO(got.read_text())))
    assert {r["sample_id"]: r["label"] for r in records} == shown_labels
    before = set(downloads.iterdir())
    driver.find_element(By.XPATH, "//button[normalize-space()='Parquet']").click()
    table_back = pd.read_parquet(downloaded(downloads, ".parquet", before))
    assert sorted(table_back["sample_id"]) == sorted(shown_labels)
    assert_no_problem(driver)

    # a gzipped CSV of 120 cells
    _predict(driver, server, LAB_CELLS)
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#predictions tbody tr")) == 120)
    points = driver.find_elements(By.CSS_SELECTOR, "svg.pca-plot circle.point")
    assert len(points) == 120
    assert "Genes matched" in driver.find_element(By.ID, "result").text
    shot(driver, "predict")


def test_a_bad_upload_shows_the_problem_detail(driver: Chrome, server: LiveServer) -> None:
    _predict(driver, server, LAB_LABELS)  # labels, not expression: too few of the model's genes
    text = problem_text(driver)
    with server.api() as api:
        files = {"file": ("lab-labels.csv", LAB_LABELS.read_bytes())}
        r = api.post("/ui/parts/predict", files=files, data={"model": f"{CLASSIFIER}:1"})
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert f"{problem['title']} ({problem['status']})" in text
    assert problem["detail"] in text
    assert "Traceback" not in driver.page_source
    shot(driver, "problem")


def test_upload_list_and_delete_datasets(driver: Chrome, server: LiveServer) -> None:
    driver.get(f"{server.base}/ui/datasets")
    shown(driver, "#datasets p")
    form = shown(driver, "#upload-form")
    form.find_element(By.NAME, "file").send_keys(str(LAB_CELLS))
    form.find_element(By.NAME, "labels").send_keys(str(LAB_LABELS))
    form.find_element(By.NAME, "name").send_keys("lab cells")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, ec.text_to_be_present_in_element((By.ID, "datasets"), "lab cells"))
    row = driver.find_element(
        By.XPATH, "//table[@id='dataset-table']//tr[th[contains(., 'lab cells')]]"
    )
    assert "120" in row.text
    assert "cell_type" in row.text
    assert "pbmc68k-encoder v1: 765/765" in row.text

    form.find_element(By.NAME, "file").send_keys(str(FOUR_CELLS))
    form.find_element(By.NAME, "name").send_keys("scratch")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, ec.text_to_be_present_in_element((By.ID, "datasets"), "scratch"))
    shot(driver, "datasets")
    driver.find_element(By.CSS_SELECTOR, "button[aria-label='Delete scratch']").click()
    alert = wait(driver, ec.alert_is_present())
    assert alert
    alert.accept()
    wait(driver, lambda d: "scratch" not in d.find_element(By.ID, "datasets").text)
    assert "lab cells" in driver.find_element(By.ID, "datasets").text
    assert_no_problem(driver)


def test_fine_tune_and_watch_the_job_finish(driver: Chrome, server: LiveServer) -> None:
    driver.get(f"{server.base}/ui/jobs")
    form = shown(driver, "#job-form form")
    Select(form.find_element(By.NAME, "encoder.name")).select_by_value("pbmc68k-encoder")
    datasets = Select(form.find_element(By.NAME, "dataset_id"))
    datasets.select_by_visible_text("lab cells (120 samples)")
    wait(driver, lambda d: "cell_type" in d.find_element(By.ID, "label-column").text)
    Select(form.find_element(By.NAME, "label_column")).select_by_value("cell_type")
    strategy = Select(form.find_element(By.NAME, "strategy"))
    assert strategy.first_selected_option.text == "auto"  # the default
    strategy.select_by_value("frozen")  # a named strategy: a head, with its loss curve
    epochs = form.find_element(By.NAME, "hyperparameters.epochs")
    epochs.clear()
    epochs.send_keys("8")
    form.find_element(By.NAME, "output_name").send_keys("lab-celltype")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, ec.url_matches(r"/ui/jobs/[0-9a-f-]{36}$"))
    job_id = driver.current_url.rsplit("/", 1)[1]
    # the page polls the job: queued → running → succeeded, with no reload
    shown(driver, "#job-status")
    wait(driver, lambda d: d.find_element(By.ID, "job-status").text in ("succeeded", "failed"), 300)
    assert driver.find_element(By.ID, "job-status").text == "succeeded", driver.find_element(
        By.ID, "job"
    ).text
    curve = driver.find_element(By.CSS_SELECTOR, "svg.loss-curve")
    assert len(curve.find_elements(By.TAG_NAME, "polyline")) == 2  # training and validation
    with server.api() as api:
        job = api.get(f"/v1/finetune-jobs/{job_id}").json()
    assert len(job["curve"]) == job["metrics"]["epochs_run"]
    assert "balanced accuracy" in driver.find_element(By.ID, "job").text
    # how it was chosen: frozen, compared with logistic regression on the same inner folds
    choice = driver.find_element(By.ID, "choice-title").find_element(By.XPATH, "..").text
    assert "frozen (published)" in choice
    assert "logistic" in choice
    shot(driver, "job")
    driver.get(f"{server.base}/ui/jobs")
    wait(driver, ec.text_to_be_present_in_element((By.ID, "jobs"), "lab-celltype v1"))
    shot(driver, "jobs")
    # the published model is served and listed
    deadline = time.monotonic() + 20
    while True:
        driver.get(f"{server.base}/ui/models")
        shown(driver, ".card h2")  # the lab's models and the operator's, with the key
        if driver.find_elements(By.LINK_TEXT, "lab-celltype"):
            break
        assert time.monotonic() < deadline, "lab-celltype never appeared on the models page"
        time.sleep(0.5)


def test_find_a_prediction_by_sample_id_and_export_csv(
    driver: Chrome, server: LiveServer, downloads: Path
) -> None:
    driver.get(f"{server.base}/ui/history")
    field = shown(driver, "#history-form input[name=sample_id]")
    field.send_keys(A_LAB_CELL)
    driver.find_element(By.CSS_SELECTOR, "#history-form button[type=submit]").click()
    wait(driver, ec.text_to_be_present_in_element((By.ID, "history"), f"for {A_LAB_CELL}"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    assert rows
    assert all(A_LAB_CELL in r.text for r in rows)
    assert any(f"{CLASSIFIER} v1" in r.text for r in rows)
    shot(driver, "history")
    before = set(downloads.iterdir())
    driver.find_element(By.XPATH, "//button[normalize-space()='Export CSV']").click()
    records = list(csv.DictReader(io.StringIO(downloaded(downloads, ".csv", before).read_text())))
    assert len(records) == len(rows)
    assert {r["sample_id"] for r in records} == {A_LAB_CELL}


def test_api_docs_load_in_the_browser_from_this_server_only(
    driver: Chrome, server: LiveServer
) -> None:
    for path, ready in (("/docs", ".swagger-ui .info .title"), ("/redoc", "redoc h1")):
        driver.get(server.base + path)
        heading = shown(driver, ready, 60)
        assert "GeneXfer" in heading.text
        entries: list[dict[str, Any]] = driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".map(e => ({name: e.name, start: e.responseStart, size: e.transferSize}))"
        )
        local = [e for e in entries if e["name"].startswith(server.base)]
        assert any("/docs-assets/" in e["name"] for e in local)
        # ReDoc's bundle asks for its vendor's logo: the page's policy blocks it, unfetched
        elsewhere = [e for e in entries if not e["name"].startswith(server.base)]
        assert all(e["start"] == 0 and e["size"] == 0 for e in elsewhere), elsewhere
        if path == "/docs":
            shot(driver, "docs")


def test_every_page_is_served_with_a_strict_content_security_policy(server: LiveServer) -> None:
    with server.api() as api:
        for path in ("/ui/models", "/ui/predict", "/ui/datasets", "/ui/jobs", "/ui/history"):
            r = api.get(path)
            assert r.status_code == 200
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert not re.search(r"https?://", r.text), path

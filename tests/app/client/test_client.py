"""app.client against a real server process (uvicorn, the demo models, jobs in-process)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anndata
import httpx
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.client import GeneXferClient, GeneXferError, JobFailed
from app.db.tables import Prediction
from tests.e2e.tcp_proxy import TcpProxy
from tests.factories import GENES, REPO, TARGETS, free_port, wait_until_ready, write_model

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLASSIFIER, ENCODER = "pbmc68k-celltype", "pbmc68k-encoder"


@pytest.fixture
def server(engine: Engine, tmp_path: Path) -> Iterator[str]:
    models = tmp_path / "models"
    for name in (CLASSIFIER, ENCODER):
        shutil.copytree(REPO / "models" / name, models / name)
    write_model(root=models, name="toy-regressor", genes=GENES, targets=TARGETS, seed=2)
    port = free_port()
    env = {
        **os.environ,
        "GENEXFER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "GENEXFER_MODELS_DIR": str(models),
        "GENEXFER_DATA_DIR": str(tmp_path / "data"),
        "GENEXFER_PROVIDERS": '["CPUExecutionProvider"]',
        "GENEXFER_RELOAD_INTERVAL_S": "0.5",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_ready(proc, f"http://127.0.0.1:{port}/readyz", 90, log_path.read_text)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def pbmc(pbmc_table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """60 pbmc68k cells (log values, genes as columns) and their cell types."""
    cells = pbmc_table.iloc[:60]
    return cells.drop(columns="bulk_labels"), cells["bulk_labels"]


def test_classify_a_dataframe_an_anndata_and_a_matrix_in_chunks(
    server: str, pbmc: tuple[pd.DataFrame, pd.Series]
) -> None:
    cells, _ = pbmc
    with GeneXferClient(server, chunk_rows=25) as client:
        by_frame = client.classify(CLASSIFIER, cells)
        adata = anndata.AnnData(X=sparse.csr_matrix(cells.to_numpy(np.float32)))
        adata.obs_names, adata.var_names = list(cells.index), list(cells.columns)
        by_anndata = client.classify(CLASSIFIER, adata)
        by_matrix = client.classify(
            CLASSIFIER, cells.to_numpy(), genes=list(cells.columns), sample_ids=list(cells.index)
        )
        direct = httpx.post(
            f"{server}/v1/models/{CLASSIFIER}/classify",
            json={
                "genes": list(cells.columns),
                "samples": [{"id": i, "values": r.tolist()} for i, r in cells.iloc[:3].iterrows()],
            },
        ).json()
    assert list(by_frame.index) == list(cells.index)
    assert by_frame.columns[0] == "label"
    assert all(c.startswith("p_") for c in by_frame.columns[1:])
    np.testing.assert_allclose(by_frame.iloc[:, 1:].sum(axis=1), 1.0, rtol=1e-5)
    pd.testing.assert_frame_equal(by_frame, by_anndata, check_like=True)
    pd.testing.assert_frame_equal(by_frame, by_matrix, check_like=True)
    assert by_frame["label"].iloc[:3].tolist() == [p["label"] for p in direct["predictions"]]
    assert len(by_frame.attrs["request_ids"]) == 3  # 60 cells in chunks of 25
    assert by_frame.attrs["model"] == {"name": CLASSIFIER, "version": 1}
    assert all(o["fraction"] == 1.0 for o in by_frame.attrs["gene_overlap"])


def test_explain_the_demo_classifier(server: str, pbmc: tuple[pd.DataFrame, pd.Series]) -> None:
    cells, _ = pbmc
    with GeneXferClient(server, chunk_rows=4) as client:
        top = client.explain(CLASSIFIER, cells.iloc[:6], 3, gene_sets="progeny")
        labels = client.classify(CLASSIFIER, cells.iloc[:6])["label"]
        with pytest.raises(GeneXferError) as refused:
            client.explain(ENCODER, cells.iloc[:1])
    assert list(top.columns) == ["label", "rank", "gene", "panel_gene", "attribution", "in_input"]
    assert list(top.index) == [i for i in cells.index[:6] for _ in range(3)]  # 2 chunks
    assert top["rank"].tolist() == [1, 2, 3] * 6
    assert top.groupby(level=0, sort=False)["label"].first().tolist() == labels.tolist()
    size = top["attribution"].abs().groupby(level=0, sort=False)
    assert (size.apply(lambda a: a.is_monotonic_decreasing)).all()
    assert set(top.attrs["gene_sets"]) == set(cells.index[:6])
    assert len(top.attrs["request_ids"]) == 2
    assert refused.value.status == 422


def test_embed_and_regress(server: str, pbmc: tuple[pd.DataFrame, pd.Series]) -> None:
    cells, _ = pbmc
    rng = np.random.default_rng(0)
    with GeneXferClient(server) as client:
        embedded = client.embed(ENCODER, cells.iloc[:5])
        values = client.regress("toy-regressor", rng.random((4, len(GENES))), genes=GENES)
        card = client.model(ENCODER)
    assert embedded.shape == (5, card["outputs"][0]["shape"][-1])
    assert list(embedded.columns[:2]) == ["e0", "e1"]
    assert list(values.columns) == TARGETS
    assert list(values.index) == ["0", "1", "2", "3"]


def test_refusals_are_errors_that_carry_the_problem(server: str) -> None:
    with GeneXferClient(server) as client:
        with pytest.raises(GeneXferError) as unknown:
            client.classify("no-such-model", np.ones((1, 2)), genes=["A", "B"])
        assert unknown.value.status == 404
        bad = pd.DataFrame([[1.0, np.nan]], index=["cell-1"], columns=["CD3E", "LYZ"])
        with pytest.raises(GeneXferError) as invalid:
            client.classify(CLASSIFIER, bad)
        assert invalid.value.status == 422
        assert invalid.value.samples == ["cell-1"]
        with pytest.raises(ValueError, match="needs genes"):
            client.classify(CLASSIFIER, np.ones((1, 2)))


class DropFirstAnswer(TcpProxy):
    """Forwards to the server, but cuts the first connection once its answer starts coming back:
    the request ran, the client never heard."""

    dropped = False

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            first, self.dropped = not self.dropped, True
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            if first:
                threading.Thread(target=self._drop, args=(upstream, client), daemon=True).start()
            else:
                threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _drop(upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            upstream.recv(65536)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_a_lost_answer_is_retried_with_its_idempotency_key_and_runs_once(
    server: str, engine: Engine, pbmc: tuple[pd.DataFrame, pd.Series]
) -> None:
    cells, _ = pbmc
    url = httpx.URL(server)
    proxy = DropFirstAnswer((url.host, url.port or 80))
    proxy.start()
    try:
        with GeneXferClient(f"http://127.0.0.1:{proxy.port}", backoff_s=0.2) as client:
            answer = client.classify(CLASSIFIER, cells.iloc[:4])
    finally:
        proxy.stop()
    assert proxy.dropped
    assert len(answer) == 4
    with Session(engine) as s:
        rows = s.scalars(select(Prediction)).all()
    assert len(rows) == 1  # the retry got the first run's answer back, not a second run
    assert rows[0].idempotency_key is not None


def test_a_server_down_for_a_moment_is_waited_for(
    server: str, pbmc: tuple[pd.DataFrame, pd.Series]
) -> None:
    cells, _ = pbmc
    url = httpx.URL(server)
    proxy = TcpProxy((url.host, url.port or 80))  # not started: connections are refused
    timer = threading.Timer(1.0, proxy.start)
    timer.start()
    try:
        with GeneXferClient(f"http://127.0.0.1:{proxy.port}", backoff_s=0.5) as client:
            assert len(client.embed(ENCODER, cells.iloc[:2])) == 2
        with (
            GeneXferClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff_s=0.1) as gone,
            pytest.raises(httpx.ConnectError),
        ):
            gone.models()
    finally:
        timer.join()
        proxy.stop()


def test_upload_finetune_with_progress_then_search_the_new_models_predictions(
    server: str, pbmc_table: pd.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    train = pbmc_table.iloc[:300]
    with GeneXferClient(server) as client:
        dataset = client.upload_dataset(train, name="lab-cells")  # bulk_labels: a text column
        assert (dataset["n_samples"], dataset["n_genes"]) == (300, 765)
        assert set(dataset["label_counts"]) == {"bulk_labels"}
        result = client.finetune(
            encoder=ENCODER,
            dataset_id=dataset["id"],
            label_column="bulk_labels",
            output_name="lab-celltype",
            hyperparameters={"epochs": 3, "patience": 3},
            poll_s=0.3,
        )
        assert (result.name, result.version) == ("lab-celltype", 1)
        assert result.job["status"] == "succeeded"
        assert result.model["kind"] == "classifier"
        start = datetime.now(UTC)
        labels = client.classify(result.name, pbmc_table.iloc[300:305].drop(columns="bulk_labels"))
        found = client.predictions(model=result.name, since=start)
        by_request = client.predictions(request_id=labels.attrs["request_ids"][0])
        one = client.predictions(sample_id=str(labels.index[0]), model=result.name)
        bundle = client.predictions_fhir(model=result.name)
        with pytest.raises(GeneXferError, match="regression needs a number"):
            client.finetune(
                encoder=ENCODER,
                dataset_id=dataset["id"],
                label_column="bulk_labels",
                output_name="lab-regressor",
                task="regression",
            )
        long = {"epochs": 10_000, "patience": 10_000, "batch_size": 8}
        job = client.submit_finetune(
            encoder=ENCODER,
            dataset_id=dataset["id"],
            label_column="bulk_labels",
            output_name="lab-long",
            hyperparameters=long,
        )
        client.cancel(job["id"])
        with pytest.raises(JobFailed, match="cancelled") as failed:
            client.wait(job["id"], progress=False, poll_s=0.3, timeout_s=60)
        assert failed.value.job["status"] == "cancelled"
    assert "job " in capsys.readouterr().err  # the tqdm bar
    assert list(found["sample_id"]) == list(labels.index)
    assert found["label"].tolist() == labels["label"].tolist()
    assert {f"p_{c}" for c in result.model["labels"]} <= set(found.columns)
    assert len(by_request) == 5
    assert one["sample_id"].tolist() == [labels.index[0]]
    assert bundle["resourceType"] == "Bundle"
    assert sum(e["resource"]["resourceType"] == "Observation" for e in bundle["entry"]) == 5

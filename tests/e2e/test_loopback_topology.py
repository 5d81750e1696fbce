"""The docker-compose topology on loopback: API process, Celery worker process, PostgreSQL, Redis.

Upload → fine-tune → classify with the new version, all over HTTP with an API key; and the faults:
the API restarted mid-job, the worker killed mid-job, Redis stopped at submission, PostgreSQL cut
as a job finishes, the database away for a while. Each fault ends with exactly one job and one
version (one folder, one model_versions row, its card naming the job).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import func, make_url, select, text
from sqlalchemy.orm import Session

from app.db import migrate
from app.db.session import make_engine
from app.db.tables import Job, ModelVersion
from app.security import create_key
from contract.card import ModelCard
from tests.conftest import TABLES
from tests.e2e.tcp_proxy import TcpProxy
from tests.factories import REPO, expression_body, free_port, once_loaded, wait_until_ready
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Topology:
    """The processes of one deployment, sharing a database (through a proxy) and a model store."""

    def __init__(self, tmp: Path, database_url: str, broker: RedisServer) -> None:
        self.tmp, self.port, self.broker = tmp, free_port(), broker
        self.base = f"http://127.0.0.1:{self.port}"
        self.models = tmp / "models"
        shutil.copytree(REPO / "models" / "pbmc68k-encoder", self.models / "pbmc68k-encoder")
        self.env = {
            **os.environ,
            "GENEXFER_DATABASE_URL": database_url,
            "GENEXFER_MODELS_DIR": str(self.models),
            "GENEXFER_DATA_DIR": str(tmp / "data"),
            "GENEXFER_PROVIDERS": '["CPUExecutionProvider"]',
            "GENEXFER_EXECUTOR": "celery",
            "GENEXFER_BROKER_URL": broker.url,
            "GENEXFER_JOB_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
            "GENEXFER_AUTH_ENABLED": "true",
            "GENEXFER_JOB_LEASE_SECONDS": "3",
            "GENEXFER_RELOAD_INTERVAL_S": "0.5",
        }
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.files: list[Any] = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        self.files.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], env=self.env, stdout=log, stderr=log
        )

    def start_api(self) -> None:
        self.api = self._spawn("api", "serve", "--port", str(self.port))
        wait_until_ready(self.api, f"{self.base}/healthz", 90, self.logs)

    def stop_api(self) -> None:
        assert self.api is not None
        self.api.terminate()
        self.api.wait(timeout=40)

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._spawn(f"worker{len(self.workers)}", "worker")
        self.workers.append(worker)
        return worker

    def ping(self) -> int:
        argv = [sys.executable, "-m", "app.cli", "worker", "--ping"]
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=60).returncode

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-4000:]}" for p in self.tmp.glob("*.log"))

    def close(self) -> None:
        for proc in [self.api, *self.workers]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in self.files:
            log.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    url = make_url(os.environ.get("GENEXFER_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432"))
    p = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    p.start()
    yield p
    p.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop and start."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def deployment(
    postgresql_url: str, proxy: TcpProxy, broker: RedisServer, tmp_path: Path
) -> Iterator[Topology]:
    direct = make_engine(postgresql_url)
    migrate.upgrade(direct)
    via_proxy = make_url(postgresql_url).set(host="127.0.0.1", port=proxy.port)
    topology = Topology(tmp_path, via_proxy.render_as_string(hide_password=False), broker)
    try:
        yield topology
    finally:
        topology.close()
        with direct.begin() as conn:
            for table in ("predictions", *TABLES):
                conn.execute(text(f"DELETE FROM {table}"))
        direct.dispose()


def api_key(topology: Topology) -> dict[str, str]:
    engine = make_engine(topology.env["GENEXFER_DATABASE_URL"])
    with Session(engine) as s:
        _, key = create_key(s, name="lab", scopes=["predict", "train"])
        s.commit()
    engine.dispose()
    return {"X-API-Key": key}


def submit(client: httpx.Client, csv: bytes, epochs: int) -> str:
    r = client.post("/v1/datasets", files={"file": ("pbmc.csv", csv)})
    assert r.status_code == 201, r.text
    body = {
        "encoder": {"name": "pbmc68k-encoder", "version": 1},
        "dataset_id": r.json()["id"],
        "label_column": "bulk_labels",
        "hyperparameters": {"epochs": epochs, "patience": epochs, "batch_size": 8},
        "output_name": "lab-celltype",
    }
    r = client.post("/v1/finetune-jobs", json=body, headers={"Idempotency-Key": "job-1"})
    assert r.status_code == 202, r.text
    again = client.post("/v1/finetune-jobs", json=body, headers={"Idempotency-Key": "job-1"})
    assert again.json()["id"] == r.json()["id"]  # a retried submission is one job
    return str(r.json()["id"])


def assert_one_job_one_version(topology: Topology, job_id: str) -> None:
    """Exactly one job, and exactly one version of it: one folder, one row, its card naming it."""
    engine = make_engine(topology.env["GENEXFER_DATABASE_URL"])
    try:
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(Job)) == 1
            versions = s.execute(select(ModelVersion.name, ModelVersion.version,
                                        ModelVersion.job_id)).all()  # fmt: skip
    finally:
        engine.dispose()
    assert [(n, v, str(j)) for n, v, j in versions] == [("lab-celltype", 1, job_id)]
    folder = topology.models / "lab-celltype"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["1"]
    assert ModelCard.read(folder / "1").job == job_id


def wait_job(client: httpx.Client, job_id: str, done: Any, seconds: float, t: Topology) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            job = client.get(f"/v1/finetune-jobs/{job_id}").json()
            if done(job):
                return job
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, t.logs()
        time.sleep(0.2)


def test_upload_finetune_classify_over_http_surviving_an_api_restart(
    deployment: Topology, pbmc_csv: bytes, pbmc_table: pd.DataFrame
) -> None:
    deployment.start_api()
    deployment.start_worker()
    deadline = time.monotonic() + 60
    while deployment.ping() != 0:  # the compose health check of the worker
        assert time.monotonic() < deadline, deployment.logs()
        time.sleep(1)
    with httpx.Client(base_url=deployment.base, headers=api_key(deployment), timeout=30) as c:
        assert c.get("/v1/datasets", headers={"X-API-Key": "gx_no_no"}).status_code == 401
        job_id = submit(c, pbmc_csv, epochs=20)
        wait_job(c, job_id, lambda j: (j["epoch"] or 0) >= 1, 90, deployment)
        deployment.stop_api()
        engine = make_engine(deployment.env["GENEXFER_DATABASE_URL"])
        with Session(engine) as s:
            job_row = s.get(Job, uuid.UUID(job_id))
            assert job_row is not None
            assert job_row.status == "running"  # the API went down mid-job
        engine.dispose()
        deployment.start_api()
        job = wait_job(c, job_id, lambda j: j["status"] != "running", 180, deployment)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1  # the worker went on while the API restarted
        body = expression_body(pbmc_table, 5)
        r = once_loaded(c.post, "/v1/models/lab-celltype/classify", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == {"name": "lab-celltype", "version": 1}
        sample = body["samples"][0]["id"]  # type: ignore[index]
        found = c.get("/v1/predictions", params={"sample_id": sample, "model": "lab-celltype"})
        assert [p["sample_id"] for p in found.json()["predictions"]] == [sample]
    assert_one_job_one_version(deployment, job_id)


def test_a_killed_worker_s_job_is_rerun_by_another(deployment: Topology, pbmc_csv: bytes) -> None:
    deployment.start_api()
    first = deployment.start_worker()
    with httpx.Client(base_url=deployment.base, headers=api_key(deployment), timeout=30) as c:
        job_id = submit(c, pbmc_csv, epochs=12)
        wait_job(c, job_id, lambda j: (j["epoch"] or 0) >= 1, 90, deployment)
        first.send_signal(signal.SIGKILL)
        first.wait()
        deployment.start_worker()
        job = wait_job(c, job_id, lambda j: j["status"] in ("succeeded", "failed"), 180, deployment)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    reasons = [e["reason"] or "" for e in job["history"]]
    assert any("stopped renewing its lease; re-queued" in r for r in reasons), reasons
    assert_one_job_one_version(deployment, job_id)


def test_redis_stopped_at_submission_delays_the_job_once(
    deployment: Topology, broker: RedisServer, pbmc_csv: bytes
) -> None:
    deployment.start_api()
    deployment.start_worker()
    deadline = time.monotonic() + 60
    while deployment.ping() != 0:
        assert time.monotonic() < deadline, deployment.logs()
        time.sleep(1)
    with httpx.Client(base_url=deployment.base, headers=api_key(deployment), timeout=30) as c:
        broker.stop()
        job_id = submit(c, pbmc_csv, epochs=5)  # 202, and its retry finds the same job
        time.sleep(3)  # a housekeeping pass or two fail to hand it over meanwhile
        job = c.get(f"/v1/finetune-jobs/{job_id}").json()
        assert (job["status"], job["dispatched_at"]) == ("queued", None)
        broker.start()  # empty: no message was ever sent
        job = wait_job(c, job_id, lambda j: j["status"] in ("succeeded", "failed"), 180,
                       deployment)  # fmt: skip
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    assert_one_job_one_version(deployment, job_id)


def test_postgresql_cut_as_the_job_finishes_leaves_one_version(
    deployment: Topology, proxy: TcpProxy, pbmc_csv: bytes
) -> None:
    deployment.start_api()
    deployment.start_worker()
    with httpx.Client(base_url=deployment.base, headers=api_key(deployment), timeout=30) as c:
        job_id = submit(c, pbmc_csv, epochs=40)
        wait_job(c, job_id, lambda j: (j["epoch"] or 0) >= 1, 120, deployment)
        proxy.stop()  # the job trains on without the database, and publishes its version
        published = deployment.models / "lab-celltype" / "1"
        assert not published.exists()  # cut before the job's end
        deadline = time.monotonic() + 300
        while not published.is_dir():
            assert time.monotonic() < deadline, deployment.logs()
            time.sleep(0.1)
        # away longer than the lease and the runner's patience: its outcome is never written
        time.sleep(10)
        proxy.start()
        job = wait_job(c, job_id, lambda j: j["status"] in ("succeeded", "failed"), 120,
                       deployment)  # fmt: skip
    assert job["status"] == "succeeded", job
    assert job["result_version"] == 1
    reasons = [e["reason"] or "" for e in job["history"]]
    # the runner gave up recording; the housekeeper that found its lease expired recorded the
    # version it had published, rather than re-queue the job to train and publish again
    assert "was lost after publishing lab-celltype version 1" in reasons[-1], reasons
    assert [e["status"] for e in job["history"]] == ["queued", "running", "succeeded"]
    assert_one_job_one_version(deployment, job_id)


def test_database_briefly_unavailable(deployment: Topology, proxy: TcpProxy) -> None:
    deployment.start_api()
    with httpx.Client(base_url=deployment.base, headers=api_key(deployment), timeout=30) as c:
        assert c.get("/v1/finetune-jobs").status_code == 200
        proxy.stop()
        r = c.get("/v1/finetune-jobs")
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert "database" in r.json()["detail"]
        proxy.start()
        deadline = time.monotonic() + 20
        while (r := c.get("/v1/finetune-jobs")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)

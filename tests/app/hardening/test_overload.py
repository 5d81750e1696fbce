"""Issue 13: per-key rate limits (in-process and in Redis), the job quota per tenant, admission
control of inference requests, Retry-After on every 503, the broker in /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.types import Receive, Scope, Send

from app.admission import Admission
from app.config import Settings
from app.errors import ServiceUnavailable, TooManyRequests
from app.main import create_app
from app.metrics import Metrics
from app.ratelimit import LocalBuckets, RedisBuckets
from app.services import datasets
from tests.app.conftest import Labs, make_key
from tests.factories import GENES, free_port, make_settings

BROKER = Settings(_env_file=None).broker_url  # type: ignore[call-arg]
EMBED = {"genes": GENES, "sample_ids": ["A"], "values": [[0.5] * len(GENES)]}


def _app(engine: Engine, models_dir: Path, tmp_path: Path, **overrides: Any) -> TestClient:
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        models_dir,
        auth_enabled=True,
        data_dir=tmp_path / "data",
        reload_interval_s=0,
        **overrides,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _embed(client: TestClient, key: dict[str, str]) -> Any:
    return client.post("/v1/models/toy-encoder/embed", json=EMBED, headers=key)


def test_local_buckets_refill_at_the_rate() -> None:
    now = [0.0]
    buckets = LocalBuckets(rate=2.0, burst=3, clock=lambda: now[0])

    def take(key: str) -> float:
        return asyncio.run(buckets.take(key))

    assert [take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take("k") == pytest.approx(0.5)  # empty: one token in 1/rate s
    assert take("other") == 0.0  # a bucket per key
    now[0] = 0.5
    assert take("k") == 0.0
    now[0] = 100.0  # refilled to the burst, never beyond it
    assert [take("k") for _ in range(4)][-1] > 0


@pytest.fixture
def limited(engine: Engine, models_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with _app(engine, models_dir, tmp_path, rate_limit_per_s=0.2, rate_limit_burst=2) as c:
        yield c


def test_a_key_over_its_rate_is_a_429_with_retry_after(limited: TestClient, engine: Engine) -> None:
    a, b = make_key(engine, "lab-a", "predict"), make_key(engine, "lab-b", "predict")
    assert [_embed(limited, a).status_code for _ in range(2)] == [200, 200]
    r = _embed(limited, a)
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 5
    assert r.json()["retry_after_s"] == int(r.headers["retry-after"])
    assert "0.2 requests per second" in r.json()["detail"]
    assert _embed(limited, b).status_code == 200  # another key has its own bucket
    # /v2 answers its own error body, with the header too
    tensor = {"name": "expression", "shape": [1, len(GENES)], "datatype": "FP32"}
    infer = {"inputs": [{**tensor, "data": [0.5] * len(GENES)}]}
    v2 = limited.post("/v2/models/toy-encoder/infer", json=infer, headers=a)
    assert v2.status_code == 429
    assert "requests per second" in v2.json()["error"]
    assert "retry-after" in v2.headers
    metrics = limited.get("/metrics").text
    assert "genexfer_rate_limited_requests_total 2.0" in metrics


def test_buckets_in_redis_are_shared_by_replicas(
    engine: Engine, models_dir: Path, tmp_path: Path
) -> None:
    key = make_key(engine, "lab-a", "predict")
    shared = {"rate_limit_per_s": 0.2, "rate_limit_burst": 2, "rate_limit_redis_url": BROKER}
    with (
        _app(engine, models_dir, tmp_path / "one", **shared) as one,
        _app(engine, models_dir, tmp_path / "two", **shared) as two,
    ):
        assert _embed(one, key).status_code == 200
        assert _embed(two, key).status_code == 200
        assert _embed(one, key).status_code == 429  # the other replica took the second token
        assert _embed(two, key).status_code == 429


def test_redis_away_falls_back_to_this_processes_buckets(
    engine: Engine, models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = make_key(engine, "lab-a", "predict")
    away = f"redis://127.0.0.1:{free_port()}/0"
    settings = {"rate_limit_per_s": 0.2, "rate_limit_burst": 2, "rate_limit_redis_url": away}
    with _app(engine, models_dir, tmp_path, **settings) as client:
        assert isinstance(client.app.state.limiter, RedisBuckets)  # type: ignore[attr-defined]
        codes = [_embed(client, key).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert "Redis unavailable" in caplog.text


def test_a_tenant_at_its_job_quota_gets_a_429(
    engine: Engine, models_dir: Path, tmp_path: Path, job_queue: str
) -> None:
    quota = {"executor": "celery", "job_queue": job_queue, "max_active_jobs_per_tenant": 1}
    with _app(engine, models_dir, tmp_path, **quota) as client:
        labs = Labs(
            client=client,
            a=make_key(engine, "lab-a", "predict", "train"),
            a_predict={},
            b=make_key(engine, "lab-b", "predict", "train"),
            admin={},
            models=models_dir,
            engine=engine,
        )
        dataset = labs.upload(labs.a)
        first = client.post(
            "/v1/finetune-jobs",
            json=_job(dataset, "lab-a-one"),
            headers={**labs.a, "Idempotency-Key": "first"},
        )
        assert first.status_code == 202, first.text
        r = labs.job(labs.a, dataset, "lab-a-two")
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == "30"
        assert (r.json()["active_jobs"], r.json()["quota"]) == (1, 1)
        # a retry of the first submission is its job, not a new one
        again = client.post(
            "/v1/finetune-jobs",
            json=_job(dataset, "lab-a-one"),
            headers={**labs.a, "Idempotency-Key": "first"},
        )
        assert again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        # another tenant has its own quota; a cancelled job frees the place
        assert labs.job(labs.b, labs.upload(labs.b), "lab-b-one").status_code == 202
        client.post(f"/v1/finetune-jobs/{first.json()['id']}/cancel", headers=labs.a)
        assert labs.job(labs.a, dataset, "lab-a-two").status_code == 202


def _job(dataset: str, output: str) -> dict[str, Any]:
    return {
        "encoder": {"name": "toy-encoder"},
        "dataset_id": dataset,
        "label_column": "y",
        "output_name": output,
    }


def test_admission_sheds_inference_beyond_the_bound_with_retry_after() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        if scope["path"].endswith("/classify"):
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    metrics = Metrics()
    app = Admission(slow, max_inflight=1, retry_after_s=2, metrics=metrics)

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = asyncio.create_task(c.post("/v1/models/m/classify"))
            await entered.wait()
            shed = await c.post("/v1/models/m/regress")
            v2 = await c.post("/v2/models/m/versions/1/infer")
            ui = await c.post("/ui/parts/predict")
            other = await c.post("/v1/datasets")  # not an inference route: not counted
            release.set()
            done = await first
            after = await c.post("/v1/models/m/embed")  # the first finished: room again
            return [done, shed, v2, ui, other, after]

    first, shed, v2, ui, other, after = asyncio.run(scenario())
    assert (first.status_code, other.status_code, after.status_code) == (200, 200, 200)
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "2"
    assert shed.headers["content-type"] == "application/problem+json"
    assert "bound of 1 inference requests" in shed.json()["detail"]
    assert v2.status_code == 503
    assert "error" in v2.json()
    assert ui.status_code == 503
    assert metrics.shed._value.get() == 3


def test_every_503_carries_retry_after(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceUnavailable("x").headers == {"Retry-After": "5"}
    assert ServiceUnavailable("x", retry_after_s=0.2).headers == {"Retry-After": "1"}
    assert TooManyRequests("x", retry_after_s=2.5).headers == {"Retry-After": "3"}

    def away(*_: object, **__: object) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(datasets, "listing", away)
    r = client.get("/v1/datasets")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"


def test_readyz_reports_the_broker_with_the_celery_executor(
    engine: Engine, models_dir: Path, tmp_path: Path, labs: Labs
) -> None:
    body = labs.client.get("/readyz").json()
    assert body["broker"] == "ok"
    away = f"redis://127.0.0.1:{free_port()}/0"
    with _app(engine, models_dir, tmp_path, executor="celery", broker_url=away) as c:
        r = c.get("/readyz")
    assert r.json()["broker"].startswith("unreachable")
    assert r.status_code == 200  # jobs wait in the outbox; inference needs no broker
    with _app(engine, models_dir, tmp_path) as c:
        assert c.get("/readyz").json()["broker"] == "not used"
    with _app(engine, tmp_path / "no-models", tmp_path) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        v2 = c.get("/v2/health/ready")
        assert v2.status_code == 503
        assert v2.headers["retry-after"] == "5"


def test_jobs_without_the_training_extra_are_a_503_with_a_long_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.jobs import executor

    monkeypatch.setattr(executor.importlib.util, "find_spec", lambda name: None)
    local = executor.LocalExecutor.__new__(executor.LocalExecutor)
    with pytest.raises(ServiceUnavailable) as caught:
        local.check_available()
    assert caught.value.headers == {"Retry-After": "3600"}

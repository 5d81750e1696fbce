"""Prometheus /metrics, the request timeout, batching and ONNX Runtime session settings."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.inference.backend import InferenceBackend
from app.inference.onnx import OnnxBackend
from app.inference.routing import EVERYONE
from app.main import create_app
from contract.card import ModelCard
from tests.app.inference.test_batcher import Recording
from tests.factories import GENES, make_settings

BODY = {"genes": GENES, "samples": [{"id": "S", "values": [0.5] * 10}]}


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample line of the exposition text (fails when it is absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not exported")


def test_metrics_count_requests_failures_batches_and_times(
    sqlite_url: str, models_dir: Path
) -> None:
    with TestClient(create_app(make_settings(sqlite_url, models_dir))) as c:
        for _ in range(3):
            assert c.post("/v1/models/toy-classifier/classify", json=BODY).status_code == 200
        bad = {"genes": GENES, "samples": [{"id": "S", "values": [0.5] * 9}]}
        assert c.post("/v1/models/toy-classifier/classify", json=bad).status_code == 422
        r = c.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    route = {"route": "/v1/models/{name}/classify", "method": "POST"}
    assert _sample(text, "genexfer_http_requests_total", status="200", **route) == 3
    assert _sample(text, "genexfer_http_requests_total", status="422", **route) == 1
    assert _sample(text, "genexfer_http_request_duration_seconds_count", **route) == 4
    version = {"model": "toy-classifier", "version": "2"}
    assert _sample(text, "genexfer_inference_requests_total", outcome="ok", **version) == 3
    assert _sample(text, "genexfer_inference_requests_total", outcome="failed", **version) == 1
    assert _sample(text, "genexfer_batch_size_count", **version) == 3
    assert _sample(text, "genexfer_batch_size_sum", **version) == 3
    assert _sample(text, "genexfer_batch_queue_seconds_count", **version) == 3
    assert _sample(text, "genexfer_batch_compute_seconds_count", **version) == 3
    assert "genexfer_model_versions_loaded 3.0" in text


def test_a_slow_request_is_cut_off_with_504(sqlite_url: str, models_dir: Path) -> None:
    def slow(folder: Path, card: ModelCard) -> InferenceBackend:
        return Recording(delay_s=1.0)

    settings = make_settings(sqlite_url, models_dir, request_timeout_s=0.2)
    with TestClient(create_app(settings, backend=slow)) as c:
        r = c.post("/v1/models/toy-classifier/classify", json=BODY)
        assert r.status_code == 504
        assert r.headers["content-type"] == "application/problem+json"
        assert "0.2 s" in r.json()["detail"]
        assert r.headers["x-request-id"]
        metrics = c.get("/metrics").text
    assert 'status="504"' in metrics


def test_batching_settings_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENEXFER_MAX_BATCH_SIZE", "128")
    monkeypatch.setenv(
        "GENEXFER_MODEL_BATCHING",
        '{"slow-one": {"max_batch_size": 8}, '
        '"no-batch": {"enabled": false, "max_queue_delay_ms": 0}}',
    )
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.batch_policy("slow-one") == (True, 8, 0.002)
    assert s.batch_policy("no-batch") == (False, 128, 0.0)
    assert s.batch_policy("other") == (True, 128, 0.002)
    with pytest.raises(ValueError, match="max_batch_size"):
        Settings(_env_file=None, model_batching={"m": {"max_batch_size": 0}})  # type: ignore[call-arg]


def test_batchers_are_built_from_the_settings(sqlite_url: str, models_dir: Path) -> None:
    settings = make_settings(
        sqlite_url, models_dir, model_batching={"toy-encoder": {"max_batch_size": 5}}
    )
    with TestClient(create_app(settings)) as c:
        registry = c.app.state.registry  # type: ignore[attr-defined]
        assert registry.get("toy-encoder", viewer=EVERYONE).batcher.max_batch_size == 5
        assert registry.get("toy-classifier", viewer=EVERYONE).batcher.max_batch_size == 256


def test_session_options_come_from_the_settings(models_dir: Path) -> None:
    folder = models_dir / "toy-encoder" / "1"
    backend = OnnxBackend(
        folder,
        ModelCard.read(folder),
        providers=["CPUExecutionProvider"],
        allow_cpu_fallback=True,
        intra_op_threads=1,
        graph_optimization="disable",
        warmup_batch_sizes=(1, 3),
    )
    options = backend._session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL

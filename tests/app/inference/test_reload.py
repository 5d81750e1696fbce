"""Hot reload: new versions load without a restart, old ones drain and unload, broken ones are
reported and skipped; the running app picks up a version copied in while it serves."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from app.inference.onnx import onnx_backend_factory
from app.inference.registry import ModelRegistry
from app.inference.routing import EVERYONE
from app.main import create_app
from tests.factories import GENES, LABELS, make_settings, write_model


def _registry(root: Path, keep: int = 2) -> ModelRegistry:
    settings = make_settings("sqlite://", root)
    return ModelRegistry(root, onnx_backend_factory(settings), keep_versions=keep)


def _versions(registry: ModelRegistry, name: str) -> list[int]:
    return [m.card.version for m in registry.models(viewer=EVERYONE) if m.card.name == name]


def test_new_versions_load_and_only_the_newest_n_stay(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model(root=root, name="m", genes=GENES, labels=LABELS)
    registry = _registry(root, keep=2)
    assert registry.scan() == []
    write_model(root=root, name="m", version=2, genes=GENES, labels=LABELS, seed=1)
    write_model(root=root, name="m", version=3, genes=GENES, labels=LABELS, seed=2)
    retired = registry.scan()
    assert [m.card.version for m in retired] == [1]
    assert _versions(registry, "m") == [2, 3]
    assert registry.get("m", viewer=EVERYONE).card.version == 3
    shutil.rmtree(root / "m" / "3")  # the newest disappears: the previous one is latest again
    retired = registry.scan()
    assert [m.card.version for m in retired] == [3]
    assert registry.get("m", viewer=EVERYONE).card.version == 2
    registry.close()


def test_a_broken_version_is_reported_skipped_and_retried_when_it_changes(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model(root=root, name="m", genes=GENES, labels=LABELS)
    broken = write_model(root=root, name="m", version=2, genes=GENES, labels=LABELS, seed=1)
    good_onnx = (broken / "model.onnx").read_bytes()
    (broken / "model.onnx").write_bytes(b"half a file")
    registry = _registry(root)
    registry.scan()
    assert _versions(registry, "m") == [1]
    (error,) = registry.errors
    assert error.path.endswith("m/2")
    assert "sha256" in error.error
    registry.scan()  # unchanged: not retried, still reported
    assert len(registry.errors) == 1
    (broken / "model.onnx").write_bytes(good_onnx)  # the copy finished
    registry.scan()
    assert _versions(registry, "m") == [1, 2]
    assert registry.errors == []
    registry.close()


def test_unload_drains_requests_in_flight(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model(root=root, name="m", genes=GENES, labels=LABELS)
    registry = _registry(root, keep=1)
    registry.scan()
    old = registry.get("m", viewer=EVERYONE)
    write_model(root=root, name="m", version=2, genes=GENES, labels=LABELS, seed=1)

    async def go() -> list[str]:
        events: list[str] = []

        async def slow_request() -> None:
            async with old.batcher.lease():
                await asyncio.sleep(0.2)  # e.g. still decoding its body
                await old.batcher.run(np.zeros((1, 10), np.float32))
                events.append("request answered by v1")

        task = asyncio.create_task(slow_request())
        await asyncio.sleep(0.02)
        (retired,) = await asyncio.to_thread(registry.scan)
        assert registry.get("m", viewer=EVERYONE).card.version == 2  # new requests go to v2 at once
        await registry.unload(retired, timeout_s=5)
        events.append("v1 unloaded")
        await task
        return events

    assert asyncio.run(go()) == ["request answered by v1", "v1 unloaded"]
    registry.close()


def test_the_running_service_picks_up_a_new_version(sqlite_url: str, tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model(root=root, name="m", genes=GENES, labels=LABELS)
    settings = make_settings(sqlite_url, root, reload_interval_s=0.1)
    body = {"genes": GENES, "samples": [{"id": "S", "values": [0.5] * 10}]}
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/models/m/classify", json=body).json()["model"]["version"] == 1
        (root / "m" / "2").mkdir()
        (root / "m" / "2" / "model.json").write_text("{broken")
        write_model(root=root, name="m", version=3, genes=GENES, labels=LABELS, seed=1)
        deadline = time.monotonic() + 10
        while c.get("/v1/models/m").json()["version"] != 3:
            assert time.monotonic() < deadline, "version 3 not loaded in 10 s"
            time.sleep(0.05)
        assert c.post("/v1/models/m/classify", json=body).json()["model"]["version"] == 3
        ready = c.get("/readyz").json()
        assert ready["ready"] is True
        assert [e["path"].rsplit("/", 2)[-2:] for e in ready["model_errors"]] == [["m", "2"]]
        assert "genexfer_model_load_errors 1.0" in c.get("/metrics").text

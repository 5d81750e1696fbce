"""The v2 infer route is a plain Starlette route in front of the documented FastAPI one: the
same scope check, the same endpoint, on both paths (latest and pinned version)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.api import kserve
from tests.factories import service_client


def _body(n_genes: int) -> bytes:
    x = np.zeros((1, n_genes), np.float32)
    return x.tobytes()


def test_both_infer_paths_take_the_plain_route_and_check_the_scope(
    engine: Engine, service_models: Path, tmp_path: Path
) -> None:
    from app.security import create_key

    plain = [r for r in kserve.router.routes if getattr(r, "endpoint", None) is kserve._infer_route]
    assert {r.path for r in plain} == {  # type: ignore[attr-defined]
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    with service_client(engine, service_models, tmp_path / "d", auth_enabled=True) as client:
        n_genes = client.get("/v2/models/pbmc68k-encoder").json()["inputs"][0]["shape"][1]
        headers = {"inference-header-content-length": "0"}
        for path in (
            "/v2/models/pbmc68k-encoder/infer",
            "/v2/models/pbmc68k-encoder/versions/1/infer",
        ):
            r = client.post(path, content=_body(n_genes), headers=headers)
            assert (r.status_code, r.headers["content-type"]) == (401, "application/json"), r.text
            assert "API key" in r.json()["error"]
        with client.app.state.sessionmaker.begin() as session:  # type: ignore[attr-defined]
            _, key = create_key(session, name="t", scopes=["predict"])
        for path in (
            "/v2/models/pbmc68k-encoder/infer",
            "/v2/models/pbmc68k-encoder/versions/1/infer",
        ):
            r = client.post(path, content=_body(n_genes), headers={**headers, "X-API-Key": key})
            assert r.status_code == 200, r.text
        assert client.get("/openapi.json").json()["paths"]["/v2/models/{name}/infer"]["post"]


def test_the_plain_route_reaches_the_same_errors(client: TestClient) -> None:
    r = client.post(
        "/v2/models/nope/versions/x/infer",
        content=b"",
        headers={"inference-header-content-length": "0"},
    )
    assert (r.status_code, r.json()) == (404, {"error": "model 'nope' has no version 'x'"})

"""Issue 13: the OpenAPI document describes the error bodies, every status an operation may
answer and the API-key security scheme."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.factories import make_settings


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The served document (the app's lifespan is not needed to build it)."""
    app = create_app(make_settings("sqlite:///:memory:", tmp_path_factory.mktemp("models")))
    document: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    return document


def test_problem_bodies_have_a_schema_with_the_extensions(spec: dict[str, Any]) -> None:
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    for extension in ("instance", "samples", "genes", "parameters", "errors", "retry_after_s"):
        assert extension in problem["properties"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/Problem"}
    classify = spec["paths"]["/v1/models/{name}/classify"]["post"]["responses"]
    for status in ("401", "403", "404", "406", "413", "415", "422", "429", "503", "504"):
        assert classify[status]["content"] == {"application/problem+json": {"schema": ref}}
    assert "Retry-After" in classify["429"]["headers"]
    assert "Retry-After" in classify["503"]["headers"]
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert "422" not in infer
    assert infer["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/V2Error"
    }


@pytest.mark.parametrize(
    ("path", "method", "present", "absent"),
    [
        ("/v1/datasets", "get", {"401", "403", "422", "429", "503"}, {"404", "413"}),
        ("/v1/datasets", "post", {"401", "403", "413", "422", "429"}, {"404"}),
        ("/v1/finetune-jobs/{job_id}/cancel", "post", {"404", "409", "429"}, set()),
        ("/v1/keys", "post", {"401", "403", "429"}, {"404"}),
        ("/v1/models", "get", {"401", "422", "503"}, {"403", "429"}),
        ("/healthz", "get", {"422", "503"}, {"401", "403", "429"}),
    ],
)
def test_each_operation_lists_the_statuses_it_may_answer(
    spec: dict[str, Any], path: str, method: str, present: set[str], absent: set[str]
) -> None:
    answers = set(spec["paths"][path][method]["responses"])
    assert present <= answers
    assert not absent & answers


def test_the_api_key_scheme_applies_to_keyed_operations(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    assert schemes["Bearer"]["scheme"] == "bearer"
    keyed = [{"ApiKey": []}, {"Bearer": []}]
    assert spec["paths"]["/v1/datasets"]["get"]["security"] == keyed
    assert spec["paths"]["/v2/models/{name}/infer"]["post"]["security"] == keyed
    assert spec["paths"]["/v1/models"]["get"]["security"] == [{}, *keyed]  # a key is optional
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert "security" not in spec["paths"]["/readyz"]["get"]


def test_readyz_keeps_its_own_503_body(spec: dict[str, Any]) -> None:
    answer = spec["paths"]["/readyz"]["get"]["responses"]["503"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }
    assert "Retry-After" in answer["headers"]

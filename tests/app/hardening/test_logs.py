"""Issue 13: log lines carry no expression values, sample ids or outputs."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError, OperationalError

from app.services import datasets

SECRET = "PATIENT-0042-SECRET"


def _driver_error(kind: type[IntegrityError] | type[OperationalError]) -> Exception:
    # what PostgreSQL's driver says: the first line, then the failing row in its DETAIL
    orig = Exception(f'null value in column "task"\nDETAIL:  Failing row contains ({SECRET}).')
    return kind("INSERT INTO predictions ...", {"sample_ids": [SECRET]}, orig)


@pytest.mark.parametrize("kind", [IntegrityError, OperationalError])
def test_a_database_error_is_logged_by_its_first_line_only(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    kind: type[IntegrityError] | type[OperationalError],
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise _driver_error(kind)

    monkeypatch.setattr(datasets, "listing", broken)
    with caplog.at_level(logging.DEBUG):
        r = client.get("/v1/datasets")
    assert r.status_code == (503 if kind is OperationalError else 500)
    assert SECRET not in r.text
    assert "null value" in caplog.text  # the first line is there
    assert SECRET not in caplog.text
    assert "Failing row" not in caplog.text


def test_the_engine_hides_bound_parameters(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    assert engine.hide_parameters

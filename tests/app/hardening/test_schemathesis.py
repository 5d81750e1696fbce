"""Issue 13: Schemathesis generates requests for every operation of the OpenAPI document (valid
and invalid ones) against a real server: no answer may be a 5xx, and every answer must be one the
document lists, with the content type, body schema and headers it declares."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import migrate
from app.security import create_key
from tests.conftest import fresh_postgresql
from tests.factories import GENES, LABELS, REPO, free_port, wait_until_ready, write_model

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = int(os.environ.get("GENEXFER_SCHEMATHESIS_EXAMPLES", "25"))  # per operation and mode
MIN_CASES = 1_000


@contextlib.contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str]:
    """A database of its own for the server (the fuzzed rows stay out of other tests' way)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'db.sqlite'}"
        return
    with fresh_postgresql("genexfer_fuzz") as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """`genexfer serve` with keys on, toy models, jobs queued for no worker, on each database;
    (base URL, key)."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    with _database(request.param, tmp) as url:
        yield from _serve(tmp, url)


def _serve(tmp: Path, url: str) -> Iterator[tuple[str, str]]:
    models = tmp / "models"
    write_model(root=models, name="toy-encoder", genes=GENES, latent=4)
    write_model(root=models, name="toy-classifier", genes=GENES, labels=LABELS)
    engine = create_engine(url)
    migrate.upgrade(engine)
    with Session(engine) as session:
        _, key = create_key(session, name="schemathesis", scopes=["admin"], tenant="ops")
        session.commit()
    engine.dispose()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "GENEXFER_DATABASE_URL": url,
        "GENEXFER_MODELS_DIR": str(models),
        "GENEXFER_DATA_DIR": str(tmp / "data"),
        "GENEXFER_PROVIDERS": json.dumps(["CPUExecutionProvider"]),
        "GENEXFER_AUTH_ENABLED": "true",
        "GENEXFER_EXECUTOR": "celery",
        "GENEXFER_JOB_QUEUE": queue,
        "GENEXFER_RELOAD_INTERVAL_S": "0",
        "GENEXFER_LOG_LEVEL": "warning",
        "GENEXFER_WARMUP_BATCH_SIZES": "[1]",
    }
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, base + "/readyz", 120, (tmp / "server.log").read_text)
        yield base, key
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        broker = redis.Redis.from_url(Settings(_env_file=None).broker_url)  # type: ignore[call-arg]
        broker.delete(queue)
        broker.close()


def _fuzz(operation: Any, mode: Any, headers: dict[str, str], count: list[int]) -> None:
    """Run EXAMPLES generated cases of one operation in one mode; raise at the first failure."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report and go on
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        count[0] += 1
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.slow
def test_every_operation_answers_as_documented_and_never_5xx(server: tuple[str, str]) -> None:
    base, key = server
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    headers = {"X-API-Key": key}
    count, operations = [0], 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, headers, count)
            except Unsatisfiable:  # no parameters and no body: nothing invalid to send
                continue
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:1500]}")
    print(f"schemathesis: {count[0]} cases over {operations} operations")
    assert failures == [], "\n\n".join(failures)
    assert operations >= 30
    assert count[0] >= MIN_CASES


@pytest.mark.slow
def test_stateful_sequences_answer_as_documented(server: tuple[str, str]) -> None:
    """Sequences of calls, each using what an earlier answer gave (links inferred from the
    document and from Location headers: an uploaded dataset's id, a created key's id)."""
    base, key = server
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    headers = {"X-API-Key": key}
    steps = [0]

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            steps[0] += 1
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Sequences.run(
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    print(f"schemathesis (stateful): {steps[0]} calls")
    assert steps[0] >= EXAMPLES

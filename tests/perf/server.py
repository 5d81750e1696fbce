"""What every benchmark shares: a server subprocess on a free loopback port, and the machine."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PIDS: list[int] = []  # every server process started, newest last (for profilers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    command: list[str],
    env: dict[str, str],
    ready_path: str,
    *,
    port_flag: str | None = "--port",
    port: int | None = None,
    timeout_s: float = 180,
) -> Iterator[str]:
    """Run a server subprocess until `ready_path` answers 200; yield its base URL; stop it."""
    port = port or free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    argv = [*command, port_flag, str(port)] if port_flag else command
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    PIDS.append(proc.pid)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited:\n{Path(log.name).read_text()[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + ready_path, timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready in {timeout_s:.0f} s: {log.name}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# execution providers of every benchmarked server and in-process session (bench_gpu sets them)
PROVIDERS: list[str] = ["CPUExecutionProvider"]


def genexfer_env(models_dir: Path, db: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmarked `genexfer serve` (PROVIDERS, quiet logs, no reload unless
    asked)."""
    return {
        "GENEXFER_MODELS_DIR": str(models_dir),
        "GENEXFER_DATABASE_URL": db,
        "GENEXFER_PROVIDERS": json.dumps(PROVIDERS),
        # a GPU run that silently fell back to the CPU would measure the wrong thing
        "GENEXFER_ALLOW_CPU_FALLBACK": "false" if PROVIDERS != ["CPUExecutionProvider"] else "true",
        "GENEXFER_LOG_LEVEL": "warning",
        "GENEXFER_RELOAD_INTERVAL_S": "0",
        **extra,
    }


def genexfer_command() -> list[str]:
    return [sys.executable, "-m", "app.cli", "serve"]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} CPUs (nproc), {cpu}, {mem_kb / 1024**2:.1f} GiB RAM"


def load() -> str:
    """The 1/5/15-minute load averages, as `uptime` shows them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])

"""A real server and a real browser for the web app's end-to-end tests (and its screenshots).

`LiveServer` runs `genexfer serve` (uvicorn) on a free loopback port with SQLite, a copy of the
demo models, in-process jobs and authentication on, after creating an API key. `browser` starts
Debian's headless Chromium through chromedriver with downloads going to a folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from app.db import migrate
from app.db.session import make_engine, make_sessionmaker
from app.security import create_key
from tests.factories import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """`genexfer serve` in a subprocess, with its own models/, data/ and SQLite file."""

    def __init__(self, root: Path, *, auth: bool = True) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        models = root / "models"
        for name in ("pbmc68k-encoder", "pbmc68k-celltype"):
            shutil.copytree(REPO / "models" / name, models / name)
        database = f"sqlite:///{root / 'genexfer.db'}"
        self.env = {
            **os.environ,
            "GENEXFER_DATABASE_URL": database,
            "GENEXFER_MODELS_DIR": str(models),
            "GENEXFER_DATA_DIR": str(root / "data"),
            "GENEXFER_PROVIDERS": '["CPUExecutionProvider"]',
            "GENEXFER_EXECUTOR": "local",
            "GENEXFER_AUTH_ENABLED": "true" if auth else "false",
            "GENEXFER_RELOAD_INTERVAL_S": "0.5",
            "GENEXFER_LOG_LEVEL": "warning",
        }
        engine = make_engine(database)
        migrate.upgrade(engine)
        with make_sessionmaker(engine).begin() as session:
            _, self.key = create_key(session, name="lab-bench", scopes=["predict", "train"])
        engine.dispose()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self) -> None:
        self.log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, self.logs()
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 90 s\n" + self.logs()
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()

    def logs(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def api(self) -> httpx.Client:
        """An API client with the key."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )


def browser(downloads: Path, width: int = 1280, height: int = 1000) -> webdriver.Chrome:
    """Headless Chromium; files it downloads land in `downloads`."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # runs as root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-GB",
    ):
        options.add_argument(arg)
    prefs: dict[str, Any] = {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
    }
    options.add_experimental_option("prefs", prefs)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    return driver


def screenshot(driver: webdriver.Chrome, path: Path, *, max_height: int = 2600) -> None:
    """The whole page (up to `max_height` pixels tall) as a PNG."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 120, max_height))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(width, 1000)

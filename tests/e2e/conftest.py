"""A real `streamlit run app.py` server on a free local port, and headless Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not become healthy at {url} within {timeout:.0f} s")


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    """A private runs folder for the server, so browser tests never touch the user's runs."""
    return tmp_path_factory.mktemp("runs")


@contextlib.contextmanager
def streamlit_server(runs_dir: Path, log_name: str = "streamlit-server") -> Iterator[str]:
    """Run `streamlit run app.py` on a free port; yield its base URL; stop it afterwards."""
    port = free_port()
    environment = {**os.environ, "DIGITS_RUNS_DIR": str(runs_dir)}
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / f"{log_name}.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def server(runs_dir) -> Iterator[str]:
    """Base URL of a streamlit server running app.py, shared by the session's browser tests."""
    with streamlit_server(runs_dir) as url:
        yield url


def chromium_path() -> str | None:
    """Debian's chromium when installed; None lets Playwright use its own downloaded browser."""
    return os.environ.get("PLAYWRIGHT_CHROMIUM") or shutil.which("chromium") or None


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    opened = context.new_page()
    yield opened
    context.close()


def wait_for_app_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until streamlit has finished running the script (its 'running' widget is gone)."""
    page.wait_for_function(
        "!document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout_ms
    )


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

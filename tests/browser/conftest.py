"""Browser tests: the real dashboard in a subprocess, driven by headless Debian chromium.

The server runs ``python -m trailscope.app.main`` on a free port with TRAILSCOPE_HOME in a temp
folder;
Playwright drives /usr/bin/chromium (no browser downloads). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server_home(tmp_path_factory) -> Path:
    """TRAILSCOPE_HOME of the test server (its uploads land in ``uploads/``)."""
    return tmp_path_factory.mktemp("trailscope_home")


@contextmanager
def serve(home: Path, env_extra: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m trailscope.app.main`` on a free port over workspace ``home``; yields its URL.

    Modules that need data in place before the server opens the DuckDB file import it into
    their own ``home`` and call this; the rest share the ``server_url`` fixture.
    """
    port = _free_port()
    env = {**os.environ, "TRAILSCOPE_HOME": str(home), **(env_extra or {})}
    env.pop("TRAILSCOPE_DEFAULT_DATASET", None)
    log = open(home / "server.log", "w")  # closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailscope.app.main", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{(home / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url + "/data", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not answer in 60 s:\n{(home / 'server.log').read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def server_url(server_home) -> Iterator[str]:
    """Base URL of a real TrailScope server on an empty temporary workspace."""
    with serve(server_home) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class ConsoleLog:
    """Console errors and uncaught page errors of one page."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


@pytest.fixture()
def page(browser):
    """A fresh page (1360x900) with ``page.console`` collecting errors."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    pg.console = ConsoleLog(pg)
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

"""Browser tests: the real dashboard in a subprocess, driven by headless Debian chromium.

The server runs ``python -m trailscope.app.main`` on a free port with TRAILSCOPE_HOME in a temp
folder; Playwright drives /usr/bin/chromium (no browser downloads). Screenshots go to
test-artifacts/.

Tests wait for the state they check, never for a fixed time: every Playwright wait (``expect``,
``wait_for``, ``wait_for_function``, ...) has ``WAIT_MS`` unless it names a longer one (a
training), and a check Playwright cannot express (pixels of a map) polls with
:func:`wait_until`. On an idle machine each wait returns as soon as its state holds; on a loaded
2-core machine it has a minute.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import expect

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
#: How long any browser-test wait may take before it fails (ms); see the module doc.
WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)


def wait_until(check: Callable[[], T], ok: Callable[[T], bool], what: str,
               timeout_ms: int = WAIT_MS, every_s: float = 0.25, page: object = None) -> T:
    """Call ``check()`` until ``ok(result)`` holds; returns that result, or fails after
    ``timeout_ms`` naming ``what`` and the last result. Pass ``page`` when the check reads
    state that Playwright event handlers fill (routes, console): the pause between checks
    then runs the page's event loop instead of sleeping."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = check()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_ms / 1000:.0f} s "
                                 f"(last: {value!r:.200})")
        if page is not None:
            page.wait_for_timeout(every_s * 1000)
        else:
            time.sleep(every_s)


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
    # the blank basemap: no tile requests (the default street map would log a failed request
    # per tile offline); tests/browser/test_deckmap_offline.py checks the street-map fallback
    env = {**os.environ, "TRAILSCOPE_HOME": str(home), "TRAILSCOPE_BASEMAP": "blank",
           **(env_extra or {})}
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
    pg.set_default_timeout(WAIT_MS)
    pg.console = ConsoleLog(pg)
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

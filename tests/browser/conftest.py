"""Browser tests: the real dashboard in a subprocess, driven by headless Debian chromium.

The server runs ``trailscope serve`` (``trailscope.app.localserver``) on a free port with
TRAILSCOPE_HOME in a temp folder; Playwright drives /usr/bin/chromium (no browser downloads).
Screenshots go to test-artifacts/.

Tests wait for the state they check, never for a fixed time: every Playwright wait (``expect``,
``wait_for``, ``wait_for_function``, ...) has ``WAIT_MS`` unless it names a longer one (a
training), and a check Playwright cannot express (pixels of a map) polls with
:func:`wait_until`. On an idle machine each wait returns as soon as its state holds; on a loaded
2-core machine it has a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import expect
from trailscope.app.localserver import local_server

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


@pytest.fixture(scope="session")
def server_home(tmp_path_factory) -> Path:
    """TRAILSCOPE_HOME of the test server (its uploads land in ``uploads/``)."""
    return tmp_path_factory.mktemp("trailscope_home")


@contextmanager
def serve(home: Path, env_extra: dict[str, str] | None = None) -> Iterator[str]:
    """``trailscope serve`` on a free port over workspace ``home`` (``app.localserver``: no
    ``TRAILSCOPE_*`` setting inherited, the blank basemap unless ``env_extra`` names one);
    yields its URL once ``/data`` answers.

    Modules that need data in place before the server opens the DuckDB file import it into
    their own ``home`` and call this; the rest share the ``server_url`` fixture.
    """
    # the blank basemap (localserver's default): no tile requests (the default street map
    # would log a failed request per tile offline); test_deckmap_offline.py checks the fallback
    with local_server(home, ready_path="/data", env=env_extra) as url:
        yield url


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

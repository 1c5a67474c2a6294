"""How long the Overview, Users, Data and Models pages take from navigation to their last graph
drawn, in headless chromium, on every check-in of the committed NYC slice (with a markov and
a pop model for the Models page).

Each page is opened twice in fresh tabs of one browser: the first visit fills the server's
caches, the second is the warm time the issue's goal is about. The measurement is the bench's
(``bench.browser_pages.time_page``: drawn = Dash booted, nothing loading, every graph drawn
with data); the times are printed and written to test-artifacts/page-times.txt. A console
error or an uncaught page error fails the test. ``TRAILSCOPE_PAGE_BUDGET_S`` (unset: no
limit, as this shared machine's load decides the wall time) makes a warm time above it fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.browser_pages import PAGES, time_page
from tests.browser import conftest as browser_conftest
from tests.browser.test_layout_overflow import nyc_home

BUDGET_S = float(os.environ.get("TRAILSCOPE_PAGE_BUDGET_S") or "inf")


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    with browser_conftest.serve(nyc_home(tmp_path_factory), {"TRAILSCOPE_BASEMAP": "blank"}) \
            as base:
        yield base


@pytest.mark.parametrize("key", ["overview", "users", "data", "models"])
def test_page_time_to_drawn(url, browser, artifacts, key):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        visits = []
        for _ in range(2):
            tab = context.new_page()
            visits.append(time_page(tab, f"{url}{PAGES[key].path}?dataset=nyc", key))
            tab.close()
    finally:
        context.close()
    cold, warm = visits
    line = (f"{key}: drawn in {cold.drawn_s:.2f} s cold, {warm.drawn_s:.2f} s warm (server "
            f"{warm.server_s:.2f} s, renderer busy {warm.task_s:.2f} s, main-thread CPU "
            f"{warm.cpu_s:.2f} s, {warm.kb:,.0f} KB of callback data), load average "
            f"{os.getloadavg()[0]:.1f}")
    print(line)
    with open(artifacts / "page-times.txt", "a") as fh:
        fh.write(line + "\n")
    assert cold.errors == [] and warm.errors == []
    assert 0 < warm.server_s <= warm.drawn_s
    assert warm.drawn_s < BUDGET_S, line

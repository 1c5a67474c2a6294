"""Overview, Map and Users in headless chromium, on the built-in sample and the real NYC data.

The workspace is filled *before* its server starts (the DuckDB file admits one process), so
this module runs its own server through the conftest's ``server_url`` fixture function on a
fresh home: the sample (60 users), every check-in of the committed NYC slice (tests/data) and
3,000 events of the Taobao slice (no coordinates). Screenshots go to test-artifacts/analytics-*.png.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from trailscope.app.views import ids

from tests.app.helpers import save_taobao
from tests.browser import conftest as browser_conftest
from tests.conftest import NYC

BACKGROUND = (245, 246, 248)  # DeckMap container background (#f5f6f8)
PAGES = ("overview", "map", "users")


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    """A dashboard on a workspace holding ``sample``, ``nyc`` and ``tb``."""
    from trailscope.analytics.ingest import pipeline as ingest
    from trailscope.analytics.sample.generate import import_sample
    from trailscope.analytics.store import Store

    home = tmp_path_factory.mktemp("analytics_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAILSCOPE_HOME", str(home))
        with Store() as store:
            import_sample(store, "sample", users=60)
            ingest.import_file(store, NYC, name="nyc")
            save_taobao(store, "tb", 3000)
    with browser_conftest.serve(home, {"TRAILSCOPE_BASEMAP": "blank"}) as base:  # offline
        yield base


def _key(map_id: str) -> str:
    """DOM id Dash gives the canvas div of DeckMap(map_id)."""
    return json.dumps({"id": map_id, "type": "trailscope-deck-canvas"}, separators=(",", ":"),
                      sort_keys=True)


def _open(page, url: str, graphs: int) -> None:
    """Load a page and wait until ``graphs`` plotly charts are drawn with real data."""
    page.goto(url)
    page.wait_for_selector(f"#{ids.NAVBAR}")
    page.wait_for_function(
        """n => { const g = [...document.querySelectorAll('.js-plotly-plot')];
                  return g.length >= n && g.every(e => e.querySelector('.main-svg')
                      && !e.innerText.includes('Loading…')); }""", arg=graphs)
    page.wait_for_load_state("networkidle")


def _shot(page, path) -> None:
    """A full-page screenshot from the top (the sticky navbar stays where it belongs)."""
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_function("() => window.scrollY === 0")  # a function: CSP forbids eval
    page.screenshot(path=str(path), full_page=True)


def _map_pixels(page, map_id: str) -> np.ndarray:
    from PIL import Image

    png = page.locator(f"[id='{_key(map_id)}']").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _drawn(img: np.ndarray) -> int:
    return int((np.abs(img - np.array(BACKGROUND)).max(axis=2) > 12).sum())


def _wait_map(page, map_id: str, min_pixels: int = 500) -> np.ndarray:
    """The map's pixels once it has drawn ``min_pixels`` non-background pixels."""
    page.wait_for_function("k => window.trailscopeDeck && window.trailscopeDeck.maps[k] && "
                           "window.trailscopeDeck.maps[k].base", arg=_key(map_id))
    return browser_conftest.wait_until(
        lambda: _map_pixels(page, map_id), lambda img: _drawn(img) >= min_pixels,
        f"map {map_id} draws {min_pixels} pixels")


@pytest.mark.parametrize("dataset", ["sample", "nyc"])
def test_pages_load_without_console_errors(url, page, artifacts, dataset):
    _open(page, f"{url}/overview?dataset={dataset}", graphs=4)
    assert page.locator(".kpi").count() == 4
    assert "Busiest hour" in page.inner_text(f"#{ids.OVERVIEW_RHYTHM_NOTE}")
    assert page.locator(f"#{ids.OVERVIEW_BACKTEST} tr").count() == 3  # header + 2 models
    # the graphs drew with the cartesian plotly.js (app/plotlyjs.py), never the full bundle
    loaded = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)"
                           ".filter(n => n.includes('plotly'))")
    assert any("/_trailscope/plotly/plotly.min.js" in n for n in loaded), loaded
    assert not any("package_data/plotly.min.js" in n for n in loaded), loaded
    _shot(page, artifacts / f"analytics-overview-{dataset}.png")

    _open(page, f"{url}/map?dataset={dataset}", graphs=1)
    img = _wait_map(page, ids.MAP_DECK)
    assert _drawn(img) > 2000, "the map stayed blank"
    layers = page.evaluate("k => window.trailscopeDeck.maps[k].base.map(l => l.id)",
                           _key(ids.MAP_DECK))
    assert {"heat", "zones", "trips"} <= set(layers)
    assert "zones" in page.inner_text(f"#{ids.MAP_ZONE_TABLE}")
    _shot(page, artifacts / f"analytics-map-{dataset}.png")

    _open(page, f"{url}/users?dataset={dataset}", graphs=3)
    _wait_map(page, ids.USERS_DECK, min_pixels=200)
    assert page.locator(f"#{ids.USERS_CHANGERS} a").count() > 0
    assert "ROC-AUC" in page.inner_text(f"#{ids.USERS_CHURN}")
    _shot(page, artifacts / f"analytics-users-{dataset}.png")
    assert page.console.errors == []


def test_moving_the_time_slider_changes_the_map(url, page, artifacts):
    _open(page, f"{url}/map?dataset=nyc", graphs=1)
    before = _wait_map(page, ids.MAP_DECK)
    handle = page.get_by_role("slider")  # the map page has one: the replay time
    start_label = page.locator(".trailscope-replay-label").inner_text()
    handle.focus()
    for _ in range(3):
        page.keyboard.press("PageDown")  # back in time by a tenth of the span each
    page.wait_for_function("t => document.querySelector('.trailscope-replay-label')"
                           ".innerText !== t", arg=start_label)
    after = browser_conftest.wait_until(
        lambda: _map_pixels(page, ids.MAP_DECK),
        lambda img: int((np.abs(img - before).max(axis=2) > 30).sum()) > 1000,
        "the map redraws for the new time")
    changed = int((np.abs(after - before).max(axis=2) > 30).sum())
    page.locator(".card-map").screenshot(path=str(artifacts / "analytics-map-slider.png"))
    assert changed > 1000, f"moving the slider changed only {changed} pixels"
    assert page.locator(".trailscope-replay-label").inner_text() < start_label
    assert page.console.errors == []


def test_time_range_picked_on_the_trend_filters_the_map(url, page):
    _open(page, f"{url}/overview?dataset=nyc", graphs=4)
    box = page.locator(f"#{ids.OVERVIEW_TREND} .nsewdrag").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.2 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.35 * box["width"], y, steps=8)
    page.mouse.up()
    chip = page.locator(f"#{ids.OVERVIEW_RANGE_NOTE} .chip")
    chip.wait_for()
    picked = chip.locator("strong").inner_text()
    page.get_by_role("link", name="Open on the map →").click()
    page.wait_for_url("**/map?*start=*")
    page.wait_for_selector(f"#{ids.MAP_RANGE_NOTE} .chip")
    assert page.locator(f"#{ids.MAP_RANGE_NOTE} strong").inner_text() == picked
    page.wait_for_function("() => document.querySelector('.map-summary .hint') && document"
                           ".querySelector('.map-summary .hint').innerText.includes('located')")
    located = int(page.inner_text(".map-summary .hint").split(" located")[0].replace(",", ""))
    assert 0 < located < 147_000  # a part of the 147,480 check-ins
    assert page.console.errors == []


def _quiet_user() -> str:
    """The least active user of the NYC file: never among the 50 the picker lists at first."""
    counts = pd.read_csv(NYC, usecols=["user_id"], dtype=str)["user_id"].value_counts()
    return str(counts.sort_values(kind="stable").index[0])


def test_find_a_user_by_search(url, page):
    user = _quiet_user()
    _open(page, f"{url}/users?dataset=nyc", graphs=3)
    listed = page.locator(f"#{ids.USERS_PICK}").inner_text()
    before = page.inner_text(f"#{ids.USERS_SUMMARY}")
    page.click(f"#{ids.USERS_PICK}")
    page.fill(".dash-dropdown-search", user)  # not among the 50 most active: server search
    option = page.locator(".dash-dropdown-option", has_text=re.compile(rf"^\s*{user}\b")).first
    option.click()
    page.wait_for_function("([sel, t]) => document.querySelector(sel).innerText !== t",
                           arg=[f"#{ids.USERS_SUMMARY}", before])
    assert user in page.locator(f"#{ids.USERS_PICK}").inner_text() != listed
    assert page.console.errors == []


def test_no_coordinates_and_user_links(url, page):
    page.goto(f"{url}/map?dataset=tb")
    page.wait_for_selector(".no-map")
    assert "no coordinates" in page.inner_text(".no-map")
    _open(page, f"{url}/users?dataset=sample", graphs=3)
    link = page.locator(f"#{ids.USERS_CHANGERS} a").first
    user = link.inner_text()
    link.click()
    page.wait_for_url(f"**/users?dataset=sample&user={user}")
    page.wait_for_function("([sel, u]) => document.querySelector(sel) && document"
                           ".querySelector(sel).innerText.includes(u)",
                           arg=[f"#{ids.USERS_PICK}", user])
    assert page.console.errors == []

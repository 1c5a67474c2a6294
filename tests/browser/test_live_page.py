"""The Live page in headless chromium: an event posted through the HTTP API shows in the feed,
the counts and the per-minute chart without reloading, and on the Overview's headline count.

The workspace (the committed NYC slice, its summaries built) is filled before its server
starts; the event goes through ``POST /api/v1/datasets/nyc/events`` (loopback: no token).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from trailscope.app.views import ids

from tests.browser import conftest as browser_conftest
from tests.conftest import NYC

USER = "live-browser-user"
ITEM = "live-browser-cafe"


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    from trailscope.analytics.ingest import pipeline as ingest
    from trailscope.analytics.rollups import build
    from trailscope.analytics.store import Store

    home = tmp_path_factory.mktemp("live_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAILSCOPE_HOME", str(home))
        with Store() as store:
            ingest.import_file(store, NYC, name="nyc")
            build.after_import(store, "nyc")
    with browser_conftest.serve(home) as base:
        yield base


def post_events(base: str, name: str, events: list[dict]) -> dict:
    """POST ``events`` to the API's append endpoint; its JSON answer."""
    req = urllib.request.Request(f"{base}/api/v1/datasets/{name}/events",
                                 data=json.dumps(events).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def _kpi(page, label: str) -> str:
    """The value of the headline card labelled ``label`` on the page."""
    return page.evaluate("""label => { for (const k of document.querySelectorAll('.kpi')) {
          if (k.querySelector('.kpi-label').textContent.trim() === label)
              return k.querySelector('.kpi-value').textContent.trim(); } return null; }""", label)


def test_live_page_shows_a_posted_event_without_reloading(url, page):
    page.goto(f"{url}/live?dataset=nyc")
    expect(page.locator(f"#{ids.LIVE_EMPTY}")).to_contain_text("/api/v1/datasets/nyc/events")
    expect(page.locator(f"#{ids.LIVE_EMPTY}")).to_contain_text("curl")
    # the empty feed is a sentence, not a table of bare headers
    expect(page.locator(f"#{ids.LIVE_FEED}")).to_contain_text("No events have arrived yet")
    expect(page.locator(f"#{ids.LIVE_FEED} th")).to_have_count(0)
    browser_conftest.wait_until(lambda: _kpi(page, "Events arrived"), lambda v: v == "0",
                                "the arrived count before the post")
    rows_before = int(_kpi(page, "Events in the dataset").replace(",", ""))
    page.evaluate("() => { window.__liveMarker = 'not reloaded'; }")

    got = post_events(url, "nyc", [{"user_id": USER, "item_id": ITEM,
                                    "ts": "2012-11-02T12:30:00-04:00", "lat": 40.7411,
                                    "lon": -73.9897, "category": "Coffee Shop",
                                    "event_id": "live-browser-1"}])
    assert got["stored"] == 1 and got["rows"] == rows_before + 1

    feed = page.locator(f"#{ids.LIVE_FEED}")
    expect(feed).to_contain_text(USER)
    expect(feed).to_contain_text(ITEM)
    browser_conftest.wait_until(lambda: _kpi(page, "Events arrived"), lambda v: v == "1",
                                "the arrived count after the post")
    assert _kpi(page, "Events in the dataset") == f"{rows_before + 1:,}"
    expect(page.locator(f"#{ids.LIVE_EMPTY}")).to_be_empty()
    # the per-minute chart draws a bar holding the event
    page.wait_for_function("""id => {
        const g = document.querySelector('#' + id + ' .js-plotly-plot');
        return g && g.data && g.data.length === 1 && g.data[0].type === 'bar'
            && Array.from(g.data[0].y).reduce((a, b) => a + b, 0) === 1; }""",
                           arg=ids.LIVE_MINUTES)
    assert page.evaluate("() => window.__liveMarker") == "not reloaded"
    # the feed links the user to their Users view; no model knows this new user, so no
    # Explain link is offered
    link = feed.get_by_role("link", name=USER).first
    assert link.get_attribute("href") == f"/users?dataset=nyc&user={USER}"
    assert feed.get_by_role("link", name="explain").count() == 0
    assert not page.console.errors, page.console.errors

    # the Overview's headline count has the event too (a new page view: no stale cache)
    t0 = time.monotonic()
    page.goto(f"{url}/overview?dataset=nyc")
    browser_conftest.wait_until(lambda: _kpi(page, "Events"),
                                lambda v: v == f"{rows_before + 1:,}",
                                "the Overview's event count", page=page)
    assert time.monotonic() - t0 < browser_conftest.WAIT_MS / 1000

"""Every page, in headless chromium, on a dataset whose strings are markup: nothing renders.

The dataset is the committed NYC slice (tests/data) with its most active users, most visited
items, most common categories and the behaviours renamed to hostile strings (links, styled
spans, bold, line breaks, an image with ``onerror``, ``javascript:`` URLs), written as a CSV and
imported through the importer, plus a trained markov model. Overview, Map, Users (the hostile
user), Models and Explain are rendered; each fails on a rendered ``<a>`` with a foreign href,
an element styled by the data, an ``<img>`` from the data, or any dialog; the hostile strings
must show as text in the charts.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.app.views import ids

from tests.browser import conftest as browser_conftest
from tests.browser.conftest import WAIT_MS
from tests.conftest import NYC

LINK = '<a href="https://evil.example/">x</a>'
CATEGORIES = [LINK, '<span style="color:red;font-size:61px">big</span>', "<b>bold</b>",
              "two<br>lines", "<img src=x onerror=alert(1)>",
              '<a href="javascript:alert(2)">js</a>']
USERS = ['<a href="https://evil.example/u">u</a>', "<img src=x onerror=alert(3)>",
         '<span style="font-size:61px">u</span>']
ITEMS = ['<a href="https://evil.example/i">i</a>', "<b>item</b>", "<img src=x onerror=alert(4)>"]
BEHAVIORS = ["visit", '<a href="https://evil.example/b">b</a>', "<i>beh</i>"]
USER = USERS[0]

#: Fails the page: foreign links, data-styled or data-made elements (inside the plots or not).
FINDINGS_JS = """() => {
  const out = [];
  const origin = location.origin;
  for (const a of document.querySelectorAll('a')) {
    const href = a.getAttributeNS('http://www.w3.org/1999/xlink', 'href') || a.getAttribute('href');
    if (href && !href.startsWith('#') && !href.startsWith('/') && !href.startsWith(origin)) {
      out.push('link ' + href);
    }
  }
  for (const el of document.querySelectorAll('[style]')) {
    const s = el.getAttribute('style').replace(/\\s/g, '');
    if (s.includes('61px') || s.includes('color:red')) { out.push('styled ' + s); }
  }
  for (const el of document.querySelectorAll('.js-plotly-plot [style]')) {
    if (/font-weight:bold|font-style:italic/.test(el.getAttribute('style').replace(/\\s/g, '')))
      { out.push('markup style ' + el.textContent); }
  }
  for (const img of document.querySelectorAll('img')) {
    if (img.getAttribute('src') === 'x') { out.push('img ' + img.outerHTML); }
  }
  return out;
}"""
CURVES_JS = """graph => {
  const gd = document.querySelector('#' + graph + ' .js-plotly-plot');
  const unescape = s => new DOMParser().parseFromString(s, 'text/html').body.textContent;
  return gd._fullData.map(t => [t.index, unescape(t.name || ''), (t.x || []).length]);
}"""
HOVER_JS = """([graph, curve, point]) => Plotly.Fx.hover(
  document.querySelector('#' + graph + ' .js-plotly-plot'),
  [{curveNumber: curve, pointNumber: point}])"""
HOVER_TEXT_JS = """graph => {
  const layer = document.querySelector('#' + graph + ' .js-plotly-plot .hoverlayer');
  return layer ? layer.textContent : '';
}"""
PLOT_TEXT_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .map(g => g.textContent).join('\\n')"""


def hostile_csv(path) -> pd.DataFrame:
    """The NYC slice's 60 most active users as canonical columns, strings made hostile."""
    raw = pd.read_csv(NYC)
    top_users = raw["user_id"].value_counts().index[:60]
    raw = raw[raw["user_id"].isin(top_users)]
    ev = pd.DataFrame({
        schema.USER: raw["user_id"].astype(str), schema.ITEM: raw["venue_id"].astype(str),
        schema.TS: pd.to_datetime(raw["utc_time_minute"]).dt.strftime("%Y-%m-%d %H:%M:%S"),
        schema.LAT: raw["latitude"], schema.LON: raw["longitude"],
        schema.CATEGORY: raw["venue_category"].astype(str)})
    rename = {
        schema.USER: dict(zip(ev[schema.USER].value_counts().index[:3], USERS, strict=True)),
        schema.ITEM: dict(zip(ev[schema.ITEM].value_counts().index[:3], ITEMS, strict=True)),
        schema.CATEGORY: dict(zip(ev[schema.CATEGORY].value_counts().index[:6], CATEGORIES,
                                  strict=True))}
    for col, mapping in rename.items():
        ev[col] = ev[col].map(lambda v, m=mapping: m.get(v, v))
    ev[schema.BEHAVIOR] = [BEHAVIORS[i % len(BEHAVIORS)] for i in range(len(ev))]
    ev.to_csv(path, index=False)
    return ev


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    """A dashboard on a workspace holding ``evil`` (imported) and a markov model of it."""
    from trailscope.analytics.ingest import pipeline as ingest
    from trailscope.analytics.store import Store
    from trailscope.models.api import train

    home = tmp_path_factory.mktemp("hostile_home")
    ev = hostile_csv(home / "evil.csv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAILSCOPE_HOME", str(home))
        with Store() as store:
            ingest.import_file(store, home / "evil.csv", name="evil")
            stored = store.events("evil")
            for col, hostile in ((schema.USER, USERS), (schema.CATEGORY, CATEGORIES),
                                 (schema.BEHAVIOR, BEHAVIORS)):
                assert set(hostile) <= set(stored[col]), col
            assert len(stored) > len(ev) / 2  # the slice's rows without a venue id are rejected
            train(store, "evil", model="markov", log=lambda _m: None)
    with browser_conftest.serve(home) as base:
        yield base


@pytest.fixture()
def dialogs(page) -> list[str]:
    seen: list[str] = []
    page.on("dialog", lambda d: (seen.append(d.message), d.dismiss()))
    return seen


def _drawn(page, graphs: int) -> None:
    page.wait_for_selector(f"#{ids.NAVBAR}")
    page.wait_for_function(
        """n => { const g = [...document.querySelectorAll('.js-plotly-plot')];
                  return g.length >= n && g.every(e => e.querySelector('.main-svg')
                      && !e.innerText.includes('Loading…')); }""", arg=graphs)
    page.wait_for_load_state("networkidle")


def _hover(page, graph: str, names: list[str] | None = None, points: int = 1,
           label: str = "") -> str:
    """Hover the first ``points`` points of each curve of ``graph`` named in ``names`` (all
    without): the hover texts, each waited for (``label`` + point number, when given, marks
    the point's own label: plotly throttles hovers)."""
    texts = []
    for curve, name, n in page.evaluate(CURVES_JS, graph):
        if names is not None and name not in names:
            continue
        for i in range(min(points, n)):
            page.evaluate(HOVER_JS, [graph, curve, i])
            want = f"{label}{i + 1} " if label else ""
            texts.append(page.wait_for_function(
                f"""graph => {{ const t = ({HOVER_TEXT_JS})(graph);
                               return t && t.includes({want!r}) ? t : false; }}""",
                arg=graph).json_value())
    return " | ".join(texts)


def _check(page, dialogs: list[str], artifacts, name: str) -> str:
    """Fails on any finding; returns the plots' text."""
    page.screenshot(path=str(artifacts / f"hostile-{name}.png"), full_page=True)
    findings = page.evaluate(FINDINGS_JS)
    assert findings == [], f"{name}: {findings}"
    assert dialogs == [], f"{name}: dialogs {dialogs}"
    return page.evaluate(PLOT_TEXT_JS)


def test_overview_and_map_render_hostile_strings_as_text(url, page, dialogs, artifacts):
    page.goto(f"{url}/overview?dataset=evil")
    _drawn(page, 3)
    _check(page, dialogs, artifacts, "overview")
    # the trend split by category: one legend entry and hover line per (hostile) category
    page.locator(f"#{ids.OVERVIEW_SPLIT} label", has_text="Category").click()
    page.wait_for_function(
        """([graph, link]) => document.getElementById(graph).textContent.includes(link)""",
        arg=[ids.OVERVIEW_TREND, LINK])
    hovered = _hover(page, ids.OVERVIEW_TREND, CATEGORIES)
    assert LINK in hovered, hovered
    _check(page, dialogs, artifacts, "overview-split")
    page.goto(f"{url}/map?dataset=evil")
    _drawn(page, 1)
    _check(page, dialogs, artifacts, "map")


def test_users_page_of_a_hostile_user(url, page, dialogs, artifacts):
    page.goto(f"{url}/users?{urlencode({'dataset': 'evil', 'user': USER}, quote_via=quote)}")
    _drawn(page, 3)
    text = _check(page, dialogs, artifacts, "users")
    assert LINK in text                 # the timeline's and drift chart's category labels
    assert BEHAVIORS[1] in text and BEHAVIORS[2] in text  # the timeline's legend
    assert USER in page.inner_text("body")
    # hover a timeline event of each hostile behaviour: its label shows item, category and
    # behaviour, and nothing in it becomes markup
    hovered = _hover(page, ids.USERS_TIMELINE, [BEHAVIORS[1], BEHAVIORS[2]])
    assert BEHAVIORS[1] in hovered or BEHAVIORS[2] in hovered, hovered
    _check(page, dialogs, artifacts, "users-hover")


def test_models_and_explain_pages(url, page, dialogs, artifacts):
    page.goto(f"{url}/models?dataset=evil")
    page.wait_for_selector(f"#{ids.MODELS_TABLE} table")
    _drawn(page, 2)
    _check(page, dialogs, artifacts, "models")
    page.goto(f"{url}/explain?{urlencode({'dataset': 'evil', 'user': USER}, quote_via=quote)}")
    button = page.locator(".explain-rec-item").first
    button.wait_for()
    _check(page, dialogs, artifacts, "explain-recs")
    button.click()
    page.wait_for_selector(f"#{ids.EXPLAIN_FIG_ATTRIBUTION} .main-svg", timeout=WAIT_MS)
    _drawn(page, 4)
    _check(page, dialogs, artifacts, "explain")
    assert USER in page.inner_text(f"#{ids.EXPLAIN_RECS}")
    # every past event's hover names its item and category: the user's categories are hostile
    first = page.evaluate(CURVES_JS, ids.EXPLAIN_FIG_ATTRIBUTION)[0]
    hovered = _hover(page, ids.EXPLAIN_FIG_ATTRIBUTION, [first[1]], points=60, label="#")
    assert any(c in hovered for c in CATEGORIES), hovered[:500]
    _check(page, dialogs, artifacts, "explain-hover")

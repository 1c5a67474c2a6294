"""Nothing sticks out of its card or hides behind a scroll bar, at 1440 px and 1024 px wide.

The workspace holds every check-in of the committed NYC slice with a markov and a pop model
(the Models page's comparison and inspection cards), and the first 3,000 Taobao events under
a dataset name of the longest allowed length (the selector, badges and the Data table must
take it). For the Overview, Users, Data (after an upload: preview and mapping form) and
Models pages at both widths, :data:`BOXES` (run in the page) reports:

* elements inside a card whose box reaches past the card's padding box;
* elements inside a card that scroll or clip their content sideways (a wide table behind a
  scroll bar, a hint cut with an ellipsis), except containers marked ``scroll-x`` (the raw
  file preview, meant to scroll);
* plotly axis titles, colour-bar titles, subplot titles and legends outside the graph's SVG,
  and a legend overlapping an axis title;
* a page wider than the window.

Screenshots: test-artifacts/layout-<page>-<width>.png.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from trailscope.analytics.schema import DATASET_NAME_MAX
from trailscope.app.views import ids

from tests.app.helpers import save_taobao
from tests.browser import conftest as browser_conftest
from tests.conftest import NYC

LONG = ("taobao_" + "x" * DATASET_NAME_MAX)[:DATASET_NAME_MAX]
WIDTHS = (1440, 1024)

#: Layout problems on the page, as sentences naming the element (a function: CSP forbids eval).
BOXES = """() => {
  const out = [];
  const name = e => {
    const id = e.id ? '#' + e.id : '';
    const cls = typeof e.className === 'string' && e.className
      ? '.' + e.className.trim().split(/\\s+/).join('.') : '';
    const text = (e.innerText || e.textContent || '').trim().slice(0, 40).replace(/\\s+/g, ' ');
    return `${e.tagName.toLowerCase()}${id}${cls} "${text}"`;
  };
  const gid = g => (g.closest('[id]') || {}).id;
  const visible = e => e.getClientRects().length > 0
    && getComputedStyle(e).visibility !== 'hidden';
  const inside = (a, b, tol = 1) => a.left >= b.left - tol && a.right <= b.right + tol
    && a.top >= b.top - tol && a.bottom <= b.bottom + tol;
  const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1
    && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  const page = document.documentElement.scrollWidth;
  if (page > window.innerWidth + 1)
    out.push(`page is ${page} px wide in a ${window.innerWidth} px window`);
  for (const card of document.querySelectorAll('.card, .kpi')) {
    if (!visible(card)) continue;
    const cs = getComputedStyle(card), r = card.getBoundingClientRect();
    const box = {left: r.left + parseFloat(cs.borderLeftWidth),
                 right: r.right - parseFloat(cs.borderRightWidth)};
    const reported = [];
    for (const e of card.querySelectorAll('*')) {
      if (!visible(e) || e.closest('.scroll-x') || e.closest('.js-plotly-plot svg')) continue;
      if (reported.some(a => a.contains(e))) continue;  // its outermost box is named
      const er = e.getBoundingClientRect();
      if (er.width === 0) continue;
      const out_px = Math.round(Math.max(er.right - box.right, box.left - er.left));
      if (out_px > 1) {
        out.push(`${name(e)} reaches ${out_px} px out of its card ${name(card)}`);
        reported.push(e);
        continue;
      }
      const ox = getComputedStyle(e).overflowX, hidden = e.scrollWidth - e.clientWidth;
      if (ox !== 'visible' && hidden > 1 && !e.classList.contains('scroll-x')
          && !e.closest('.dash-dropdown, .js-plotly-plot')) {
        out.push(`${name(e)} hides ${hidden} px of its content (overflow-x: ${ox})`);
        reported.push(e);
      }
    }
  }
  const PARTS = '.g-xtitle, .g-ytitle, .g-x2title, .g-y2title, .g-y3title, .g-y4title, '
    + '.legend, .colorbar, .annotation';
  for (const g of document.querySelectorAll('.js-plotly-plot')) {
    if (!visible(g)) continue;
    const svg = g.querySelector('.main-svg');
    if (!svg) continue;
    const s = svg.getBoundingClientRect();
    const parts = [...g.querySelectorAll(PARTS)]
      .filter(e => e.getBoundingClientRect().width > 0);
    for (const p of parts)
      if (!inside(p.getBoundingClientRect(), s, 2))
        out.push(`${name(p)} of graph #${gid(g)} lies outside the graph`);
    const legend = g.querySelector('.legend');
    const titles = g.querySelectorAll('.g-xtitle, .g-ytitle, .g-y2title, .annotation');
    if (legend) for (const t of titles) {
      const tr = t.getBoundingClientRect();
      if (tr.width > 0 && overlap(legend.getBoundingClientRect(), tr))
        out.push(`the legend of graph #${gid(g)} covers ${name(t)}`);
    }
  }
  return out;
}"""


_SOURCE: dict[str, Path] = {}


def nyc_home(tmp_path_factory) -> Path:
    """A fresh workspace holding ``nyc`` (with markov and pop) and ``LONG``: built once per
    session, copied for each module that serves it (the DuckDB file admits one process)."""
    from trailscope.analytics.ingest import pipeline as ingest
    from trailscope.analytics.store import Store
    from trailscope.models import api

    if "home" not in _SOURCE:
        src = tmp_path_factory.mktemp("layout_source")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRAILSCOPE_HOME", str(src))
            with Store() as store:
                ingest.import_file(store, NYC, name="nyc")
                save_taobao(store, LONG, 3000)
                for model in ("pop", "markov"):
                    api.train(store, "nyc", model=model, log=lambda _m: None)
        _SOURCE["home"] = src
    home = tmp_path_factory.mktemp("layout_home")
    shutil.copytree(_SOURCE["home"], home, dirs_exist_ok=True)
    return home


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    """A dashboard on :func:`nyc_home` (blank basemap: no tile requests offline)."""
    with browser_conftest.serve(nyc_home(tmp_path_factory), {"TRAILSCOPE_BASEMAP": "blank"}) \
            as base:
        yield base


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("layout_upload") / "nyc_checkins_500.csv"
    with gzip.open(NYC, "rt", encoding="utf-8") as src:
        path.write_text("".join(line for _, line in zip(range(500), src, strict=False)))
    return path


def _wide_page(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(browser_conftest.WAIT_MS)
    pg.console = browser_conftest.ConsoleLog(pg)
    return context, pg


def _drawn(page, graphs: int, ready: str = "") -> None:
    from bench.browser_pages import DRAWN_JS

    page.wait_for_function(DRAWN_JS, arg=[graphs, ready], polling=250)
    page.wait_for_load_state("networkidle")
    page.wait_for_function(DRAWN_JS, arg=[graphs, ready], polling=250)


def _check(page, artifacts, key: str, width: int) -> list[str]:
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / f"layout-{key}-{width}.png"), full_page=True)
    return [f"{key} @ {width}px: {p}" for p in page.evaluate(BOXES)]


def _open_data_with_upload(page, base: str, path) -> None:
    page.goto(f"{base}/data?dataset=nyc")
    page.set_input_files(f"#{ids.UPLOAD_INPUT}", str(path))
    page.wait_for_selector(f"#{ids.MAPPING_FORM} .map-field")
    _drawn(page, 0, f"#{ids.DATASETS_TABLE} table")


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_overflows_its_card(url, browser, artifacts, upload_file, width):
    context, page = _wide_page(browser, width)
    problems: list[str] = []
    try:
        page.goto(f"{url}/overview?dataset=nyc")
        _drawn(page, 4, ".kpi-row")
        problems += _check(page, artifacts, "overview", width)

        page.goto(f"{url}/users?dataset=nyc")
        _drawn(page, 3, f"#{ids.USERS_CHANGERS} table")
        problems += _check(page, artifacts, "users", width)

        _open_data_with_upload(page, url, upload_file)
        problems += _check(page, artifacts, "data", width)

        page.goto(f"{url}/models?dataset=nyc")
        _drawn(page, 1, f"#{ids.MODELS_RECS} tbody tr")
        problems += _check(page, artifacts, "models", width)

        page.goto(f"{url}/overview?dataset={LONG}")
        _drawn(page, 4, ".kpi-row")
        # 9 days of events: no weekly forecast, and the message saying why must fit
        page.locator(f"#{ids.OVERVIEW_FORECAST_FREQ} label", has_text="Weekly").click()
        page.wait_for_function("id => document.getElementById(id).textContent"
                               ".includes('Cannot show the forecast')",
                               arg=ids.OVERVIEW_FORECAST)
        problems += _check(page, artifacts, "overview-long-name", width)
        errors = list(page.console.errors)
    finally:
        context.close()
    assert problems == [], "\n".join(problems)
    assert errors == []


def test_dataset_selector_from_the_keyboard(url, page):
    """Open the selector (click, Enter or an arrow key), type part of a name, Enter: the
    match is picked (Dash's list kept the focus on an option, so typing did nothing), every
    letter reaches the search box, and the list closes."""
    page.goto(f"{url}/data?dataset=nyc")
    page.wait_for_selector(f"#{ids.DATASETS_TABLE} table")
    # assets/keyboard.js, the type-to-search key handler, loads with the page's scripts
    page.wait_for_function("() => window.trailscopeTypeToSearch === true")
    value = page.locator(f"#{ids.DATASET_DROPDOWN} .dash-dropdown-value")
    options = page.locator(".dash-dropdown-option")
    for opener in ("click", "Enter", "ArrowDown"):
        # the list of the previous pick must be gone: during its closing its options are still
        # in the page, and waiting for "an option" below would not wait for the new list
        expect(options).to_have_count(0)
        target = "taobao" if "nyc" in value.inner_text() else "nyc"
        if opener == "click":
            page.click(f"#{ids.DATASET_DROPDOWN}")
        else:
            page.focus(f"#{ids.DATASET_DROPDOWN}")
            page.keyboard.press(opener)
        options.first.wait_for()
        page.keyboard.type(target[:3])
        # as a user does, press Enter once the list shows the match (the list filters a moment
        # after the keys; Enter before that picked the old list's first entry)
        expect(options.first).to_contain_text(target)
        page.keyboard.press("Enter")
        expect(value).to_contain_text(target)
        page.wait_for_url(f"**/data?dataset={target}*")
    # and the list closes after a pick (it opened again when Enter picked on key-down and
    # the key-up reached the dropdown's button)
    expect(options).to_have_count(0)
    # typing the dataset already chosen and Enter closes the list too, and stays there (a
    # click on its checked option changed nothing and the list stayed open)
    current = "taobao" if "taobao" in value.inner_text() else "nyc"
    page.click(f"#{ids.DATASET_DROPDOWN}")
    options.first.wait_for()
    page.keyboard.type(current[:3])
    expect(options.first).to_contain_text(current)
    page.keyboard.press("Enter")
    expect(options).to_have_count(0)
    expect(value).to_contain_text(current)
    assert page.console.errors == []


def test_a_long_dataset_name_is_stopped_at_the_limit_and_says_so(url, page, upload_file):
    page.goto(f"{url}/data")
    page.set_input_files(f"#{ids.UPLOAD_INPUT}", str(upload_file))
    page.wait_for_selector(f"#{ids.MAPPING_FORM} .map-field")
    note = page.locator(f"#{ids.NAME_LIMIT}")
    expect(note).to_contain_text(f"of {DATASET_NAME_MAX} characters")
    field = page.locator(f"#{ids.NAME_INPUT}")
    field.fill("")
    field.press_sequentially("n" * (DATASET_NAME_MAX + 6))
    assert len(field.input_value()) == DATASET_NAME_MAX
    expect(note).to_contain_text(f"{DATASET_NAME_MAX} of {DATASET_NAME_MAX} characters: a "
                                 f"dataset name holds at most {DATASET_NAME_MAX}")
    expect(note).to_have_class("name-limit at-limit")
    field.fill("nyc 2012")
    expect(note).to_contain_text("Use only letters, digits")
    field.fill("nyc_2012")
    expect(note).to_have_text(f"8 of {DATASET_NAME_MAX} characters.")
    assert page.console.errors == []

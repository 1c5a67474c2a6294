"""The printed report (app/reports) on a real NYC slice: every figure drawn at the page's
width and inside its margins, the attribution chart holding every event, distinct colour-bar
ticks, no heading left alone at the foot of a page; and a batch of HTML reports sharing one
copy of plotly.js and deck.gl.

One module fixture trains a tiny st-transformer (scores summed, so the encoder's events carry
attributions) and prints one report; each test checks one property of that PDF (rendered with
poppler's ``pdftoppm``/``pdftotext``) or of its page laid out in print media by Chromium.
"""

from __future__ import annotations

import html
import re
import subprocess

import numpy as np
import pytest
from PIL import Image
from trailscope.analytics import schema
from trailscope.analytics.store import Store

DPI = 50


@pytest.fixture(scope="module")
def printed(nyc40_home):
    """The NYC slice's busiest user's report: its data, the print-form page and the PDF."""
    from trailscope.app.reports import report
    from trailscope.models.api import train

    home = nyc40_home
    store = Store(home / "trailscope.duckdb")
    res = train(store, "nyc40", model="st-transformer", epochs=1, pretrain_epochs=0,
                hidden=16, batch_size=128, max_len=20, blend=False, log=lambda _m: None)
    user = store.query_df(f"SELECT {schema.USER} AS u, count(*) AS n FROM "
                          f"{store.table('nyc40')} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")["u"][0]
    data = report.collect(store, "nyc40", user, model_id=res.model_id)
    yield {"store": store, "model_id": res.model_id, **print_report(data, home)}
    store.close()


def print_report(data, folder) -> dict:
    """Print ``data``'s report into ``folder``: its print-form page, the PDF and its pages
    as PNGs (also used by hand on a full dataset: call the tests with the result)."""
    from trailscope.app.reports import report

    page = report.render_html(data, static=True)
    pdf = report.write(data, folder / "report.pdf")
    subprocess.run(["pdftoppm", "-png", "-r", str(DPI), str(pdf), str(folder / "page")],
                   check=True)
    pngs = sorted(folder.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return {"data": data, "page": page, "pdf": pdf, "pngs": pngs}


@pytest.fixture(scope="module")
def laid_out(printed):
    return layout_of(printed["page"])


def layout_of(page: str) -> dict:
    """The print-form page in Chromium at the printed text width, print media: per figure
    its box and the boxes of its parts; the attribution chart's bars and axis; the attention
    colour bar's tick labels."""
    from playwright.sync_api import sync_playwright
    from trailscope.app.reports.report import CHROMIUM, CHROMIUM_ARGS, PRINT_WIDTH_PX

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = b.new_page(viewport={"width": PRINT_WIDTH_PX, "height": 1000})
        pg.emulate_media(media="print")
        pg.set_content(page, wait_until="load")
        pg.wait_for_function("window.trailscopeReady === true", timeout=30_000)
        figs = pg.evaluate("""() => Array.from(document.querySelectorAll('.fig')).map(el => {
            const svg = el.querySelector('.main-svg'); const r = svg.getBoundingClientRect();
            const parts = Array.from(el.querySelectorAll('.main-svg *')).map(
                p => p.getBoundingClientRect()).filter(q => q.width > 0 && q.height > 0);
            return {id: el.id, left: r.left, right: r.right, width: r.width,
                    parts_left: Math.min(...parts.map(q => q.left)),
                    parts_right: Math.max(...parts.map(q => q.right))};})""")
        bars = pg.evaluate("""() => Array.from(document.querySelectorAll(
            '#fig-attribution .trace.bars')).map(t => Array.from(t.querySelectorAll(
            '.point path')).map(p => p.getBoundingClientRect().right))""")
        xticks = pg.evaluate("""() => Array.from(document.querySelectorAll(
            '#fig-attribution .xtick text')).map(t => t.textContent)""")
        xaxis = pg.evaluate("""() => {const ax = document.getElementById('fig-attribution')
            ._fullLayout.xaxis; return {range: ax.range, categories: ax._categories};}""")
        cbar = pg.evaluate("""() => Array.from(document.querySelectorAll(
            '#fig-attention .colorbar text')).filter(t => !/title/.test(
            t.getAttribute('class') || '')).map(t => t.textContent)""")
        word = pg.evaluate("""() => {const r = document.createRange();
            r.selectNodeContents(Array.from(document.querySelectorAll('h2')).find(
                h => h.textContent === 'Provenance'));
            return r.getBoundingClientRect().width;}""")
        b.close()
    return {"figs": figs, "bars": bars, "xticks": xticks, "xaxis": xaxis, "cbar": cbar,
            "word": word, "width": PRINT_WIDTH_PX}


def test_figures_are_drawn_at_the_page_width_and_inside_it(laid_out):
    width = laid_out["width"]
    figs = laid_out["figs"]
    assert {f["id"] for f in figs} >= {"fig-trend", "fig-rhythm", "fig-drift", "fig-path",
                                       "fig-attribution", "fig-groups", "fig-attention",
                                       "fig-map", "fig-counterfactual"}
    for f in figs:
        assert f["left"] >= 0 and f["right"] <= width + 0.5, f
        assert f["width"] >= width - 2, f  # as wide as the page's text, not narrower
        assert f["parts_left"] >= -0.5 and f["parts_right"] <= width + 0.5, f


def test_attribution_chart_holds_every_event(printed, laid_out):
    from trailscope.models.explain.types import ATTRIBUTION, POSITION

    ev = printed["data"].explanation.events
    assert len(ev) >= 10 and (ev[ATTRIBUTION] != 0).any()
    # one category per event, oldest first, and the axis range holds all of them (plotly
    # may label every other one when they are many)
    cats = laid_out["xaxis"]["categories"]
    assert [c.split(" ")[0] for c in cats] == [f"#{int(p) + 1}" for p in ev[POSITION]]
    lo, hi = laid_out["xaxis"]["range"]
    assert lo <= -0.4 and hi >= len(ev) - 0.6
    assert laid_out["xticks"] and set(laid_out["xticks"]) <= set(cats)
    # each drawn group has a bar for every event, the last (newest) one inside the page
    assert laid_out["bars"] and all(len(t) == len(ev) for t in laid_out["bars"])
    assert all(0 < t[-1] <= laid_out["width"] for t in laid_out["bars"])


def test_attention_colour_bar_ticks_are_distinct(laid_out):
    ticks = [t for t in laid_out["cbar"] if t.strip() and t != "weight"]
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
    assert [float(t) for t in ticks] == sorted(float(t) for t in ticks)


def test_pdf_pages_leave_the_margins_blank(printed):
    """Nothing is drawn in the left or right page margin (10 mm): a figure wider than the
    text would spill into it before being cut at the paper's edge."""
    assert 3 <= len(printed["pngs"]) <= 12
    assert_margins_blank(printed["pngs"])


def assert_margins_blank(pngs) -> None:
    """Every page (PNG at ``DPI``) is A4 wide, has ink, and none in its side margins."""
    from trailscope.app.reports.report import PAGE_MARGIN_MM

    margin = int(PAGE_MARGIN_MM["right"] / 25.4 * DPI) - 2  # px, less anti-aliasing slack
    for png in pngs:
        px = np.asarray(Image.open(png).convert("L"))
        assert px.shape[1] == pytest.approx(210 / 25.4 * DPI, abs=2)
        assert px[:, -margin:].min() > 245, f"{png.name}: ink in the right margin"
        assert px[:, :margin].min() > 245, f"{png.name}: ink in the left margin"
        assert px[:, margin:-margin].min() < 128, f"{png.name}: an empty page"


def test_pdf_prints_the_page_at_full_size(printed, laid_out):
    """The PDF shows the page laid out at the text width at 100 %: Chromium shrinks a page
    whose content is wider than the paper, which would print the figures and text small."""
    box = subprocess.run(["pdftotext", "-bbox", "-f", "1", "-l", "1", str(printed["pdf"]),
                          "-"], capture_output=True, text=True, check=True).stdout
    m = re.search(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">'
                  r"Provenance</word>", box)
    assert m, "the Provenance heading is not on the first page"
    printed_pt = float(m.group(2)) - float(m.group(1))
    assert printed_pt == pytest.approx(laid_out["word"] * 72 / 96, rel=0.03)


def _page_texts(pdf) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", "-nodiag", str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def test_no_page_ends_with_a_heading(printed):
    headings = {html.unescape(re.sub(r"<[^>]+>", "", h)).strip()
                for h in re.findall(r"<h[123][^>]*>(.*?)</h[123]>", printed["page"], re.S)}
    assert {"Provenance", "Per-event attribution over the timeline", "Events"} <= headings
    pages = _page_texts(printed["pdf"])
    assert len(pages) == len(printed["pngs"])
    for i, text in enumerate(pages[:-1]):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        assert lines, f"page {i + 1} has no text"
        assert lines[-1] not in headings, f"page {i + 1} ends with the heading {lines[-1]!r}"
    # and every heading made it into the PDF
    every = "\n".join(pages)
    assert all(h in every for h in headings)


def test_batch_html_shares_one_copy_of_the_libraries(printed, tmp_path):
    from playwright.sync_api import sync_playwright
    from trailscope.app.reports import report
    from trailscope.app.reports.report import CHROMIUM, CHROMIUM_ARGS

    store, data = printed["store"], printed["data"]
    users = [data.user, *store.query_df(
        f"SELECT DISTINCT {schema.USER} AS u FROM {store.table('nyc40')} WHERE "
        f"{schema.USER} <> ? ORDER BY 1 LIMIT 1", [data.user])["u"]]
    out = report.export_batch(store, "nyc40", users, tmp_path, fmt="html",
                              model_id=printed["model_id"], shared=True)
    assert len(out["written"]) == 2 and not out["failed"]
    libs = sorted(p.rsplit("/", 1)[-1] for p in out["libraries"])
    assert libs == ["deckgl.min.js", "deckmap.js", "plotly.min.js"]
    alone = report.render_html(data)
    shared_sizes = [(tmp_path / p).stat().st_size for p in out["written"]]
    lib_size = sum((tmp_path / p).stat().st_size for p in out["libraries"])
    # each shared report holds its data only; the libraries are in the folder once
    assert max(shared_sizes) < 1_000_000 < lib_size
    assert len(alone.encode()) > lib_size
    page = (tmp_path / out["written"][0]).read_text(encoding="utf-8")
    assert '<script src="plotly.min.js"></script>' in page and "Plotly.newPlot" in page
    assert page.count("<script") == 4  # the three libraries and the page's own
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = b.new_page()
        pg.goto((tmp_path / out["written"][0]).as_uri())
        pg.wait_for_function("window.trailscopeReady === true", timeout=30_000)
        n_plots = pg.locator(".fig .svg-container").count()
        pg.wait_for_selector("#deck-map canvas", timeout=30_000)
        nolib = pg.locator("#nolib").is_visible()
        for p in out["libraries"]:  # a report opened without the libraries says so
            (tmp_path / p).unlink()
        pg.goto((tmp_path / out["written"][1]).as_uri())
        pg.wait_for_function("window.trailscopeReady === true", timeout=30_000)
        nolib_missing = pg.locator("#nolib").inner_text() if pg.locator(
            "#nolib").is_visible() else ""
        b.close()
    assert n_plots == 8 and not nolib  # every figure but the map, drawn by deck.gl
    assert "plotly.min.js" in nolib_missing and "same zip" in nolib_missing


def test_batch_pdfs_share_one_printer(printed, tmp_path):
    from trailscope.app.reports import report

    store, data = printed["store"], printed["data"]
    users = [data.user, *store.query_df(
        f"SELECT DISTINCT {schema.USER} AS u FROM {store.table('nyc40')} WHERE "
        f"{schema.USER} <> ? ORDER BY 1 LIMIT 1", [data.user])["u"]]
    out = report.export_batch(store, "nyc40", [*users, "no-such-user"], tmp_path, fmt="pdf",
                              model_id=printed["model_id"])
    assert len(out["written"]) == 2 and list(out["failed"]) == ["no-such-user"]
    for user, path in zip(users, out["written"], strict=True):
        first = _page_texts(path)[0]
        assert f"for user {user}?" in first and "Provenance" in first

"""Maps drawn on a 2D canvas (``deck_spec(..., renderer="canvas")``, assets/canvasmap.js) in
headless chromium, every non-localhost request blocked: they draw without loading deck.gl,
show tooltips as text, replay, zoom and pan, and draw tile basemaps (with the offline
fallback). The Users and Models pages' small maps use this renderer (issue #13: deck.gl's
software WebGL took seconds to start there). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from playwright.sync_api import expect
from trailscope.analytics.schema import CATEGORY, ITEM, LAT, LON

from tests.app.deckmap_isolation import isolated_dash_callbacks
from tests.browser.conftest import wait_until
from tests.browser.test_deckmap_offline import (
    CHROMIUM,
    EVIL,
    Page,
    _checkins,
    _key,
    _scene,
    _serving,
)
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian chromium at /usr/bin/chromium (make browser)")


@contextmanager
def _serve(layout, tiles: bool = False):
    from dash import Dash
    from trailscope.app.deckgl.deckmap import register_deckmap

    with isolated_dash_callbacks():
        app = Dash(__name__, assets_folder=str(ROOT / "assets"),
                   assets_ignore=r"^(?!(deckmap|canvasmap)\.js$)")
        app.layout = layout
        register_deckmap(app)
        with _serving(app, tiles, None) as url:
            yield url


def _user_map():
    """One user's trips (replayed), the same paths in grey and their places, as the Users
    page draws them; plus a point whose text is markup."""
    from dash import html
    from trailscope.app.deckgl import deckmap as dm

    _, t0, span, paths, pois, view, evil_layer = _scene(8, 60)
    spec = dm.deck_spec([
        dm.path_layer(paths, color=(148, 163, 184), width_px=2),
        dm.trips_layer(paths, origin=t0, current_time=span, trail_length=30 * 86400,
                       width_px=5, color=(13, 148, 136)),
        dm.scatter_layer(pois, color_by=CATEGORY, radius_px=4, tooltip="{item_id}"),
        evil_layer,
    ], view, time=span, renderer="canvas")
    return html.Div([
        dm.DeckMap("user", spec, height=420, renderer="canvas"),
        dm.replay_controls("user", 0, span, step=span / 100, value=span, origin=t0),
    ], style={"width": "900px"}), span


def _at(page, map_id: str, layer: str) -> tuple[float, float]:
    """Page coordinates of the first object of ``layer`` where the map draws it now."""
    return page.evaluate("""([k, id]) => { const m = window.trailscopeDeck.maps[k];
        const r = m.container.getBoundingClientRect();
        const d = m.base.find(l => l.id === id).props.data[0];
        const [x, y] = m.deck.getViewports()[0].project(d.position);
        return [r.left + x, r.top + y]; }""", [_key(map_id), layer])


def test_canvas_map_draws_without_deckgl_and_keeps_tooltips_replay_zoom(browser, monkeypatch):
    monkeypatch.setenv("TRAILSCOPE_BASEMAP", "blank")
    layout, span = _user_map()
    with _serve(layout) as url:
        pg = Page(browser)
        page = pg.page
        page.goto(url)
        key = _key("user")
        page.wait_for_selector(f"[id='{key}'][data-drawn]", state="attached")
        before = pg.wait_drawn("user", "canvasmap_initial.png", min_pixels=2000)
        assert page.locator(f"[id='{key}'] canvas.trailscope-canvasmap").count() == 1
        assert page.evaluate("k => window.trailscopeDeck.maps[k].base.map(l => l.id)",
                             key) == ["paths", "trips", "points", "evil"]
        # deck.gl was neither fetched nor started for this page
        assert not any("/_trailscope/deck/" in u for u, _ in pg.served)
        assert page.evaluate("() => typeof window.deck") == "undefined"

        # the tooltip is the template filled as text: markup shows, never runs
        x, y = _at(page, "user", "evil")
        page.mouse.move(x, y)
        tip = page.locator(f"[id='{key}'] .deck-tooltip")
        expect(tip).to_be_visible()
        assert tip.inner_text() == f"{EVIL} | <b>bold?</b>"
        assert tip.locator("img, script, b").count() == 0
        assert page.evaluate("window.__pwned") is None
        page.mouse.move(5, 790)
        expect(tip).to_be_hidden()

        # replay: back to the start, the trips' trails leave the picture (grey paths stay)
        handle = page.get_by_role("slider").first
        handle.focus()
        page.keyboard.press("Home")
        wait_until(lambda: page.evaluate("k => window.trailscopeDeck.maps[k].time", key),
                   lambda t: t == 0, "the map at the replay's start", page=page)
        after = pg.pixels("user", "canvasmap_replayed.png")
        teal = np.array((13, 148, 136))
        teal_before = int((np.abs(before - teal).max(axis=2) < 40).sum())
        teal_after = int((np.abs(after - teal).max(axis=2) < 40).sum())
        assert teal_before > 500 and teal_after < teal_before / 5, (teal_before, teal_after)
        assert page.evaluate("k => window.trailscopeDeck.maps[k].builds", key) == 1

        # the zoom buttons zoom in, the scale bar follows; dragging pans
        zoom0 = page.evaluate("k => window.trailscopeDeck.maps[k].deck.getViewports()[0].zoom",
                              key)
        scale0 = page.locator(f"[id='{key}'] .trailscope-deckmap-scale").get_attribute(
            "style")
        page.get_by_role("button", name="Zoom in").click()
        zoom1 = page.evaluate("k => window.trailscopeDeck.maps[k].deck.getViewports()[0].zoom",
                              key)
        assert zoom1 == pytest.approx(zoom0 + 1)
        assert page.locator(f"[id='{key}'] .trailscope-deckmap-scale").get_attribute(
            "style") != scale0
        box = page.locator(f"[id='{key}']").bounding_box()
        lon0 = page.evaluate("k => window.trailscopeDeck.maps[k].viewState.longitude", key)
        page.mouse.move(box["x"] + 400, box["y"] + 200)
        page.mouse.down()
        page.mouse.move(box["x"] + 300, box["y"] + 200, steps=4)
        page.mouse.up()
        lon1 = page.evaluate("k => window.trailscopeDeck.maps[k].viewState.longitude", key)
        assert lon1 > lon0  # dragged left: the view moved east
        # the wheel zooms around the pointer within the maps' one zoom range (0-20)
        page.mouse.move(box["x"] + 450, box["y"] + 210)
        page.mouse.wheel(0, 30_000)
        wait_until(lambda: page.evaluate(
            "k => window.trailscopeDeck.maps[k].deck.getViewports()[0].zoom", key),
            lambda z: z == 0, "the map zoomed out to its limit", page=page)
        page.get_by_role("button", name="Zoom out").click()
        assert page.evaluate("k => window.trailscopeDeck.maps[k].viewState.zoom", key) == 0
        assert not pg.errors, f"console errors: {pg.errors}"
        assert not pg.blocked, f"requests outside localhost: {pg.blocked}"
        page.close()


def test_canvas_map_draws_tiles_and_falls_back_offline(browser, monkeypatch):
    from dash import html
    from trailscope.app.deckgl import deckmap as dm

    pts = _checkins(300).drop_duplicates(ITEM).head(20)

    def layout():
        spec = dm.deck_spec([dm.scatter_layer(pts, color=(200, 30, 30))],
                            dm.view_for(pts[LAT], pts[LON]), renderer="canvas")
        return html.Div(dm.DeckMap("tiles", spec, height=300, renderer="canvas"))

    monkeypatch.setenv("TRAILSCOPE_BASEMAP", "/tiles/{z}/{x}/{y}.png")  # a local tile server
    with _serve(layout(), tiles=True) as url:
        pg = Page(browser)
        pg.page.goto(url)
        img = pg.wait_drawn("tiles", "canvasmap_tiles.png", min_pixels=50_000)
        green = int((np.abs(img - np.array((40, 170, 60))).max(axis=2) < 10).sum())
        assert green > 0.8 * img.shape[0] * img.shape[1], "tile basemap not drawn"
        assert not pg.errors and not pg.blocked
        pg.page.close()

    # tiles that can not load (the street map offline): the blank map, and a note saying so
    monkeypatch.setenv("TRAILSCOPE_BASEMAP", "osm")
    with _serve(layout()) as url:
        pg = Page(browser)
        pg.page.goto(url)
        note = pg.page.locator(f"[id='{_key('tiles')}'] .trailscope-deckmap-note")
        expect(note).to_have_text("Street map unavailable offline: showing a blank map.")
        img = pg.wait_drawn("tiles", "canvasmap_offline.png", min_pixels=100)
        red = int((np.abs(img - np.array((200, 30, 30))).max(axis=2) < 30).sum())
        assert red > 100, "the points are not drawn on the blank map"
        assert pg.blocked  # the tile requests, refused as offline
        pg.page.close()

"""The deck.gl map renders in headless chromium with every non-localhost request blocked.

A minimal Dash app (real NYC check-ins: heat + scatter + trips on a blank basemap, plus a second
map without replay) runs in a background thread; the test checks pixels, console errors,
tooltip escaping and that moving the replay slider changes the picture. Screenshots go to
test-artifacts/. Chromium's --disable-gpu leaves WebGL on SwiftShader (software), no extra flag.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect
from trailscope.analytics.schema import CATEGORY, ITEM, LAT, LON, TS, USER

from tests.app.deckmap_isolation import isolated_dash_callbacks
from tests.browser.conftest import WAIT_MS, wait_until
from tests.conftest import NYC, ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
BACKGROUND = (245, 246, 248)  # DeckMap container background (#f5f6f8)
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian chromium at /usr/bin/chromium (make browser)")


def _key(map_id: str) -> str:
    """DOM id Dash gives the canvas div of DeckMap(map_id) (its dict id, stringified)."""
    return json.dumps({"id": map_id, "type": "trailscope-deck-canvas"}, separators=(",", ":"),
                      sort_keys=True)


def _checkins(n: int = 4000) -> pd.DataFrame:
    raw = pd.read_csv(NYC, nrows=n)
    return pd.DataFrame({USER: raw["user_id"].astype(str), ITEM: raw["stan_poi_id"].astype(str),
                         TS: pd.to_datetime(raw["utc_time_minute"]), LAT: raw["latitude"],
                         LON: raw["longitude"],
                         CATEGORY: raw["venue_category"].fillna("unknown")})


def _scene(n_paths: int, n_pois: int):
    """NYC check-ins as a replayed map draws them: (events, origin, span in seconds, the
    ``n_paths`` longest paths, ``n_pois`` places, the view) plus a layer with one point in the
    view's centre whose texts are markup."""
    from trailscope.app.deckgl import deckmap as dm

    ev = _checkins()
    t0 = ev[TS].min()
    span = float((ev[TS].max() - t0).total_seconds())
    paths = dm.paths_from_events(ev).nlargest(n_paths, "n_points")
    pois = ev.drop_duplicates(ITEM).head(n_pois)
    view = dm.view_for(ev[LAT], ev[LON], width=900, height=420, quantile=0.02)
    evil = pd.DataFrame({LAT: [view["latitude"]], LON: [view["longitude"]], ITEM: [EVIL],
                         CATEGORY: ["<b>bold?</b>"]})
    evil_layer = dm.scatter_layer(evil, id="evil", color=(0, 0, 0), radius_px=9,
                                  tooltip="{item_id} | {category}")
    return ev, t0, span, paths, pois, view, evil_layer


def _layout():
    from dash import html
    from trailscope.app.deckgl import deckmap as dm

    ev, t0, span, paths, pois, view, evil_layer = _scene(6, 40)
    main = dm.deck_spec([
        dm.heat_layer(ev, time=TS, window=30 * 86400, origin=t0, radius_pixels=25),
        dm.trips_layer(paths, origin=t0, current_time=0.3 * span, trail_length=30 * 86400,
                       width_px=5),
        dm.scatter_layer(pois, color_by=CATEGORY, radius_px=4, tooltip="{item_id}\n{category}"),
        evil_layer,
    ], view)
    small = dm.deck_spec([dm.scatter_layer(pois, color=(200, 30, 30), radius_px=6)],
                         dm.view_for(pois[LAT], pois[LON], width=900, height=160))
    return html.Div([
        dm.DeckMap("replay", main, height=420),
        dm.replay_controls("replay", 0, span, step=span / 100, value=0.3 * span, origin=t0),
        dm.DeckMap("static", small, height=160),
    ], style={"width": "900px"}), span, t0


@contextmanager
def _serve(layout, tiles: bool = False, pages: dict[str, str] | None = None) -> Iterator[str]:
    from dash import Dash
    from trailscope.app.deckgl.deckmap import register_deckmap

    with isolated_dash_callbacks():
        app = Dash(__name__, assets_folder=str(ROOT / "assets"),
                   assets_ignore=r"^(?!deckmap\.js$)")
        app.layout = layout
        register_deckmap(app)
        with _serving(app, tiles, pages) as url:
            yield url


@contextmanager
def _serving(app, tiles: bool, pages: dict[str, str] | None) -> Iterator[str]:
    from werkzeug.serving import make_server

    if tiles:
        from flask import Response
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (256, 256), (40, 170, 60)).save(buf, format="PNG")
        tile_png = buf.getvalue()
        app.server.add_url_rule("/tiles/<int:z>/<int:x>/<int:y>.png", "tiles",
                                lambda z, x, y: Response(tile_png, mimetype="image/png"))
    for i, (path, text) in enumerate((pages or {}).items()):
        app.server.add_url_rule(path, f"page{i}", lambda text=text: text)
    srv = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}/"
    finally:
        srv.shutdown()
        thread.join(5)


class Page:
    """A chromium page that blocks non-localhost requests and records console errors."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1000, "height": 800})
        self.page.set_default_timeout(WAIT_MS)
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.served: list[tuple[str, int]] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("response", lambda r: self.served.append((r.url, r.status)))
        self.page.route("**/*", self._route)

    def _route(self, route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def pixels(self, map_id: str, name: str) -> np.ndarray:
        from PIL import Image

        ARTIFACTS.mkdir(exist_ok=True)
        png = self.page.locator(f"[id='{_key(map_id)}']").screenshot(path=str(ARTIFACTS / name))
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)

    def wait_drawn(self, map_id: str, name: str, min_pixels: int = 300) -> np.ndarray:
        """Screenshot until the map has ``min_pixels`` non-background pixels."""
        self.page.wait_for_function(
            "k => window.trailscopeDeck && window.trailscopeDeck.maps[k] && "
            "window.trailscopeDeck.maps[k].base", arg=_key(map_id))
        return wait_until(lambda: self.pixels(map_id, name),
                          lambda img: drawn(img) >= min_pixels,
                          f"map {map_id} draws {min_pixels} pixels")


def drawn(img: np.ndarray) -> int:
    """Number of pixels that differ from the blank map background."""
    return int((np.abs(img - np.array(BACKGROUND)).max(axis=2) > 12).sum())


# `browser` is the session-wide chromium of tests/browser/conftest.py: Playwright's sync API
# allows one running instance per thread, so modules must not start their own.


def test_map_renders_offline_with_escaped_tooltips_and_replay(browser, monkeypatch):
    monkeypatch.setenv("TRAILSCOPE_BASEMAP", "blank")
    layout, span, layout_t0 = _layout()
    with _serve(layout) as url:
        pg = Page(browser)
        page = pg.page
        page.goto(url)
        before = pg.wait_drawn("replay", "deckmap_initial.png")
        assert page.locator(f"[id='{_key('replay')}'] canvas").count() == 1
        assert drawn(before) > 2000, "the replay map stayed blank"
        small = pg.wait_drawn("static", "deckmap_static.png", min_pixels=100)
        assert drawn(small) > 100

        renderer = page.evaluate("""() => { const g = document.createElement('canvas')
            .getContext('webgl2'); return g ? g.getParameter(g.VERSION) : null; }""")
        assert renderer and "WebGL 2" in renderer
        assert any(u.endswith("/_trailscope/deck/deckgl.js") and s == 200 for u, s in pg.served)
        assert page.evaluate("k => window.trailscopeDeck.maps[k].base.length",
                             _key("replay")) == 4

        # tooltip: hover the injected point; its markup must show as text, never run
        tip = page.locator(".deck-tooltip").first

        def hover_evil() -> bool:
            """True once the tooltip shows; else hover where the point is drawn now."""
            if tip.is_visible():
                return True
            x, y = page.evaluate("""k => { const m = window.trailscopeDeck.maps[k];
                const r = m.container.getBoundingClientRect();
                const d = m.base.find(l => l.id === 'evil').props.data[0];
                const [px, py] = m.deck.getViewports()[0].project(d.position);
                return [r.left + px, r.top + py]; }""", _key("replay"))
            page.mouse.move(5, 5)
            page.mouse.move(x, y)
            return False

        wait_until(hover_evil, bool, "the tooltip of the injected point", every_s=0.5,
                   page=page)
        page.screenshot(path=str(ARTIFACTS / "deckmap_tooltip.png"))
        assert tip.inner_text() == f"{EVIL} | <b>bold?</b>"
        assert tip.locator("img, script, b").count() == 0
        assert page.evaluate("window.__pwned") is None
        page.mouse.move(5, 790)

        # replay: jump the slider to its end, the trips and the heat window move
        handle = page.get_by_role("slider").first
        assert float(handle.get_attribute("aria-valuenow")) == pytest.approx(0.3 * span, rel=1e-3)
        handle.focus()
        page.keyboard.press("End")
        wait_until(lambda: float(handle.get_attribute("aria-valuenow")),
                   lambda v: v == pytest.approx(span, rel=1e-3), "the slider at its end",
                   page=page)
        end_label = (layout_t0 + pd.Timedelta(seconds=span)).strftime("%Y-%m-%d %H:%M")
        expect(page.locator(".trailscope-replay-label")).to_have_text(end_label)
        after = wait_until(
            lambda: pg.pixels("replay", "deckmap_replayed.png"),
            lambda img: int((np.abs(img - before).max(axis=2) > 30).sum()) > 1000,
            "the map redraws for the new time")
        changed = int((np.abs(after - before).max(axis=2) > 30).sum())
        assert changed > 1000, f"moving the slider changed only {changed} pixels"
        # the time change re-used the converted layers (no re-conversion of the data)
        assert page.evaluate("k => window.trailscopeDeck.maps[k].builds", _key("replay")) == 1

        # play button advances the slider on its own, and pauses again
        page.keyboard.press("Home")
        # dispatch_event: a real click event, without waiting for the busy page to settle
        page.get_by_role("button", name="Play").dispatch_event("click")
        page.wait_for_function(
            "() => Number(document.querySelector('[role=slider]')"
            ".getAttribute('aria-valuenow')) > 0")
        page.get_by_role("button", name="Pause").dispatch_event("click")
        page.get_by_role("button", name="Play").wait_for()
        assert not pg.errors, f"console errors: {pg.errors}"
        assert not pg.blocked, f"requests outside localhost: {pg.blocked}"
        page.close()


def test_configured_tile_basemap_draws_under_layers(browser, monkeypatch):
    # A local tile server stands in for Carto/OSM: the tile code path without internet.
    monkeypatch.setenv("TRAILSCOPE_BASEMAP", "/tiles/{z}/{x}/{y}.png")
    from dash import html
    from trailscope.app.deckgl import deckmap as dm

    pts = _checkins(300).drop_duplicates(ITEM).head(20)
    spec = dm.deck_spec([dm.scatter_layer(pts, color=(200, 30, 30))],
                        dm.view_for(pts[LAT], pts[LON]))
    assert spec["basemap"]["url"] == "/tiles/{z}/{x}/{y}.png"
    with _serve(html.Div(dm.DeckMap("tiles", spec, height=300)), tiles=True) as url:
        pg = Page(browser)
        pg.page.goto(url)
        img = pg.wait_drawn("tiles", "deckmap_tiles.png", min_pixels=50_000)
        green = int((np.abs(img - np.array((40, 170, 60))).max(axis=2) < 10).sum())
        assert green > 0.8 * img.shape[0] * img.shape[1], "tile basemap not drawn"
        assert any("/tiles/" in u and s == 200 for u, s in pg.served)
        # view_for assumed 800x500; the browser refit the bounds to this 300 px tall map
        xs, ys, w, h = pg.page.evaluate("""k => { const m = window.trailscopeDeck.maps[k];
            const v = m.deck.getViewports()[0];
            const p = m.base[0].props.data.map(d => v.project(d.position));
            return [p.map(q => q[0]), p.map(q => q[1]), v.width, v.height]; }""", _key("tiles"))
        assert h == 300 and len(xs) == len(pts)
        assert min(xs) >= 0 and max(xs) <= w and min(ys) >= 0 and max(ys) <= h
        assert max(ys) - min(ys) > 0.8 * h  # and fills the height
        assert not pg.errors and not pg.blocked
        pg.page.close()


def _hexagon(lat: float, lon: float, r: float = 0.004) -> list[list[float]]:
    return [[lon + r * np.cos(a), lat + r * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 7)]


def test_every_layer_builder_draws_in_a_standalone_page(browser, monkeypatch):
    """deck_html page (no Dash callbacks): h3 + polygon hexes, zones, paths, arcs all pick."""
    monkeypatch.setenv("TRAILSCOPE_BASEMAP", "blank")
    from dash import html
    from trailscope.app.deckgl import deckmap as dm

    ev = _checkins(1500)
    view = dm.view_for(ev[LAT], ev[LON], quantile=0.05)
    (west, south), (east, north) = view["fit"]["bounds"]
    mid_lat, mid_lon = (south + north) / 2, (west + east) / 2
    # H3 res-8 cells around 882a100d25fffff (Manhattan, 40.744 N -73.998 E), from h3.grid_disk
    cells = ["882a100d21fffff", "882a100d25fffff", "882a100d27fffff", "882a100d2dfffff",
             "882a107219fffff", "882a10721bfffff", "882a107253fffff"]
    grid = ev.assign(cell_lat=ev[LAT].round(2), cell_lon=ev[LON].round(2)).groupby(
        ["cell_lat", "cell_lon"]).size().rename("count").reset_index().nlargest(15, "count")
    grid["polygon"] = [_hexagon(a, o) for a, o in zip(grid["cell_lat"], grid["cell_lon"],
                                                      strict=True)]
    box = [[west, south], [mid_lon, south], [mid_lon, mid_lat], [west, mid_lat]]
    zones = pd.DataFrame({"polygon": [box, [[mid_lon, mid_lat], [east, mid_lat],
                                            [east, north], [mid_lon, north]]],
                          "trend": ["emerging", "declining"], "zone": ["sw", "ne"]})
    paths = dm.paths_from_events(ev).nlargest(3, "n_points")
    hops = ev[ev[USER] == paths[USER].iloc[0]].sort_values(TS)
    flows = pd.DataFrame({"a_lat": hops[LAT].to_numpy()[:-1], "a_lon": hops[LON].to_numpy()[:-1],
                          "b_lat": hops[LAT].to_numpy()[1:], "b_lon": hops[LON].to_numpy()[1:]})
    layers = [
        dm.zone_layer(zones, tooltip="{zone}"),
        dm.hex_layer(pd.DataFrame({"h3": cells, "count": range(1, 8)}), hex="h3"),
        dm.hex_layer(grid, polygon="polygon", id="grid"),
        dm.path_layer(paths, tooltip="{user_id}"),
        dm.arc_layer(flows.head(20), "a_lat", "a_lon", "b_lat", "b_lon", tooltip="{a_lat}"),
    ]
    page_html = dm.deck_html(dm.deck_spec(layers, view), height=500)
    bad_html = dm.deck_html(dm.deck_spec([{"@@type": "NoSuchLayer", "id": "x", "data": []}],
                                         view))
    with _serve(html.Div(), pages={"/standalone": page_html, "/bad": bad_html}) as url:
        pg = Page(browser)
        pg.page.goto(url + "standalone")
        pg.page.wait_for_function("() => window.trailscopeDeck && "
                                  "window.trailscopeDeck.maps.map && "
                                  "window.trailscopeDeck.maps.map.base")
        # every layer has something on screen once the map has drawn
        picked = wait_until(lambda: pg.page.evaluate("""() => {
            const m = window.trailscopeDeck.maps.map; const v = m.deck.getViewports()[0];
            return m.base.map(l => [l.id, m.deck.pickObjects({x: 0, y: 0, width: v.width,
                height: v.height, layerIds: [l.id], maxObjects: 50}).length]); }"""),
            lambda got: all(n > 0 for _, n in got), "every layer drawn", page=pg.page)
        pg.page.locator("#map").screenshot(path=str(ARTIFACTS / "deckmap_standalone.png"))
        assert dict(picked).keys() == {"zones", "hex", "grid", "paths", "flows"}
        assert all(n > 0 for _, n in picked), f"layers with nothing on screen: {picked}"
        assert not pg.errors and not pg.blocked
        # a broken spec says so inside the map, in words for users, instead of staying blank;
        # the technical reason goes to the console
        pg.page.goto(url + "bad")
        msg = pg.page.locator("#map .trailscope-deckmap-message")
        msg.wait_for()
        assert msg.inner_text().startswith("This map could not be drawn. Reload the page")
        assert "NoSuchLayer" not in msg.inner_text()
        assert any('layer "x" has unknown type "NoSuchLayer"' in e for e in pg.errors)
        pg.page.close()


def test_street_map_falls_back_to_blank_with_a_note_when_tiles_fail(browser, monkeypatch):
    """The default street map, its tile host unreachable (every non-localhost request is
    aborted): the layers draw on the blank basemap and the map says why."""
    monkeypatch.delenv("TRAILSCOPE_BASEMAP", raising=False)
    from dash import html
    from trailscope.app.deckgl import deckmap as dm

    pts = _checkins(300).drop_duplicates(ITEM).head(20)
    spec = dm.deck_spec([dm.scatter_layer(pts, color=(200, 30, 30), radius_px=6)],
                        dm.view_for(pts[LAT], pts[LON]))
    assert "cartocdn.com" in spec["basemap"]["url"]
    with _serve(html.Div(dm.DeckMap("street", spec, height=300))) as url:
        pg = Page(browser)
        pg.page.goto(url)
        note = pg.page.locator(f"[id='{_key('street')}'] .trailscope-deckmap-note")
        note.wait_for()
        assert note.inner_text() == "Street map unavailable offline: showing a blank map."
        img = pg.wait_drawn("street", "deckmap_street_fallback.png", min_pixels=100)
        red = int((np.abs(img - np.array((200, 30, 30))).max(axis=2) < 40).sum())
        assert red > 100, "the layers did not draw on the blank basemap"
        assert pg.page.locator(".trailscope-deckmap-attribution").count() == 0
        assert any("cartocdn.com" in u for u in pg.blocked)
        # only the aborted tile requests complain (the browser's own network log)
        assert all("Failed to load resource" in e for e in pg.errors), pg.errors
        pg.page.close()

"""Offline deck.gl maps for Dash pages: spec builders, the ``DeckMap`` component, replay controls.

How a page uses it (the page callback returns a JSON spec; the browser draws it)::

    from ..deckgl.deckmap import (DeckMap, deck_spec, heat_layer, paths_from_events,
                                  replay_controls, spec_id, trips_layer, view_for)

    layout = html.Div([DeckMap("users-map", height=520),
                       replay_controls("users-map", start=0, end=span_s, origin=t0)])

    @callback(Output(spec_id("users-map"), "data"), Input(ids.USER_PICK, "value"))
    def draw(user):
        ev = services.user_events(user)                       # tidy events frame
        t0 = ev[TS].min()
        trips = paths_from_events(ev)                         # one row per user path
        return deck_spec([heat_layer(ev, time=TS, window=86400, origin=t0),
                          trips_layer(trips, origin=t0, trail_length=6 * 3600)],
                         view_for(ev[LAT], ev[LON]), tooltip=None)

Replay pattern: ``replay_controls(map_id, start, end)`` gives a Play/Pause button, a
``dcc.Interval`` and a ``dcc.Slider`` whose value is seconds since the layers' ``origin``.
Clientside callbacks (pattern-matching ids, see ``register_deckmap``) toggle the interval,
advance the slider and copy its value into the map's time store, where ``assets/deckmap.js``
moves every TripsLayer's ``currentTime`` and re-filters every heat layer built with ``time=`` /
``window=`` -- no server round trip per frame. Pair ``replay_controls(X)`` with a
``DeckMap(X)``. A server callback may also read ``replay_ids(X)["slider"]`` or write
``time_id(X)``.

Set-up: app/main.py calls ``register_deckmap(app)`` once (bundle route + clientside callbacks)
and the Dash app's ``assets_folder`` must be the repository's ``assets/`` (for deckmap.js).
``DeckMap`` is a ``dcc.Store`` (the spec) plus a div; ``assets/deckmap.js`` loads deck.gl from
this app, never a CDN, and draws with software WebGL if there is no GPU. The basemap is
CARTO's light street map (``DEFAULT_BASEMAP``) unless ``TRAILSCOPE_BASEMAP`` names another
(``osm``, ``carto-light``, ``carto-dark`` or a ``.../{z}/{x}/{y}.png`` URL, possibly a local
tile server) or ``blank``/``none``; when the browser can not load its tiles (offline), the map
falls back to the blank basemap and says so on the map. Tests and CI (no internet) set
``TRAILSCOPE_BASEMAP=blank``. Each map has zoom buttons and a scale bar. Tooltips are text
templates (``"{item_id}: {score}"``) shown with ``innerText``; HTML tooltips are refused.
"""

from __future__ import annotations

import json
import math
import os
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from dash import MATCH, ClientsideFunction, Dash, Input, Output, State, dcc, html

from .assets import register_deck_routes
from .layers import (
    arc_layer,
    heat_layer,
    hex_layer,
    path_layer,
    paths_from_events,
    scatter_layer,
    seconds_since,
    text_layer,
    tooltip_columns,
    trips_layer,
    zone_layer,
)

__all__ = [
    "BASEMAPS", "DEFAULT_BASEMAP", "DeckMap", "arc_layer", "basemap_from_env", "deck_html",
    "deck_spec",
    "heat_layer", "hex_layer", "path_layer", "paths_from_events", "register_deckmap",
    "replay_controls",
    "replay_ids", "scatter_layer", "seconds_since", "spec_id", "status_id", "text_layer",
    "time_id",
    "tooltip_columns", "trips_layer", "view_for", "zone_layer",
]

ENV_BASEMAP = "TRAILSCOPE_BASEMAP"
#: Named raster tile basemaps; only fetched when configured (they need internet).
BASEMAPS: dict[str, dict[str, str]] = {
    "osm": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            "attribution": "\u00a9 OpenStreetMap contributors"},
    "carto-light": {"url": "https://basemaps.cartocdn.com/light_all/{z}/{x}/{y}.png",
                    "attribution": "\u00a9 OpenStreetMap contributors \u00a9 CARTO"},
    "carto-dark": {"url": "https://basemaps.cartocdn.com/dark_all/{z}/{x}/{y}.png",
                   "attribution": "\u00a9 OpenStreetMap contributors \u00a9 CARTO"},
}
_BLANK = {"none", "blank", "off"}
#: The basemap when ``$TRAILSCOPE_BASEMAP`` is unset or empty (as kepler.gl: a street map).
DEFAULT_BASEMAP = "carto-light"

# Pattern-matching id types; the "id" key is the map id given to DeckMap.
_SPEC, _TIME, _CANVAS, _STATUS, _FRAME = (
    "trailscope-deck-spec", "trailscope-deck-time", "trailscope-deck-canvas",
    "trailscope-deck-status", "trailscope-deck-frame")
_PLAY, _TICK, _SLIDER, _LABEL, _ORIGIN = (
    "trailscope-replay-play", "trailscope-replay-tick", "trailscope-replay-slider",
    "trailscope-replay-label", "trailscope-replay-origin")


def spec_id(map_id: str) -> dict[str, str]:
    """Id of the store holding a map's spec: ``Output(spec_id("m"), "data")`` redraws map m."""
    return {"type": _SPEC, "id": map_id}


def time_id(map_id: str) -> dict[str, str]:
    """Id of the store holding a map's replay time (seconds since the layers' origin)."""
    return {"type": _TIME, "id": map_id}


def status_id(map_id: str) -> dict[str, str]:
    """Id of the store the browser fills with ``{"ok", "layers", "error", "spec"}`` after
    drawing a new spec (``spec``: false when it was empty). Replay frames do not change it, so
    a callback may take it as Input to run once the map has drawn (the Map page's zones)."""
    return {"type": _STATUS, "id": map_id}


def replay_ids(map_id: str) -> dict[str, dict[str, str]]:
    """Ids of the replay components: ``play`` (button), ``tick`` (interval), ``slider``,
    ``label`` (current time as text) and ``origin`` (store with the origin, ISO text)."""
    return {kind: {"type": t, "id": map_id} for kind, t in (
        ("play", _PLAY), ("tick", _TICK), ("slider", _SLIDER), ("label", _LABEL),
        ("origin", _ORIGIN))}


# -- spec ---------------------------------------------------------------------------------
def basemap_from_env(value: str | None = None) -> dict[str, str] | None:
    """Resolve a basemap name or tile URL (default: ``$TRAILSCOPE_BASEMAP``, else
    ``DEFAULT_BASEMAP``); None = blank."""
    raw = (os.environ.get(ENV_BASEMAP, "") if value is None else value).strip()
    raw = raw or DEFAULT_BASEMAP
    if raw.lower() in _BLANK:
        return None
    if raw.lower() in BASEMAPS:
        return dict(BASEMAPS[raw.lower()])
    if all(k in raw for k in ("{z}", "{x}", "{y}")):
        return {"url": raw, "attribution": ""}
    raise ValueError(f"{ENV_BASEMAP}={raw!r} is not a known basemap; use one of "
                     f"{sorted(BASEMAPS)}, 'none', or a tile URL containing {{z}}/{{x}}/{{y}}")


#: Renderers a spec may ask for: deck.gl (WebGL), or a 2D canvas (assets/canvasmap.js) for
#: small maps of these layer types, which draws at once where deck.gl's software WebGL takes
#: seconds to start (no GPU: headless browsers, many VMs).
RENDERERS = ("deck", "canvas")
CANVAS_LAYERS = frozenset({"ScatterplotLayer", "PathLayer", "TripsLayer", "TextLayer"})


def deck_spec(layers: list[dict], view: dict, tooltip: dict | None = None, *,
              basemap: str | None = None, time: float | None = None,
              renderer: str = "deck") -> dict:
    """Assemble a JSON-safe map spec from layer dicts (``*_layer`` builders) and a view.

    ``tooltip`` is the default text template for pickable layers without their own, as
    ``{"text": "{col} ..."}``; ``{"html": ...}`` is refused (user strings would become markup).
    ``basemap`` overrides ``$TRAILSCOPE_BASEMAP`` (``"none"`` forces a blank map).
    ``time`` is the replay time (seconds since the layers' origin) the map first draws at,
    so it need not wait for the replay controls (their slider's value, usually).
    ``renderer="canvas"`` draws the map on a 2D canvas instead of deck.gl (``CANVAS_LAYERS``
    only; pair it with ``DeckMap(..., renderer="canvas")`` so the page never loads deck.gl).
    """
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, not {renderer!r}")
    if tooltip is not None:
        if "html" in tooltip or not isinstance(tooltip.get("text"), str):
            raise ValueError("tooltip must be {'text': 'template with {column} fields'}; HTML "
                             "tooltips are not supported because data strings are untrusted")
    missing = [k for k in ("latitude", "longitude", "zoom") if k not in view]
    if missing:
        raise ValueError(f"view lacks {missing}; build it with view_for(lat, lon)")
    seen: set[str] = set()
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or "@@type" not in layer or "id" not in layer:
            raise ValueError(f"layer {i} is not a layer dict; build layers with the *_layer "
                             f"functions of app/deckgl/deckmap.py")
        if layer["id"] in seen:
            raise ValueError(f"two layers share id {layer['id']!r}; pass id=... to tell apart")
        seen.add(layer["id"])
        if renderer == "canvas" and layer["@@type"] not in CANVAS_LAYERS:
            raise ValueError(f"layer {layer['id']!r} ({layer['@@type']}) can not be drawn on a "
                             f"canvas; use renderer='deck' or only {sorted(CANVAS_LAYERS)}")
    spec = {"initialViewState": {"pitch": 0, "bearing": 0, **view},
            "views": [{"@@type": "MapView", "controller": True}],
            "layers": layers, "tooltip": tooltip, "basemap": basemap_from_env(basemap),
            "time": None if time is None else float(time)}
    if renderer != "deck":
        spec["renderer"] = renderer
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"map spec is not JSON-safe ({exc}); layer data must be plain "
                         f"numbers/strings -- build layers with the *_layer functions") from exc
    return spec


def _merc_y(lat_deg: float) -> float:
    lat = math.radians(max(min(lat_deg, 85.05), -85.05))
    return math.log(math.tan(math.pi / 4 + lat / 2))


def view_for(lat: Sequence[float] | pd.Series, lon: Sequence[float] | pd.Series, *,
             width: int = 800, height: int = 500, padding: float = 0.08,
             quantile: float | None = None, min_zoom: float = 1.0, max_zoom: float = 15.0,
             pitch: float = 0.0) -> dict[str, Any]:
    """Centre and zoom (Web Mercator, deck.gl's 512 px tiles) fitting the points' bounding box
    into a ``width`` x ``height`` px map with ``padding`` (fraction) on each side.

    The view also carries ``fit`` (the bounding box), which the browser uses to refit the
    view to the map's actual size, so ``width``/``height`` only matter as a first guess.

    ``quantile=0.01`` trims 1 % outliers on each side before fitting."""
    la = pd.to_numeric(pd.Series(np.asarray(lat)), errors="coerce")
    lo = pd.to_numeric(pd.Series(np.asarray(lon)), errors="coerce")
    ok = (la.between(-90, 90) & lo.between(-180, 180)).fillna(False).to_numpy(dtype=bool)
    if not ok.any():
        raise ValueError("view_for: no valid coordinates (lat in [-90, 90], lon in "
                         "[-180, 180]); does the dataset have lat/lon columns?")
    la, lo = la[ok], lo[ok]
    q = (quantile, 1 - quantile) if quantile else (0.0, 1.0)
    south, north = (float(v) for v in la.quantile(list(q)))
    west, east = (float(v) for v in lo.quantile(list(q)))
    y_mid = (_merc_y(south) + _merc_y(north)) / 2
    center_lat = math.degrees(2 * math.atan(math.exp(y_mid)) - math.pi / 2)
    frac_x = (east - west) / 360.0  # share of the world's width
    frac_y = (_merc_y(north) - _merc_y(south)) / (2 * math.pi)
    usable_w, usable_h = width * (1 - 2 * padding), height * (1 - 2 * padding)
    zooms = [math.log2(usable_w / (512 * frac_x)) if frac_x > 0 else max_zoom,
             math.log2(usable_h / (512 * frac_y)) if frac_y > 0 else max_zoom]
    zoom = min(max(min(zooms), min_zoom), max_zoom)
    return {"latitude": round(center_lat, 6), "longitude": round((west + east) / 2, 6),
            "zoom": round(zoom, 3), "pitch": float(pitch), "bearing": 0.0,
            # the browser refits these bounds to the map's real size (assets/deckmap.js)
            "fit": {"bounds": [[west, south], [east, north]], "padding": float(padding),
                    "minZoom": float(min_zoom), "maxZoom": float(max_zoom)}}


# -- components ---------------------------------------------------------------------------
def DeckMap(id: str, spec: dict | None = None, height: int | str = 480,  # noqa: N802
            renderer: str = "deck") -> html.Div:
    """A map: put it in a layout, then send specs to ``spec_id(id)`` from a callback.

    ``renderer="canvas"`` says the map's specs are canvas ones (``deck_spec(...,
    renderer="canvas")``), so the page does not preload deck.gl for it."""
    if not isinstance(id, str) or not id:
        raise ValueError("DeckMap needs a non-empty string id")
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, not {renderer!r}")
    marks = {"data-renderer": renderer} if renderer != "deck" else {}
    h = f"{height}px" if isinstance(height, (int, float)) else height
    return html.Div([
        dcc.Store(id=spec_id(id), data=spec),
        dcc.Store(id=time_id(id), data=None),
        dcc.Store(id=status_id(id), data=None),
        html.Div(html.Div("Loading map\u2026",
                          className="trailscope-deckmap-placeholder",
                          style={"position": "absolute", "left": "8px", "top": "8px",
                                 "font": "12px sans-serif", "color": "#666"}),
                 id={"type": _CANVAS, "id": id}, className="trailscope-deckmap", **marks,
                 style={"position": "relative", "width": "100%", "height": h,
                        "background": "#f5f6f8", "overflow": "hidden"}),
        dcc.Store(id={"type": _FRAME, "id": id}, data=None),  # replay frames' status
    ], className="trailscope-deckmap-wrap")


def _marks(start: float, end: float, origin: Any, n: int = 4) -> dict[float, str]:
    fmt = "%Y-%m-%d" if end - start > 2 * 86400 else "%m-%d %H:%M"
    marks: dict[float, str] = {}
    for v in np.linspace(start, end, n):
        if origin is not None and not isinstance(origin, (int, float)):
            label = (pd.Timestamp(origin) + pd.Timedelta(seconds=float(v))).strftime(fmt)
        else:
            label = f"{v / 3600:.1f} h"
        marks[round(float(v), 3)] = label
    return marks


def replay_controls(map_id: str, start: float, end: float, step: float | None = None, *,
                    origin: Any = None, interval_ms: int = 250,
                    value: float | None = None) -> html.Div:
    """Play/Pause button + ``dcc.Interval`` + ``dcc.Slider`` (seconds since ``origin``) that
    replay the map ``map_id`` in the browser. ``origin`` only labels the slider marks."""
    if not end > start:
        raise ValueError(f"replay_controls: end ({end}) must be after start ({start})")
    step = float(step) if step else (end - start) / 200.0
    rid = replay_ids(map_id)
    has_time = origin is not None and not isinstance(origin, (int, float))
    return html.Div([
        html.Button("Play", id=rid["play"], n_clicks=0, className="trailscope-replay-play"),
        dcc.Interval(id=rid["tick"], interval=int(interval_ms), disabled=True, n_intervals=0),
        dcc.Store(id=rid["origin"], data=pd.Timestamp(origin).isoformat() if has_time else None),
        html.Div(dcc.Slider(id=rid["slider"], min=float(start), max=float(end), step=step,
                            value=float(start if value is None else value),
                            marks=_marks(float(start), float(end), origin), updatemode="drag",
                            allow_direct_input=False),
                 style={"flex": "1", "minWidth": "200px"}),
        html.Span(id=rid["label"], className="trailscope-replay-label",
                  style={"minWidth": "9em", "fontVariantNumeric": "tabular-nums"}),
    ], className="trailscope-replay", style={"display": "flex", "alignItems": "center",
                                              "gap": "12px"})


def deck_html(spec: dict, *, height: int = 480, bundle_js: str | None = None,
              deckmap_js: str | None = None, bundle_url: str = "/_trailscope/deck/deckgl.js",
              deckmap_url: str = "/assets/deckmap.js") -> str:
    """A standalone HTML page drawing ``spec`` (for exported reports or an ``html.Iframe``).

    Give ``bundle_js``/``deckmap_js`` (file texts) to inline them for a self-contained offline
    file, else the page loads them from the given URLs of a running TrailScope."""
    # "<", ">" and "&" only occur inside JSON strings, where \u escapes mean the same text;
    # escaping them keeps "</script>" or "<!--" in user data from ending the script block.
    payload = (json.dumps(spec, allow_nan=False).replace("<", "\\u003c")
               .replace(">", "\\u003e").replace("&", "\\u0026"))

    def script(text: str | None, url: str) -> str:
        if text is None:
            return f'<script src="{url}"></script>'
        return "<script>" + text.replace("</script", "<\\/script") + "</script>"

    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>TrailScope map</title>"
            + script(bundle_js, bundle_url) + script(deckmap_js, deckmap_url)
            + "</head><body style='margin:0'>"
            + f"<div id='map' style='position:relative;width:100%;height:{int(height)}px;"
            + "background:#f5f6f8'></div><script>"
            + f"window.trailscopeDeck.render(document.getElementById('map'), {payload}, null);"
            + "</script></body></html>")


# -- wiring -------------------------------------------------------------------------------
_WIRED: weakref.WeakSet[Dash] = weakref.WeakSet()


def register_deckmap(app: Dash) -> None:
    """Wire maps into a Dash app (call once in app/main.py; repeat calls are no-ops).

    Serves the deck.gl bundle from the local pydeck install and adds the clientside
    callbacks (functions in assets/deckmap.js) that draw ``DeckMap`` specs and drive
    ``replay_controls``. They are registered on ``app`` rather than globally because Dash hands
    global callbacks to the first app only, which breaks a second app in tests.
    """
    if app in _WIRED:
        return
    register_deck_routes(app.server, prefix=app.config.routes_pathname_prefix or "/")
    # A new spec draws at once (with its own "time", else the map's current one); the replay
    # time redraws on its own: a spec never waits for the replay controls to load.
    app.clientside_callback(
        ClientsideFunction(namespace="trailscope", function_name="renderDeck"),
        Output({"type": _STATUS, "id": MATCH}, "data"),
        Input({"type": _SPEC, "id": MATCH}, "data"),
        State({"type": _TIME, "id": MATCH}, "data"),
        State({"type": _CANVAS, "id": MATCH}, "id"),
    )
    app.clientside_callback(
        ClientsideFunction(namespace="trailscope", function_name="renderTime"),
        Output({"type": _FRAME, "id": MATCH}, "data"),
        Input({"type": _TIME, "id": MATCH}, "data"),
        State({"type": _CANVAS, "id": MATCH}, "id"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="trailscope", function_name="replayToggle"),
        Output({"type": _TICK, "id": MATCH}, "disabled"),
        Output({"type": _PLAY, "id": MATCH}, "children"),
        Input({"type": _PLAY, "id": MATCH}, "n_clicks"),
        State({"type": _TICK, "id": MATCH}, "disabled"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="trailscope", function_name="replayTick"),
        Output({"type": _SLIDER, "id": MATCH}, "value"),
        Input({"type": _TICK, "id": MATCH}, "n_intervals"),
        State({"type": _SLIDER, "id": MATCH}, "value"),
        State({"type": _SLIDER, "id": MATCH}, "min"),
        State({"type": _SLIDER, "id": MATCH}, "max"),
        State({"type": _SLIDER, "id": MATCH}, "step"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction(namespace="trailscope", function_name="replayTime"),
        Output({"type": _TIME, "id": MATCH}, "data"),
        Output({"type": _LABEL, "id": MATCH}, "children"),
        Input({"type": _SLIDER, "id": MATCH}, "value"),
        State({"type": _ORIGIN, "id": MATCH}, "data"),
    )
    _WIRED.add(app)

"""Spec building for the offline deck.gl map (app.deckmap): tiny frames plus a real NYC slice."""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import MultiPolygon, Polygon
from trailscope.analytics.schema import CATEGORY, ITEM, LAT, LON, TS, USER
from trailscope.app.deckgl import deckmap as dm
from trailscope.app.deckgl.colors import DIVERGING, SEQUENTIAL, TREND_COLORS

from tests.app.deckmap_isolation import isolated_dash_callbacks
from tests.conftest import NYC


def _nyc(n: int = 3000) -> pd.DataFrame:
    raw = pd.read_csv(NYC, nrows=n)
    return pd.DataFrame({USER: raw["user_id"].astype(str), ITEM: raw["stan_poi_id"].astype(str),
                         TS: pd.to_datetime(raw["utc_time_minute"]), LAT: raw["latitude"],
                         LON: raw["longitude"], CATEGORY: raw["venue_category"]})


def _json_roundtrip(obj: object) -> object:
    return json.loads(json.dumps(obj, allow_nan=False))


def test_heat_layer_positions_weights_and_invalid_rows_dropped():
    df = pd.DataFrame({LAT: [40.7, 40.8, np.nan, 95.0], LON: [-74.0, -73.9, -73.0, -73.0],
                       "w": [1.0, 3.0, 1.0, 1.0]})
    layer = dm.heat_layer(df, weight="w")
    assert layer["@@type"] == "HeatmapLayer"
    assert [d["position"] for d in layer["data"]] == [[-74.0, 40.7], [-73.9, 40.8]]  # lon, lat
    assert [d["weight"] for d in layer["data"]] == [1.0, 3.0]
    assert layer["getPosition"] == "@@=position" and layer["getWeight"] == "@@=weight"
    assert _json_roundtrip(layer) == layer


def test_heat_layer_time_window_is_seconds_since_origin():
    df = pd.DataFrame({LAT: [1.0, 2.0], LON: [3.0, 4.0],
                       TS: pd.to_datetime(["2024-01-01 00:00", "2024-01-01 02:00"])})
    layer = dm.heat_layer(df, time=TS, window=3600, origin=pd.Timestamp("2023-12-31 23:00"))
    assert [d["t"] for d in layer["data"]] == [3600.0, 3 * 3600.0]
    assert layer["_timeWindow"] == 3600.0
    with pytest.raises(ValueError, match="window"):
        dm.heat_layer(df, time=TS)


def test_heat_layer_precision_merges_repeated_places_on_real_checkins():
    ev = _nyc()
    merged = dm.heat_layer(ev, precision=4)
    places = ev[[LAT, LON]].round(4).drop_duplicates()
    assert len(merged["data"]) == len(places) < len(ev)
    assert sum(d["weight"] for d in merged["data"]) == pytest.approx(len(ev))
    assert merged["getWeight"] == "@@=weight"
    with pytest.raises(ValueError, match="across time"):
        dm.heat_layer(ev, precision=4, time=TS, window=3600)


def _decode(col: dict) -> np.ndarray:
    """What assets/deckmap.js decodeColumns makes of a binary column (rows x size)."""
    raw = base64.b64decode(col["b64"])
    if col.get("u16"):
        q = np.frombuffer(raw, dtype="<u2").reshape(-1, col["size"]).astype(float)
        return np.asarray(col["min"]) + q * np.asarray(col["step"])
    return np.frombuffer(raw, dtype="<f4").reshape(-1, col["size"]).astype(float)


def test_binary_heat_layer_is_time_ordered_and_decodes_to_the_points():
    ev = _nyc(2000).sample(frac=1.0, random_state=3)  # shuffled: the layer must sort by time
    t0 = ev[TS].min()
    records = dm.heat_layer(ev, time=TS, window=86400, origin=t0)
    binary = dm.heat_layer(ev, time=TS, window=86400, origin=t0, binary=True, fade=True)
    assert binary["data"] == [] and binary["_fade"] is True
    assert binary["_timeWindow"] == records["_timeWindow"] == 86400.0
    cols = binary["_columns"]
    assert cols["length"] == len(ev) and "getWeight" not in cols  # all ones: deck's default
    t = _decode(cols["t"])[:, 0]
    assert np.all(np.diff(t) >= 0)
    order = np.argsort([d["t"] for d in records["data"]], kind="stable")
    want_t = np.array([d["t"] for d in records["data"]])[order]
    want_pos = np.array([d["position"] for d in records["data"]])[order]
    span_t = want_t.max() - want_t.min()
    assert np.abs(t - want_t).max() <= span_t / 65535 + 1e-6
    pos = _decode(cols["getPosition"])
    extent = want_pos.max(axis=0) - want_pos.min(axis=0)
    assert np.all(np.abs(pos - want_pos).max(axis=0) <= extent / 65535 + 1e-9)
    # the binary layer is much smaller than one JSON record per point
    assert len(json.dumps(binary)) < 0.45 * len(json.dumps(records))
    weighted = dm.heat_layer(ev.assign(w=2.0), weight="w", binary=True)
    assert _decode(weighted["_columns"]["getWeight"])[:, 0].tolist() == [2.0] * len(ev)
    assert "t" not in weighted["_columns"] and "_fade" not in weighted


def test_text_layer_cuts_long_labels_and_arcs_fade_light_flows():
    df = pd.DataFrame({LAT: [40.7, 40.8], LON: [-74.0, -73.9],
                       "name": ["Cafe", "A very long zone name that goes on and on"]})
    layer = dm.text_layer(df, "name", max_chars=12)
    assert layer["@@type"] == "TextLayer" and layer["getText"] == "@@=label"
    assert [d["label"] for d in layer["data"]] == ["Cafe", "A very long\u2026"]
    assert layer["characterSet"] == "auto"  # names are not only ASCII
    flows = pd.DataFrame({"a": [40.7, 40.7, 40.7], "b": [-74.0] * 3, "c": [40.8] * 3,
                          "d": [-73.9] * 3, "n": [100, 25, 1]})
    arcs = dm.arc_layer(flows, "a", "b", "c", "d", weight="n", weight_alpha=True,
                        source_color=(1, 2, 3), target_color=(4, 5, 6))
    alpha = [d["color"][3] for d in arcs["data"]]
    assert alpha[0] == 230 and alpha[0] > alpha[1] > alpha[2] >= 50
    assert [d["color_to"][:3] for d in arcs["data"]] == [[4, 5, 6]] * 3
    assert arcs["getSourceColor"] == "@@=color" and arcs["getTargetColor"] == "@@=color_to"
    plain = dm.arc_layer(flows, "a", "b", "c", "d", weight="n")
    assert plain["getSourceColor"] == [0, 128, 200, 255] and "color" not in plain["data"][0]


def test_missing_column_error_names_the_column_and_the_available_ones():
    with pytest.raises(ValueError, match=r"\['latitude'\].*available columns"):
        dm.scatter_layer(pd.DataFrame({LAT: [1.0], LON: [2.0]}), lat="latitude")


def test_hex_layer_h3_colours_follow_count():
    df = pd.DataFrame({"cell": ["882a100d25fffff", "882a100d27fffff", "882a100d21fffff"],
                       "n": [1, 10, 5], "label": ["a", "b", "c"]})
    layer = dm.hex_layer(df, hex="cell", count="n", tooltip="{label}: {count} events")
    assert layer["@@type"] == "H3HexagonLayer" and layer["getHexagon"] == "@@=hex"
    data = layer["data"]
    assert [d["hex"] for d in data] == list(df["cell"])
    assert data[0]["color"][:3] == list(SEQUENTIAL[0]) and data[1]["color"][:3] == list(
        SEQUENTIAL[-1])
    assert [d["count"] for d in data] == [1, 10, 5] and data[2]["label"] == "c"
    assert layer["pickable"] and layer["_tooltip"] == "{label}: {count} events"
    with pytest.raises(ValueError, match="exactly one"):
        dm.hex_layer(df, count="n")


def test_hex_layer_polygons_accept_shapely_and_explode_multipolygons():
    sq = Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    multi = MultiPolygon([Polygon([(2, 2), (3, 2), (3, 3)]), Polygon([(5, 5), (6, 5), (6, 6)])])
    ring = [[10.0, 10.0], [11.0, 10.0], [11.0, 11.0]]
    df = pd.DataFrame({"geom": [sq, multi, ring], "count": [3, 7, 5]})
    layer = dm.hex_layer(df, polygon="geom")
    assert layer["@@type"] == "PolygonLayer"
    assert len(layer["data"]) == 4  # the MultiPolygon becomes two parts
    assert [d["count"] for d in layer["data"]] == [3, 7, 7, 5]
    assert layer["data"][0]["polygon"][0][:2] == [[0.0, 0.0], [1.0, 0.0]]
    assert layer["data"][3]["polygon"] == [ring]
    _json_roundtrip(layer)


def test_zone_layer_colours_by_trend_and_rejects_unknown_labels():
    tri = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    df = pd.DataFrame({"polygon": [tri, tri, tri], "trend": ["emerging", "Declining", "stable"],
                       "zone": ["z1", "z2", "z3"]})
    layer = dm.zone_layer(df, tooltip="{zone} ({trend})")
    colors = [d["color"][:3] for d in layer["data"]]
    assert colors == [list(TREND_COLORS[k]) for k in ("emerging", "declining", "stable")]
    assert layer["data"][1]["trend"] == "Declining"
    bad = df.assign(trend=["emerging", "rising", "stable"])
    with pytest.raises(ValueError, match=r"\['rising'\].*declining"):
        dm.zone_layer(bad)


def test_paths_from_events_on_real_checkins_are_time_ordered():
    ev = _nyc()
    shuffled = ev.sample(frac=1.0, random_state=0)
    paths = dm.paths_from_events(shuffled, min_points=3)
    counts = ev.groupby(USER).size()
    assert set(paths[USER]) == set(counts[counts >= 3].index)
    for row in paths.itertuples():
        assert len(row.path) == len(row.timestamps) == row.n_points
        assert list(row.timestamps) == sorted(row.timestamps)
    first = paths.iloc[0]
    expected = ev[ev[USER] == first[USER]].sort_values(TS, kind="stable")
    assert first["path"][0] == [round(expected[LON].iloc[0], 6), round(expected[LAT].iloc[0], 6)]


def test_trips_layer_relative_times_and_current_time():
    ev = _nyc(800)
    paths = dm.paths_from_events(ev).head(5)
    origin = ev[TS].min()
    layer = dm.trips_layer(paths, current_time=origin + pd.Timedelta(hours=2),
                           trail_length=pd.Timedelta(hours=1), tooltip="user {user_id}")
    assert layer["@@type"] == "TripsLayer"
    assert layer["currentTime"] == 7200.0 and layer["trailLength"] == 3600.0
    first_ts = paths["timestamps"].iloc[0]
    got = layer["data"][0]["timestamps"]
    assert got == [(t - origin).total_seconds() for t in first_ts]
    # deck.gl keeps timestamps in float32: relative seconds survive to within 2 s over this
    # ~10-month span, epoch seconds would be off by up to a minute
    rel = np.array([t for d in layer["data"] for t in d["timestamps"]])
    assert np.abs(rel.astype(np.float32) - rel).max() <= 2.0
    epoch = rel + origin.timestamp()
    assert np.abs(epoch.astype(np.float32) - epoch).max() > 30
    assert layer["data"][0][USER] == paths[USER].iloc[0]
    bad = paths.assign(timestamps=[t[:-1] for t in paths["timestamps"]])
    with pytest.raises(ValueError, match="one timestamp per path point"):
        dm.trips_layer(bad)


def test_path_arc_and_scatter_layers():
    paths = pd.DataFrame({"path": [[[0, 0], [1, 1]], [[2, 2], [3, 3], [4, 4]]], "kind": ["a", "b"]})
    pl = dm.path_layer(paths, color_by="kind", tooltip="{kind}")
    assert pl["@@type"] == "PathLayer" and pl["data"][1]["path"][2] == [4.0, 4.0]
    assert pl["data"][0]["color"] != pl["data"][1]["color"]

    flows = pd.DataFrame({"sla": [0.0, 1.0], "slo": [0.0, 1.0], "dla": [1.0, 2.0],
                          "dlo": [1.0, 2.0], "n": [5, 10]})
    arc = dm.arc_layer(flows, "sla", "slo", "dla", "dlo", weight="n", max_width_px=9)
    assert arc["@@type"] == "ArcLayer"
    assert [d["width"] for d in arc["data"]] == [5.0, 9.0]
    assert arc["data"][1]["source"] == [1.0, 1.0] and arc["data"][1]["target"] == [2.0, 2.0]

    pts = pd.DataFrame({LAT: [0.0, 0.0, 0.0], LON: [0.0, 1.0, 2.0], "attr": [-2.0, 0.0, 2.0]})
    sc = dm.scatter_layer(pts, color_by="attr", tooltip="{attr}")
    cols = [d["color"][:3] for d in sc["data"]]
    assert cols == [list(DIVERGING[0]), list(DIVERGING[2]), list(DIVERGING[-1])]
    assert [d["attr"] for d in sc["data"]] == [-2.0, 0.0, 2.0]
    with pytest.raises(ValueError, match="0-255"):
        dm.scatter_layer(pts, color=(300, 0, 0))


def test_tooltip_fields_are_copied_as_text_and_html_tooltips_refused():
    evil = '<img src=x onerror="alert(1)">'
    pts = pd.DataFrame({LAT: [1.0], LON: [2.0], ITEM: [evil], "score": [0.123456789]})
    layer = dm.scatter_layer(pts, tooltip="{item_id} scored {score}")
    assert layer["data"][0][ITEM] == evil  # kept verbatim; the browser renders it as text
    assert layer["data"][0]["score"] == 0.1235
    assert dm.tooltip_columns("{a} and {b} and {a}") == ["a", "b"]
    view = dm.view_for([1.0], [2.0])
    with pytest.raises(ValueError, match="HTML"):
        dm.deck_spec([layer], view, tooltip={"html": "<b>{item_id}</b>"})
    with pytest.raises(ValueError, match="collide"):
        dm.scatter_layer(pts.assign(color=[1]), tooltip="{color}")


def test_deck_spec_is_json_safe_and_checks_layers(monkeypatch):
    monkeypatch.delenv(dm.ENV_BASEMAP, raising=False)
    df = pd.DataFrame({LAT: [40.7, 40.8], LON: [-74.0, -73.9], "v": [np.nan, 1.0]})
    layers = [dm.heat_layer(df), dm.scatter_layer(df, color_by="v", tooltip="{v}")]
    spec = dm.deck_spec(layers, dm.view_for(df[LAT], df[LON]), tooltip={"text": "{v}"})
    assert _json_roundtrip(spec) == spec
    assert spec["basemap"] == dm.BASEMAPS[dm.DEFAULT_BASEMAP]  # the street map by default
    assert spec["time"] is None
    assert dm.deck_spec(layers, spec["initialViewState"], time=3600)["time"] == 3600.0
    assert spec["layers"][1]["data"][0]["v"] is None  # NaN -> null
    assert spec["views"][0]["@@type"] == "MapView"
    with pytest.raises(ValueError, match="share id"):
        dm.deck_spec([layers[0], layers[0]], spec["initialViewState"])
    with pytest.raises(ValueError, match="view_for"):
        dm.deck_spec(layers, {"latitude": 1})


def test_basemap_is_a_street_map_unless_set_blank(monkeypatch):
    monkeypatch.delenv(dm.ENV_BASEMAP, raising=False)
    street = dm.basemap_from_env()
    assert street["url"].startswith("https://basemaps.cartocdn.com/light_all/")
    assert "OpenStreetMap" in street["attribution"]
    for blank in ("blank", "none", "off"):
        monkeypatch.setenv(dm.ENV_BASEMAP, blank)
        assert dm.basemap_from_env() is None
    monkeypatch.setenv(dm.ENV_BASEMAP, "")
    assert dm.basemap_from_env() == street
    monkeypatch.setenv(dm.ENV_BASEMAP, "carto-light")
    assert dm.basemap_from_env()["url"].startswith("https://basemaps.cartocdn.com/light_all/")
    assert dm.basemap_from_env("none") is None
    local = "/tiles/{z}/{x}/{y}.png"
    assert dm.basemap_from_env(local) == {"url": local, "attribution": ""}
    monkeypatch.setenv(dm.ENV_BASEMAP, "google")
    with pytest.raises(ValueError, match="TRAILSCOPE_BASEMAP='google'"):
        dm.deck_spec([], {"latitude": 0, "longitude": 0, "zoom": 1})


def _project(lat: float, lon: float, view: dict) -> tuple[float, float]:
    """Web Mercator pixel offset from the view centre (deck.gl: world is 512 * 2**zoom px)."""
    scale = 512 * 2 ** view["zoom"]

    def merc(la: float, lo: float) -> tuple[float, float]:
        y = math.log(math.tan(math.pi / 4 + math.radians(la) / 2))
        return (lo + 180) / 360 * scale, (math.pi - y) / (2 * math.pi) * scale

    cx, cy = merc(view["latitude"], view["longitude"])
    px, py = merc(lat, lon)
    return px - cx, py - cy


@pytest.mark.parametrize("width,height", [(800, 500), (300, 600)])
def test_view_for_fits_the_bounding_box(width, height):
    ev = _nyc()
    view = dm.view_for(ev[LAT], ev[LON], width=width, height=height, padding=0.05,
                       max_zoom=20)
    assert ev[LON].min() < view["longitude"] < ev[LON].max()
    assert ev[LAT].min() < view["latitude"] < ev[LAT].max()
    corners = [(ev[LAT].min(), ev[LON].min()), (ev[LAT].max(), ev[LON].max())]
    xs, ys = zip(*(_project(la, lo, view) for la, lo in corners), strict=True)
    assert all(abs(x) <= width / 2 + 1e-6 for x in xs) and all(abs(y) <= height / 2 + 1e-6
                                                                  for y in ys)
    # tight: the box spans the usable size (90 %) in at least one dimension
    fill = max((max(xs) - min(xs)) / width, (max(ys) - min(ys)) / height)
    assert fill == pytest.approx(0.9, abs=0.01)


def test_view_for_single_point_and_bad_input():
    view = dm.view_for([48.85, np.nan], [2.35, 500.0], max_zoom=14)
    assert (view["latitude"], view["longitude"], view["zoom"]) == (48.85, 2.35, 14)
    assert view["fit"]["bounds"] == [[2.35, 48.85], [2.35, 48.85]]
    with pytest.raises(ValueError, match="no valid coordinates"):
        dm.view_for([np.nan], [np.nan])


def test_deck_html_escapes_script_breakouts():
    evil = "</script><script>window.pwned=1</script><!--"
    layer = dm.scatter_layer(pd.DataFrame({LAT: [1.0], LON: [2.0], ITEM: [evil]}),
                             tooltip="{item_id}")
    page = dm.deck_html(dm.deck_spec([layer], dm.view_for([1.0], [2.0]), basemap="none"))
    assert "window.pwned" in page  # the text is there, but only escaped
    assert "<script>window.pwned" not in page and "<!--" not in page and "</script><" not in (
        page.split("<body", 1)[1].rsplit("</script></body>", 1)[0])
    payload = page.split("getElementById('map'), ", 1)[1].rsplit(", null);", 1)[0]
    assert json.loads(payload)["layers"][0]["data"][0][ITEM] == evil
    assert 'src="/_trailscope/deck/deckgl.js"' in page


def test_deckmap_and_replay_components():
    comp = dm.DeckMap("m1", spec=None, height=300)
    ids = [c.id for c in comp.children]
    assert ids[:3] == [dm.spec_id("m1"), dm.time_id("m1"), dm.status_id("m1")]
    assert ids[4] == {"type": "trailscope-deck-frame", "id": "m1"}
    assert comp.children[3].style["height"] == "300px"
    ctl = dm.replay_controls("m1", 0, 7200, origin=pd.Timestamp("2012-04-03"))
    button, interval, origin, slider_box, label = ctl.children
    slider = slider_box.children
    assert button.id == dm.replay_ids("m1")["play"] and interval.disabled is True
    assert label.id == dm.replay_ids("m1")["label"] and origin.data == "2012-04-03T00:00:00"
    assert (slider.min, slider.max, slider.step, slider.value) == (0.0, 7200.0, 36.0, 0.0)
    assert slider.marks[7200.0] == "04-03 02:00"
    long = dm.replay_controls("m1", 0, 30 * 86400, origin=pd.Timestamp("2012-04-03"))
    assert list(long.children[3].children.marks.values()) == [
        "2012-04-03", "2012-04-13", "2012-04-23", "2012-05-03"]
    with pytest.raises(ValueError, match="after start"):
        dm.replay_controls("m1", 10, 10)
    with pytest.raises(ValueError, match="string id"):
        dm.DeckMap("")


def test_bundle_route_serves_pydeck_deckgl(monkeypatch, tmp_path):
    from flask import Flask
    from trailscope.app.deckgl.assets import (
        BUNDLE_ROUTE,
        ENV_BUNDLE,
        bundle_path,
        register_deck_routes,
    )

    monkeypatch.delenv(ENV_BUNDLE, raising=False)
    server = Flask(__name__)
    register_deck_routes(server)
    register_deck_routes(server)  # idempotent
    resp = server.test_client().get("/" + BUNDLE_ROUTE)
    assert resp.status_code == 200 and "javascript" in resp.mimetype
    body = resp.get_data()
    assert len(body) == bundle_path().stat().st_size > 1_000_000
    assert b"webpackUniversalModuleDefinition" in body[:200] and b"createDeck" in body
    resp.close()

    prefixed = Flask("p")
    register_deck_routes(prefixed, prefix="/app/")
    assert prefixed.test_client().get("/app/" + BUNDLE_ROUTE).status_code == 200

    monkeypatch.setenv(ENV_BUNDLE, str(tmp_path / "missing.js"))
    with pytest.raises(FileNotFoundError, match=ENV_BUNDLE):
        bundle_path()


def test_register_deckmap_wires_each_app_once():
    from dash import Dash
    from trailscope.app.deckgl.assets import BUNDLE_ROUTE

    for _ in range(2):  # a second app gets its own callbacks (Dash globals go to one app only)
        with isolated_dash_callbacks():
            app = Dash(__name__, routes_pathname_prefix="/x/", requests_pathname_prefix="/x/")
            app.layout = dm.DeckMap("m")
            dm.register_deckmap(app)
            n = len(app.callback_map)
            dm.register_deckmap(app)
            # render a spec, render a replay time, play/pause, tick, slider -> time
            assert len(app.callback_map) == n == 5
            assert any("trailscope-deck-status" in k for k in app.callback_map)
            assert app.server.test_client().head("/x/" + BUNDLE_ROUTE).status_code == 200


def test_map_view_labels_do_not_overlap_and_hex_legend_ticks():
    from trailscope.app.views import maps as map_views

    # three zones in a row 0.001 deg apart (~0.7 px at zoom 10, ~90 px at zoom 17)
    zones = pd.DataFrame({LAT: [52.5, 52.5, 52.5, 52.6], LON: [13.400, 13.401, 13.402, 13.4]})
    far = map_views.declutter(zones, zoom=10)
    assert far.index.tolist() == [0, 3]  # the busiest of the row, and the one further north
    near = map_views.declutter(zones, zoom=18)  # ~180 px apart: all fit
    assert near.index.tolist() == [0, 1, 2, 3]
    ticks = map_views.hex_ticks(1, 17228)
    assert ticks[0] == 1 and ticks[-1] == 17228 and len(ticks) == 3
    mid = float(np.expm1((np.log1p(1) + np.log1p(17228)) / 2))  # middle of the log scale
    assert ticks[1] == pytest.approx(mid, rel=0.05)
    assert map_views.hex_ticks(7, 7) == [7]
    text = str(map_views.legend(["hex", "heat"], (1, 17228)))
    assert "1 \u2192 180 \u2192 17,228" in text and "log scale" in text

"""deck.gl map specs of the Map and Users pages, built from the memoised spatial services.

``map_spec`` assembles the Map page's layers (heat, hexagons, zones, paths replayed over time,
flows) for a filter; ``user_map_spec`` draws one user's trips and places. Both return the spec
plus what the replay controls need (origin and span in seconds). Layer builders come from
app/deckgl (the offline deck.gl component); nothing here touches the browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from dash import html

from ...analytics.schema import ITEM, LAT, LON, TS, USER
from ..deckgl import deckmap as dm
from ..services import maps
from ..services.analytics import EventFilter

LAYERS = (("heat", "Heat"), ("hex", "Hexagons"), ("zones", "Zones"),
          ("paths", "Paths (replay)"), ("flows", "Flows"))
DEFAULT_LAYERS = ["heat", "zones", "paths"]
WINDOWS = (("auto", "Auto"), ("day", "Day"), ("week", "Week"), ("month", "Month"),
           ("all", "Cumulative"))
_WINDOW_S = {"day": 86400.0, "week": 7 * 86400.0, "month": 30 * 86400.0}
HEAT_COLORS = [[255, 255, 204], [254, 217, 118], [253, 141, 60], [240, 59, 32],
               [189, 0, 38], [128, 0, 38]]
#: Zones whose names the map writes on it (the busiest), and flows it draws (the heaviest).
LABELLED_ZONES = 12
TOP_FLOWS = 60
#: Zones the map draws, the busiest: beyond a few hundred they are specks at city zoom that
#: cost the browser more than they show (the zones table below the map lists them all).
MAP_ZONES = 400
#: Replayed paths one window shows at full strength: when more overlap (a long window over
#: many trips: "Cumulative" drew a solid mass), each is drawn fainter, so overlaps read as
#: density (:func:`path_alpha`), never below MIN_PATH_ALPHA.
CLEAR_PATHS = 40
MIN_PATH_ALPHA = 40


def window_seconds(choice: str | None, span_s: float) -> tuple[float, str]:
    """(seconds of the replay window, its label) for a WINDOWS choice over a span."""
    if choice == "all":
        return max(span_s, 1.0) + 1.0, "everything up to the slider time"
    if choice not in _WINDOW_S:
        days = span_s / 86400
        choice = "month" if days > 180 else "week" if days > 21 else "day"
    return _WINDOW_S[choice], f"the {choice} up to the slider time"


@dataclass
class MapSpec:
    spec: dict[str, Any]
    origin: pd.Timestamp | None          # replay time 0
    span_s: float                        # replay runs from 0 to span_s
    window_s: float
    window_label: str
    counts: dict[str, int] = field(default_factory=dict)   # what each layer draws
    hex_range: tuple[int, int] | None = None   # fewest and most events of a drawn hexagon


def map_spec(name: str, flt: EventFilter | None, layers: list[str],
             window: str | None) -> MapSpec:
    """The Map page's spec for a filter; ``layers`` are keys of LAYERS."""
    start, end, n = maps.located_span(name, flt)
    if n == 0 or start is None or end is None:
        raise ValueError("no events with coordinates match these filters; clear a filter or "
                         "pick a wider time range")
    span = max((end - start) / pd.Timedelta(seconds=1), 1.0)
    win_s, win_label = window_seconds(window, span)
    heat = maps.heat_points(name, flt)
    view = dm.view_for(heat[LAT], heat[LON], width=1100, height=560, quantile=0.01)
    out: list[dict] = []
    counts: dict[str, int] = {"events": n, "drawn": len(heat)}
    hex_range = None
    wanted = set(layers or [])
    if "hex" in wanted:
        cells = maps.hex_cells(name, flt)
        if len(cells):
            out.append(dm.hex_layer(cells, polygon="polygon", count="count", log=True,
                                    opacity=0.55, tooltip="{count} events\n{users} users"))
        counts["hexagons"] = len(cells)
        if len(cells):
            hex_range = (int(cells["count"].min()), int(cells["count"].max()))
    if "heat" in wanted and len(heat):
        layer = dm.heat_layer(heat, time=TS, window=win_s, origin=start, radius_pixels=28,
                              intensity=1.2, threshold=0.04, binary=True, fade=True)
        layer["colorRange"] = HEAT_COLORS
        out.append(layer)
    if "zones" in wanted:
        found = maps.zones(name, flt)
        z = found.zones
        if len(z) and "trend" in z.columns:
            drawn = z.nlargest(MAP_ZONES, "visits") if len(z) > MAP_ZONES else z
            counts["zones_drawn"] = len(drawn)
            out.append(dm.zone_layer(zone_labels(drawn), opacity=0.35, tooltip=(
                "{name}\nZone {zone_id} · {trend}\n{visits} visits ({share_pct}) by {users} "
                "users\n{n_places} places, {across}")))
            named = declutter(z.nlargest(LABELLED_ZONES * 3, "visits"), view["zoom"])
            named = named.head(LABELLED_ZONES)
            if "name" in named.columns and len(named):
                out.append(dm.text_layer(named, "name", id="zone-names"))
        counts["zones"] = len(z)
        counts["zone_coverage"] = found.coverage
    if "flows" in wanted:
        f = maps.flows(name, flt).head(TOP_FLOWS)
        if len(f):
            out.append(dm.arc_layer(f, "origin_lat", "origin_lon", "dest_lat", "dest_lon",
                                    weight="trips", max_width_px=8, weight_alpha=True,
                                    source_color=(37, 99, 235), target_color=(219, 39, 119),
                                    tooltip="zone {origin} ({origin_name}) → zone "
                                            "{destination} ({dest_name})\n"
                                            "{trips} trips by {users} users"))
        counts["flows"] = len(f)
    if "paths" in wanted:
        p = maps.paths(name, flt)
        if len(p):
            out.append(dm.trips_layer(p, origin=0.0, current_time=span, trail_length=win_s,
                                      color=(13, 148, 136, path_alpha(len(p), win_s, span)),
                                      width_px=2,
                                      tooltip="user {user_id}, trip {trip}"))
        counts["paths"] = len(p)
        counts["path_users"] = int(p[USER].nunique()) if len(p) else 0
    spec = dm.deck_spec(out, view, time=span)  # the replay slider starts at the end
    return MapSpec(spec=spec, origin=start, span_s=span, window_s=win_s,
                   window_label=win_label, counts=counts, hex_range=hex_range)


def path_alpha(n_paths: int, window_s: float, span_s: float) -> int:
    """Alpha (0-255) of each replayed path: opaque while about CLEAR_PATHS or fewer fall in
    one replay window (``n_paths`` spread over ``span_s``), fainter in proportion beyond."""
    shown = n_paths * min(1.0, window_s / max(span_s, 1.0))
    return int(np.clip(round(255 * CLEAR_PATHS / max(shown, 1.0)), MIN_PATH_ALPHA, 255))


def declutter(points: pd.DataFrame, zoom: float, dx_px: float = 110.0,
              dy_px: float = 18.0) -> pd.DataFrame:
    """The rows of ``points`` (``lat``/``lon``, most important first) whose labels do not
    overlap an earlier row's at map zoom ``zoom``: a label is kept unless a kept one lies
    within ``dx_px`` across and ``dy_px`` up or down (deck.gl's 512 px world at zoom 0)."""
    px = 512 * 2 ** float(zoom) / 360.0  # pixels per degree of longitude
    x = points[LON].to_numpy(dtype=float) * px
    lat = np.radians(points[LAT].to_numpy(dtype=float).clip(-85, 85))
    y = np.degrees(np.log(np.tan(np.pi / 4 + lat / 2))) * px  # Web Mercator, same scale
    kept: list[int] = []
    for i in range(len(points)):
        if all(abs(x[i] - x[j]) >= dx_px or abs(y[i] - y[j]) >= dy_px for j in kept):
            kept.append(i)
    return points.iloc[kept]


def zone_labels(zones: pd.DataFrame) -> pd.DataFrame:
    """``zones`` plus the texts their tooltips and tables show: ``share_pct`` ("4.8% of
    events") and ``across`` ("1.47 km across")."""
    return zones.assign(share_pct=[f"{v:.1%} of events" for v in zones["share"]],
                        across=[f"{v:.2f} km across" for v in zones["extent_km"]])


def user_map_spec(name: str, user: str, events: pd.DataFrame) -> MapSpec | None:
    """One user's trips (replayed) and visited places sized by visits; None without
    coordinates."""
    located = events.dropna(subset=[LAT, LON])
    if located.empty:
        return None
    start = located[TS].min()
    span = max((located[TS].max() - start) / pd.Timedelta(seconds=1), 1.0)
    places = located.groupby(ITEM, as_index=False).agg(
        lat=(LAT, "mean"), lon=(LON, "mean"), visits=(TS, "size"))
    places = places.rename(columns={"lat": LAT, "lon": LON})
    view = dm.view_for(located[LAT], located[LON], width=600, height=440)
    trips = maps.user_paths(name, user)
    win_s, label = window_seconds(None, span)
    layers: list[dict] = []
    if len(trips):
        layers.append(dm.path_layer(trips, color=(148, 163, 184), width_px=2))
        layers.append(dm.trips_layer(trips, origin=0.0, current_time=span, trail_length=win_s,
                                     color=(13, 148, 136), width_px=4,
                                     tooltip="trip {trip}: {n_points} points"))
    layers.append(dm.scatter_layer(places, color_by="visits", radius_px=5,
                                   tooltip="{item_id}\n{visits} visits"))
    # one user's trips and places draw at once on a canvas; deck.gl's software WebGL took
    # seconds to start in a browser without a GPU (issue #13)
    return MapSpec(spec=dm.deck_spec(layers, view, time=span, renderer="canvas"),
                   origin=start, span_s=span,
                   window_s=win_s, window_label=label,
                   counts={"places": len(places), "trips": len(trips)})


def hex_ticks(lo: int, hi: int, n: int = 3) -> list[int]:
    """Event counts at evenly spaced points of the hexagons' log colour scale (``hex_layer``
    with ``log=True``: colours run evenly over log(1 + count)), rounded to 2 significant
    digits; the first is the fewest, the last the most."""
    if hi <= lo:
        return [int(lo)]
    a, b = np.log1p(lo), np.log1p(hi)
    ticks = [int(round(float(np.expm1(a + (b - a) * i / (n - 1))))) for i in range(n)]
    inner = [int(float(f"{t:.2g}")) for t in ticks[1:-1]]
    return list(dict.fromkeys([int(lo), *inner, int(hi)]))


def legend(layers: list[str], hex_range: tuple[int, int] | None = None) -> html.Div:
    """A small legend for the drawn layers, with the hexagons' value range."""
    items: list[Any] = []

    def swatch(color: str, text: str, kind: str = "box") -> html.Span:
        return html.Span([html.Span(className=f"swatch swatch-{kind}",
                                    style={"background": color}), text],
                         className="legend-item")

    if "heat" in layers:
        items.append(swatch("linear-gradient(90deg,#ffffcc,#fd8d3c,#bd0026)",
                            "heat: few \u2192 most events nearby in the replay window "
                            "(recent ones count more)", "ramp"))
    if "hex" in layers:
        text = "events per hexagon"
        if hex_range is not None:
            ticks = hex_ticks(*hex_range)
            text += ": " + " \u2192 ".join(f"{t:,}" for t in ticks) + (
                " (log scale)" if len(ticks) > 2 else "")
        items.append(swatch("linear-gradient(90deg,#440154,#21918c,#fde725)", text, "ramp"))
    if "zones" in layers:
        items += [swatch("#1a9850", "emerging zone"), swatch("#969696", "stable zone"),
                  swatch("#d73027", "declining zone")]
    if "paths" in layers:
        items.append(swatch("#0d9488", "movement paths", "line"))
    if "flows" in layers:
        items.append(swatch("linear-gradient(90deg,#2563eb,#db2777)",
                            f"the {TOP_FLOWS} busiest flows (origin \u2192 destination; "
                            "wider and darker: more trips)", "line"))
    return html.Div(items, className="legend")

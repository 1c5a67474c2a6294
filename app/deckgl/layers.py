"""deck.gl layer specs built from tidy DataFrames (JSON dicts for ``deckgl.deckmap.deck_spec``).

Every builder takes a DataFrame plus the names of the columns to read (defaults from
``analytics.schema``) and returns one JSON-safe layer dict in @deck.gl/json form
(``"@@type"`` class name, ``"@@=key"`` accessors). Records use fixed internal keys
(``position``, ``color``, ``path`` ...) so accessors never depend on a caller's column names.

Tooltips are templates such as ``"{item_id}\\n{category}"``: the named columns are copied into
the records and the browser fills the template as *text* (``innerText``), never HTML, so item
names like ``<script>`` are shown literally. Times for replay are seconds since ``origin``
(default: the earliest timestamp of the layer) because deck.gl keeps timestamps in float32,
which cannot hold epoch seconds to the second.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from ...analytics.schema import LAT, LON, TS, USER
from .colors import RGBA, TREND_COLORS, colors_for, parse_color, sequential_colors
from .geom import explode_polygons, line_coords

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_RESERVED = {"position", "weight", "color", "polygon", "hex", "path", "timestamps", "source",
             "target", "width", "t", "count", "color_to"}
Time = pd.Timestamp | datetime | float | int


# -- small helpers ------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: Sequence[str | None], layer: str) -> None:
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise ValueError(f"{layer}: column(s) {missing} not in the frame; available columns: "
                         f"{list(df.columns)}. Pass the right names as arguments.")


def _json_value(v: Any) -> Any:
    """One cell -> a JSON-safe scalar (NaN/NA -> None, numpy -> Python, times -> ISO text)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return float(f"{f:.4g}") if math.isfinite(f) else None
    if isinstance(v, (pd.Timestamp, datetime, date)):
        return v.isoformat()
    return str(v)


def tooltip_columns(template: str | None) -> list[str]:
    """The column names a tooltip template refers to (``"{a} / {b}"`` -> ``["a", "b"]``)."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(template or "")))


def _tooltip_fields(df: pd.DataFrame, template: str | None, layer: str,
                    internal: Sequence[str] = ()) -> dict[str, list]:
    """Columns named in the template (except ``internal`` record keys) as JSON-safe lists."""
    cols = [c for c in tooltip_columns(template) if c not in internal]
    _require(df, cols, layer)
    clash = sorted(set(cols) & _RESERVED)
    if clash:
        raise ValueError(f"{layer}: tooltip columns {clash} collide with internal record keys "
                         f"{sorted(_RESERVED)}; rename them first (df.rename(columns=...)).")
    return {c: [_json_value(v) for v in df[c].tolist()] for c in cols}


def _records(columns: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def binary_column(values: Any, size: int = 1, *, quantize: bool = False) -> dict[str, Any]:
    """A numeric column in base64 for the browser (assets/deckmap.js, ``_columns``), which
    hands it to deck.gl as a Float32Array without parsing a record per row.

    By default little-endian float32 (``{"b64", "size"}``). ``quantize=True`` sends each of
    the ``size`` components as a 16-bit step between its minimum and maximum (``"u16"``,
    ``"min"``, ``"step"``): half the bytes again, at 1/65535 of the range (under 1 m across
    a city, 8 minutes over a year)."""
    arr = np.asarray(values, dtype=float).reshape(-1, size)
    if not quantize or arr.size == 0:
        raw = np.ascontiguousarray(arr.astype("<f4").reshape(-1))
        return {"b64": base64.b64encode(raw.tobytes()).decode("ascii"), "size": int(size)}
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    step = np.where(hi > lo, (hi - lo) / 65535.0, 1.0)
    q = np.rint((arr - lo) / step).clip(0, 65535).astype("<u2")
    return {"b64": base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii"),
            "size": int(size), "u16": True, "min": [float(v) for v in lo],
            "step": [float(v) for v in step]}


def _layer(kind: str, layer_id: str, data: list[dict], tooltip: str | None,
           **props: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"@@type": kind, "id": layer_id, "data": data, **props}
    if tooltip:
        spec["pickable"] = True
        spec["_tooltip"] = tooltip
    return spec


def _positions(df: pd.DataFrame, lat: str, lon: str) -> list[list[float]]:
    coords = df[[lon, lat]].to_numpy(dtype=float)  # (N, 2) lon, lat
    return np.round(coords, 6).tolist()


def _valid_points(df: pd.DataFrame, lat: str, lon: str, layer: str) -> pd.DataFrame:
    _require(df, [lat, lon], layer)
    la = pd.to_numeric(df[lat], errors="coerce")
    lo = pd.to_numeric(df[lon], errors="coerce")
    keep = la.between(-90, 90) & lo.between(-180, 180)
    return df.loc[keep.fillna(False).to_numpy(dtype=bool)]


def _colors(df: pd.DataFrame, color_by: str | None, color: Sequence[int] | None,
            default: Sequence[int], layer: str) -> list[RGBA]:
    if color_by is not None:
        _require(df, [color_by], layer)
        return colors_for(df[color_by])
    fixed = parse_color(color if color is not None else default)
    return [fixed] * len(df)


def seconds_since(values: Any, origin: Time | None = None) -> np.ndarray:
    """Times (datetimes or numbers) -> float seconds since ``origin`` (default: their minimum).

    Numbers are taken as seconds already; datetimes need a datetime origin (or none)."""
    arr = pd.Series(np.asarray(values, dtype=object) if not isinstance(values, pd.Series)
                    else values)
    if len(arr) == 0:
        return np.zeros(0)
    if pd.api.types.is_numeric_dtype(arr) or all(isinstance(v, (int, float, np.number))
                                                  for v in arr):
        secs = arr.astype(float).to_numpy()
        base = float(secs.min()) if origin is None else float(origin)  # type: ignore[arg-type]
        return secs - base
    ts = pd.to_datetime(arr)
    base_ts = ts.min() if origin is None else pd.Timestamp(origin)
    return ((ts - base_ts) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def _seconds(value: Time | pd.Timedelta, origin: Time | None, what: str) -> float:
    if isinstance(value, pd.Timedelta):
        return float(value / pd.Timedelta(seconds=1))
    if isinstance(value, (int, float, np.number)):
        return float(value)
    if origin is None:
        raise ValueError(f"{what} is a datetime but the layer has no datetime origin")
    return float((pd.Timestamp(value) - pd.Timestamp(origin)) / pd.Timedelta(seconds=1))


# -- layer builders -----------------------------------------------------------------------
def heat_layer(df: pd.DataFrame, lat: str = LAT, lon: str = LON, weight: str | None = None, *,
               id: str = "heat", radius_pixels: int = 30, intensity: float = 1.0,
               threshold: float = 0.03, time: str | None = None, window: float | None = None,
               origin: Time | None = None, precision: int | None = None,
               binary: bool = False, fade: bool = False) -> dict[str, Any]:
    """HeatmapLayer of points, optionally weighted by ``weight``.

    With ``time`` (a timestamp column) and ``window`` (seconds), replay shows only the events
    in ``(t - window, t]`` where ``t`` is the map's replay time in seconds since ``origin``;
    ``fade=True`` also weighs each event by its age in that window (the newest count fully,
    the oldest a tenth), so a long window reads as recent activity over a faded past.
    ``precision=4`` (without ``time``) sums weights per lat/lon rounded to 4 decimals (~10 m):
    repeated check-ins at one place become one point, which keeps the spec small.
    ``binary=True`` sends the points as float32 columns (``_columns``, ordered by time)
    instead of one JSON record per point: smaller, and no per-row parsing in the browser."""
    pts = _valid_points(df, lat, lon, "heat_layer")
    _require(pts, [weight, time], "heat_layer")
    w = (pd.to_numeric(pts[weight], errors="coerce").fillna(0.0).clip(lower=0.0)
         if weight is not None else pd.Series(1.0, index=pts.index))
    if precision is not None:
        if time is not None:
            raise ValueError("heat_layer: precision= merges events across time; "
                             "use it without time=/window=")
        pts = pd.DataFrame({lat: pts[lat].astype(float).round(precision),
                            lon: pts[lon].astype(float).round(precision), "_w": w.to_numpy()})
        pts = pts.groupby([lat, lon], as_index=False, sort=False)["_w"].sum()
        w, weight = pts["_w"], "_w"
    extra: dict[str, Any] = {}
    if time is not None and (window is None or window <= 0):
        raise ValueError("heat_layer: time= needs a positive window= in seconds")
    if time is not None:
        extra["_timeWindow"] = float(window)  # type: ignore[arg-type]
        extra["_fade"] = bool(fade)
    if binary:
        return _layer("HeatmapLayer", id, [], None, radiusPixels=int(radius_pixels),
                      intensity=float(intensity), threshold=float(threshold),
                      _columns=_binary_points(pts, lat, lon, w, time, origin), **extra)
    cols: dict[str, list] = {"position": _positions(pts, lat, lon)}
    if weight is not None:
        cols["weight"] = np.round(w.to_numpy(dtype=float), 6).tolist()
    if time is not None:
        cols["t"] = np.round(seconds_since(pts[time], origin), 3).tolist()
    return _layer("HeatmapLayer", id, _records(cols), None, getPosition="@@=position",
                  getWeight="@@=weight" if weight is not None else 1,
                  radiusPixels=int(radius_pixels), intensity=float(intensity),
                  threshold=float(threshold), **extra)


def _binary_points(pts: pd.DataFrame, lat: str, lon: str, w: pd.Series, time: str | None,
                   origin: Time | None) -> dict[str, Any]:
    """Points as float32 columns for deck.gl binary attributes, ordered by time when timed
    (the browser then cuts a replay window as one slice)."""
    pos = pts[[lon, lat]].to_numpy(dtype=float)
    weights = w.to_numpy(dtype=float)
    cols: dict[str, Any] = {"length": len(pts)}
    if time is not None:
        t = seconds_since(pts[time], origin)
        order = np.argsort(t, kind="stable")
        pos, weights, t = pos[order], weights[order], t[order]
        cols["t"] = binary_column(t, quantize=True)
    cols["getPosition"] = binary_column(pos, 2, quantize=True)
    if len(weights) and not np.all(weights == 1.0):  # all ones: deck.gl's default weight
        cols["getWeight"] = binary_column(weights)
    return cols


def text_layer(df: pd.DataFrame, text: str, lat: str = LAT, lon: str = LON, *,
               id: str = "labels", size_px: float = 12.0,
               color: Sequence[int] = (30, 30, 30), max_chars: int = 28) -> dict[str, Any]:
    """TextLayer of labels (a zone's name) at points, drawn on a white halo so they read on
    any basemap; labels longer than ``max_chars`` are cut with an ellipsis."""
    pts = _valid_points(df, lat, lon, "text_layer")
    _require(pts, [text], "text_layer")
    labels = [s if len(s) <= max_chars else s[:max_chars - 1] + "\u2026"
              for s in pts[text].astype("string").fillna("").tolist()]
    cols = {"position": _positions(pts, lat, lon), "label": labels}
    return _layer("TextLayer", id, _records(cols), None, getPosition="@@=position",
                  getText="@@=label", getSize=float(size_px), sizeUnits="pixels",
                  getColor=parse_color(color), characterSet="auto", fontFamily="sans-serif",
                  outlineWidth=3, outlineColor=[255, 255, 255, 230],
                  fontSettings={"sdf": True}, getTextAnchor="middle",
                  getAlignmentBaseline="center", billboard=True)


def hex_layer(df: pd.DataFrame, *, hex: str | None = None, polygon: str | None = None,
              count: str = "count", id: str = "hex", log: bool = False, opacity: float = 0.7,
              tooltip: str | None = "{count}", extruded: bool = False,
              elevation_scale: float = 10.0) -> dict[str, Any]:
    """Pre-aggregated hexagon cells coloured by ``count``.

    Give exactly one of ``hex`` (a column of H3 cell ids -> H3HexagonLayer) or ``polygon``
    (a column of cell polygons -> PolygonLayer). ``{count}`` in the tooltip is the count."""
    if (hex is None) == (polygon is None):
        raise ValueError("hex_layer: pass exactly one of hex= (H3 id column) or polygon= "
                         "(cell polygon column)")
    _require(df, [hex, polygon, count], "hex_layer")
    counts = pd.to_numeric(df[count], errors="coerce").fillna(0.0)
    colors = sequential_colors(counts, log=log, alpha=int(255 * opacity))
    tips = _tooltip_fields(df, tooltip, "hex_layer", internal=("count",))
    cols: dict[str, list] = {"color": colors,
                             "count": [_json_value(v) for v in counts.tolist()], **tips}
    props: dict[str, Any] = {"getFillColor": "@@=color", "extruded": bool(extruded),
                             "stroked": False}
    if extruded:
        props.update(getElevation="@@=count", elevationScale=float(elevation_scale))
    if hex is not None:
        ids = df[hex].astype("string")
        if ids.isna().any():
            raise ValueError(f"hex_layer: column {hex!r} has missing H3 ids; drop those rows")
        cols["hex"] = ids.tolist()
        return _layer("H3HexagonLayer", id, _records(cols), tooltip,
                      getHexagon="@@=hex", **props)
    polys, rows = explode_polygons(df, polygon, "hex_layer")  # type: ignore[arg-type]
    part_cols = {k: [v[r] for r in rows] for k, v in cols.items()}
    part_cols["polygon"] = polys
    return _layer("PolygonLayer", id, _records(part_cols), tooltip,
                  getPolygon="@@=polygon", **props)


def zone_layer(df: pd.DataFrame, polygon: str = "polygon", trend: str = "trend", *,
               id: str = "zones", tooltip: str | None = None, opacity: float = 0.55,
               colors: dict[str, tuple[int, int, int]] | None = None) -> dict[str, Any]:
    """Zone polygons coloured by trend label (emerging / stable / declining)."""
    _require(df, [polygon, trend], "zone_layer")
    palette = {k.lower(): v for k, v in (colors or TREND_COLORS).items()}
    labels = df[trend].astype("string").str.lower()
    unknown = sorted(set(labels.dropna()) - set(palette))
    if unknown or labels.isna().any():
        raise ValueError(f"zone_layer: column {trend!r} has labels {unknown or ['<missing>']} "
                         f"that have no colour; expected one of {sorted(palette)} "
                         f"(or pass colors={{label: (r, g, b)}})")
    alpha = int(255 * opacity)
    cols: dict[str, list] = {"color": [[*palette[lab], alpha] for lab in labels],
                             **_tooltip_fields(df, tooltip, "zone_layer")}
    polys, rows = explode_polygons(df, polygon, "zone_layer")
    part_cols = {k: [v[r] for r in rows] for k, v in cols.items()}
    part_cols["polygon"] = polys
    return _layer("PolygonLayer", id, _records(part_cols), tooltip, getPolygon="@@=polygon",
                  getFillColor="@@=color", getLineColor=[60, 60, 60, 200],
                  lineWidthMinPixels=1, stroked=True, filled=True)


def path_layer(df: pd.DataFrame, path: str = "path", *, id: str = "paths",
               color: Sequence[int] | None = None, color_by: str | None = None,
               width_px: float = 3.0, tooltip: str | None = None) -> dict[str, Any]:
    """PathLayer, one row per path; ``path`` holds ``[[lon, lat], ...]`` or LineStrings."""
    _require(df, [path], "path_layer")
    cols = {"path": line_coords(df, path, "path_layer"),
            "color": _colors(df, color_by, color, (50, 90, 200), "path_layer"),
            **_tooltip_fields(df, tooltip, "path_layer")}
    return _layer("PathLayer", id, _records(cols), tooltip, getPath="@@=path",
                  getColor="@@=color", widthMinPixels=float(width_px), widthUnits="pixels",
                  getWidth=float(width_px), capRounded=True, jointRounded=True)


def trips_layer(df: pd.DataFrame, path: str = "path", timestamps: str = "timestamps",
                current_time: Time | pd.Timedelta = 0.0,
                trail_length: float | pd.Timedelta = 3600.0, *, origin: Time | None = None,
                id: str = "trips", color: Sequence[int] | None = None,
                color_by: str | None = None, width_px: float = 4.0,
                tooltip: str | None = None) -> dict[str, Any]:
    """TripsLayer for replay: each row a path with one timestamp per point.

    Times become seconds since ``origin`` (default: the earliest timestamp in ``df``);
    ``current_time`` is a datetime or seconds since that origin, ``trail_length`` seconds or a
    Timedelta. The map's replay slider (``replay_controls``) moves ``currentTime``."""
    _require(df, [path, timestamps], "trips_layer")
    paths = line_coords(df, path, "trips_layer")
    lengths = [len(p) for p in paths]
    stamps = [list(s) if s is not None else [] for s in df[timestamps].tolist()]
    bad = [i for i, (p, s) in enumerate(zip(lengths, stamps, strict=True)) if p != len(s)]
    if bad:
        raise ValueError(f"trips_layer: rows {bad[:5]} have a different number of points and "
                         f"timestamps; give one timestamp per path point")
    flat = [v for s in stamps for v in s]
    if origin is None and flat:
        is_num = all(isinstance(v, (int, float, np.number)) for v in flat)
        origin = min(flat) if is_num else pd.to_datetime(pd.Series(flat)).min()
    secs = np.round(seconds_since(flat, origin), 3)
    splits = np.split(secs, np.cumsum(lengths)[:-1]) if lengths else []
    cols = {"path": paths, "timestamps": [s.tolist() for s in splits],
            "color": _colors(df, color_by, color, (253, 128, 93), "trips_layer"),
            **_tooltip_fields(df, tooltip, "trips_layer")}
    spec = _layer("TripsLayer", id, _records(cols), tooltip, getPath="@@=path",
                  getTimestamps="@@=timestamps", getColor="@@=color",
                  widthMinPixels=float(width_px), capRounded=True, jointRounded=True,
                  currentTime=_seconds(current_time, origin, "current_time"),
                  trailLength=_seconds(trail_length, None, "trail_length"))
    spec["_origin"] = _json_value(origin)
    return spec


def arc_layer(df: pd.DataFrame, src_lat: str, src_lon: str, dst_lat: str, dst_lon: str,
              weight: str | None = None, *, id: str = "flows", max_width_px: float = 8.0,
              source_color: Sequence[int] = (0, 128, 200), target_color: Sequence[int] = (
                  200, 0, 80), tooltip: str | None = None,
              weight_alpha: bool = False) -> dict[str, Any]:
    """ArcLayer of flows between origin and destination points, width scaled by ``weight``;
    ``weight_alpha=True`` also fades the lighter flows (alpha 50 -> 230 with the weight), so
    the main ones stand out of a bundle of thin arcs."""
    _require(df, [src_lat, src_lon, dst_lat, dst_lon, weight], "arc_layer")
    flows = _valid_points(_valid_points(df, src_lat, src_lon, "arc_layer"), dst_lat, dst_lon,
                          "arc_layer")
    share = np.ones(len(flows))
    if weight is not None:
        w = pd.to_numeric(flows[weight], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        top = w.max() if len(w) and w.max() > 0 else 1.0
        share = w / top
        widths = np.round(1.0 + (max_width_px - 1.0) * share, 2).tolist()
    else:
        widths = [2.0] * len(flows)
    cols = {"source": _positions(flows, src_lat, src_lon),
            "target": _positions(flows, dst_lat, dst_lon), "width": widths,
            **_tooltip_fields(flows, tooltip, "arc_layer")}
    src = parse_color(source_color, what="source_color")
    dst = parse_color(target_color, what="target_color")
    colors: dict[str, Any] = {"getSourceColor": src, "getTargetColor": dst}
    if weight_alpha:
        alpha = np.rint(50 + 180 * np.sqrt(np.clip(share, 0.0, 1.0))).astype(int).tolist()
        cols["color"] = [[*src[:3], a] for a in alpha]
        cols["color_to"] = [[*dst[:3], a] for a in alpha]
        colors = {"getSourceColor": "@@=color", "getTargetColor": "@@=color_to"}
    return _layer("ArcLayer", id, _records(cols), tooltip, getSourcePosition="@@=source",
                  getTargetPosition="@@=target", getWidth="@@=width", widthUnits="pixels",
                  **colors)


def scatter_layer(df: pd.DataFrame, lat: str = LAT, lon: str = LON, *, id: str = "points",
                  color_by: str | None = None, color: Sequence[int] | None = None,
                  radius_px: float = 5.0, tooltip: str | None = None,
                  outline: bool = True) -> dict[str, Any]:
    """ScatterplotLayer; ``color_by`` picks a scale from the column (text -> categories,
    signed numbers such as attributions -> blue/red diverging, counts -> sequential)."""
    pts = _valid_points(df, lat, lon, "scatter_layer")
    cols = {"position": _positions(pts, lat, lon),
            "color": _colors(pts, color_by, color, (30, 30, 30), "scatter_layer"),
            **_tooltip_fields(pts, tooltip, "scatter_layer")}
    return _layer("ScatterplotLayer", id, _records(cols), tooltip, getPosition="@@=position",
                  getFillColor="@@=color", radiusUnits="pixels", getRadius=float(radius_px),
                  radiusMinPixels=1, stroked=bool(outline), getLineColor=[255, 255, 255, 220],
                  lineWidthMinPixels=1 if outline else 0)


def paths_from_events(df: pd.DataFrame, by: str = USER, ts: str = TS, lat: str = LAT,
                      lon: str = LON, *, min_points: int = 2) -> pd.DataFrame:
    """Events -> one row per ``by`` value with ``path`` ([lon, lat] list, time-ordered),
    ``timestamps`` and ``n_points``; ready for ``path_layer`` / ``trips_layer``."""
    pts = _valid_points(df, lat, lon, "paths_from_events")
    _require(pts, [by, ts], "paths_from_events")
    pts = pts.sort_values([by, ts], kind="stable")
    keys = pts[by].to_numpy()
    coords = _positions(pts, lat, lon)
    times = pts[ts].tolist()
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1] if len(keys) else []
    ends = np.r_[starts[1:], len(keys)] if len(keys) else []
    rows = [{by: keys[a], "path": coords[a:b], "timestamps": times[a:b], "n_points": int(b - a)}
            for a, b in zip(starts, ends, strict=True) if b - a >= min_points]
    return pd.DataFrame(rows, columns=[by, "path", "timestamps", "n_points"])

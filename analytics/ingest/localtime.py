"""Local time at import: every event with coordinates and no offset of its own gets the UTC
offset of its place at its own instant, so every page and model that shows local time (the
rhythm heatmap, "busiest hour", per-hour slices, the explanations' "night visits") is right
without knowing where the offset came from.

Where an event's ``tz_offset_min`` comes from, first found wins (the bases are named in
analytics/spacetime.py, ``BASIS_*``):

1. the file: a time-zone column, ``+hh:mm`` offsets in the times (not a UTC marker: ``Z`` or
   ``+00:00`` on every time says the times are UTC, not where the user was; plan.py), or the
   format's fixed zone (Taobao, Tianchi): kept as staged;
2. the IANA time zone at the event's coordinates, looked up offline in the time-zone polygons
   of ``tzfpy`` once per 0.01-degree cell (about 1 km), and its offset at the event's instant,
   daylight saving included. Each zone's clock over the data's span (its changes, found to
   the minute by probing DuckDB's ICU ``timezone``: :func:`clocks`) becomes a CASE on the
   time, so no event needs a time-zone conversion of its own (:func:`_update`; ICU converts
   each event only where finding the clocks would cost more);
3. the solar zone of the longitude (:func:`~analytics.spacetime.solar_offset_sql`) for points
   in no country's zone (open sea: tzfpy's nautical ``Etc/GMT+n`` bands);
4. nothing: an event without coordinates keeps a NULL offset, shown in UTC.

:func:`fill` updates a table in place (the staging table, or a derived dataset's events) and
returns what the import report keeps in ``extra["local_time"]``.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import tzfpy

from .. import schema
from ..spacetime import BASES, BASIS_FILE, BASIS_LONGITUDE, BASIS_UTC, BASIS_ZONE, solar_offset_sql
from .timeparse import TIME_MAX, TIME_MIN

T, LA, LO, TZ = schema.TS, schema.LAT, schema.LON, schema.TZ_OFFSET
#: Cells per degree of the zone lookup: 0.01 degrees, about 1.1 km north-south.
CELLS_PER_DEGREE = 100
#: How many zone names the report lists (most events first).
TOP_ZONES = 5
#: Finding each zone's clock changes over the data's span costs one probe per zone and day;
#: beyond this many, every event is converted by DuckDB's ICU instead (about 3x the CPU of
#: a clock's CASE).
MAX_PROBES = 2_000_000
#: Zones whose offsets agree over the data's span share a clock, one CASE branch each; with
#: more clocks than this (or a clock with more than MAX_CHANGES changes: a span of decades),
#: events are joined to the clocks' segments instead (a long CASE costs more per row).
MAX_CASE_CLOCKS = 16
MAX_CHANGES = 64

_names_lock = threading.Lock()
_icu_names: set[str] = set()


def _known_zones(cur: duckdb.DuckDBPyConnection) -> set[str]:
    """The zone names DuckDB's ICU knows (read once per process)."""
    with _names_lock:
        if not _icu_names:
            _icu_names.update(r[0] for r in cur.execute(
                "SELECT name FROM pg_timezone_names()").fetchall())
        return _icu_names


def zone_codes(lat: np.ndarray, lon: np.ndarray,
               known: set[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """(index of each point's IANA zone in the sorted list of zones found, or -1; that list).
    -1 where no country's zone covers the point (open sea: tzfpy's ``Etc/...`` bands, which
    the longitude rule matches) or its zone is not in ``known`` (the zones DuckDB can
    convert to). One tzfpy lookup per point; the rest is vectorised."""
    get = tzfpy.get_tz
    found = pd.Categorical([get(x, y) for x, y in zip(lon.tolist(), lat.tolist(),
                                                       strict=True)])
    cats = [str(c) for c in found.categories]
    ok = [bool(c) and not c.startswith("Etc/") and (known is None or c in known)
          for c in cats]
    names = sorted(c for c, good in zip(cats, ok, strict=True) if good)
    remap = np.array([names.index(c) if good else -1 for c, good in zip(cats, ok, strict=True)]
                     + [-1], dtype="int32")  # code -1 (no name at all) -> the last entry
    return remap[found.codes], names


def zone_names(lat: np.ndarray, lon: np.ndarray, known: set[str] | None = None) -> np.ndarray:
    """The IANA zone at each point (object array), None where :func:`zone_codes` finds none."""
    codes, names = zone_codes(lat, lon, known)
    return np.array([names[k] if k >= 0 else None for k in codes.tolist()], dtype=object)


def _cell(col: str) -> str:
    return f"CAST(round({col} * {CELLS_PER_DEGREE}) AS INTEGER)"


def offset_sql(zone: str, t: str) -> str:
    """SQL: minutes east of UTC of IANA zone ``zone`` at naive UTC time ``t`` (DuckDB's ICU,
    daylight saving included; independent of the session's time zone)."""
    return (f"CAST(round((epoch(timezone({zone}, timezone('UTC', {t}))) - epoch({t})) / 60) "
            "AS INTEGER)")


def _probe(cur: duckdb.DuckDBPyConnection, zones: list[str], zid: np.ndarray,
           t: np.ndarray) -> np.ndarray:
    """The offset of zone ``zones[zid[k]]`` at time ``t[k]``, for every k (one query)."""
    view = f"_ts_probe_{uuid.uuid4().hex[:10]}"
    frame = pd.DataFrame({"k": np.arange(len(t)), "zone": np.asarray(zones, dtype=object)[zid],
                          "t": pd.to_datetime(t).astype("datetime64[us]")})
    cur.register(view, frame)
    try:
        got = cur.execute(f"SELECT {offset_sql('zone', 't')} AS o FROM {view} "
                          "ORDER BY k").fetchnumpy()["o"]
    finally:
        cur.unregister(view)
    return np.asarray(got, dtype="int64")


def _first_at(cur: duckdb.DuckDBPyConnection, zones: list[str], zid: np.ndarray,
              after: np.ndarray, new: np.ndarray, step: np.timedelta64, n: int) -> np.ndarray:
    """For each change (zone, ``after`` < change <= ``after + n * step``, new offset ``new``):
    the first of ``after + step, after + 2 step, ...`` at which the zone shows ``new``."""
    grid = after[:, None] + step * np.arange(1, n + 1)[None, :]
    off = _probe(cur, zones, np.repeat(zid, n), grid.ravel()).reshape(len(zid), n)
    return grid[np.arange(len(zid)), np.argmax(off == new[:, None], axis=1)]


def clocks(cur: duckdb.DuckDBPyConnection, zones: list[str], lo: Any,
           hi: Any) -> list[list[tuple[np.datetime64 | None, int]]] | None:
    """Each zone's offsets over [``lo``, ``hi``] (naive UTC): ``[(None, offset), (change,
    offset), ...]``, the changes to the minute (probed daily, then hourly, then by the
    minute), so events need no time-zone conversion each. Two changes within one day (no
    zone has them) would be missed. None when the span and zones ask for over
    :data:`MAX_PROBES` daily probes."""
    day0 = np.datetime64(pd.Timestamp(lo).floor("D").to_datetime64(), "us")
    days = int((np.datetime64(pd.Timestamp(hi).to_datetime64(), "us") - day0)
               // np.timedelta64(1, "D")) + 2
    if not zones or days * len(zones) > MAX_PROBES:
        return None
    step = np.timedelta64(1, "D").astype("timedelta64[us]")
    grid = day0 + step * np.arange(days)
    zid = np.repeat(np.arange(len(zones)), days)
    off = _probe(cur, zones, zid, np.tile(grid, len(zones))).reshape(len(zones), days)
    z, k = np.nonzero(off[:, 1:] != off[:, :-1])  # a change in (grid[k], grid[k + 1]]
    new = off[z, k + 1]
    hour = np.timedelta64(1, "h").astype("timedelta64[us]")
    at = _first_at(cur, zones, z, grid[k], new, hour, 24)
    at = _first_at(cur, zones, z, at - hour, new, np.timedelta64(60_000_000, "us"), 60)
    out: list[list[tuple[np.datetime64 | None, int]]] = [[(None, int(o))] for o in off[:, 0]]
    for zi, when, o in zip(z.tolist(), at, new.tolist(), strict=True):
        out[zi].append((when, int(o)))
    return out


def _clock_sql(segments: list[tuple[np.datetime64 | None, int]], t: str) -> str:
    """SQL of one zone's offset at ``t`` from its :func:`clocks` segments."""
    if len(segments) == 1:
        return str(segments[0][1])
    whens = " ".join(f"WHEN {t} < TIMESTAMP '{pd.Timestamp(start)}' THEN {prev}"
                     for (_, prev), (start, _) in zip(segments[:-1], segments[1:],
                                                      strict=True))
    return f"(CASE {whens} ELSE {segments[-1][1]} END)"


def fill(cur: duckdb.DuckDBPyConnection, table: str, where: str = "TRUE",
         given: str | None = None) -> dict[str, Any]:
    """Fill the unknown ``tz_offset_min`` of the rows of ``table`` matching ``where`` from
    their coordinates (in place); returns ``{"basis", "events", "zones"}``: the basis of most
    events, events per basis and the most common zones looked up.

    ``given`` is the basis of the offsets already there (``BASIS_FILE`` or ``BASIS_FORMAT``;
    None: nothing could have set them, so any found are counted as the file's)."""
    need = f"({where}) AND {TZ} IS NULL AND {LA} IS NOT NULL AND {LO} IS NOT NULL"
    known, no_coords, lo, hi = cur.execute(
        f"SELECT count(*) FILTER ({TZ} IS NOT NULL), count(*) FILTER ({TZ} IS NULL AND "
        f"({LA} IS NULL OR {LO} IS NULL)), min({T}) FILTER ({need}), max({T}) FILTER ({need}) "
        f"FROM {table} WHERE {where}").fetchall()[0]
    events = dict.fromkeys(BASES, 0)
    events[given or BASIS_FILE] += int(known)
    events[BASIS_UTC] += int(no_coords)
    top: list[str] = []
    if lo is not None:
        cells = cur.execute(f"SELECT {_cell(LA)} AS cy, {_cell(LO)} AS cx, count(*) AS n "
                            f"FROM {table} WHERE {need} GROUP BY ALL").fetchnumpy()
        cy, cx = np.asarray(cells["cy"], dtype="int32"), np.asarray(cells["cx"], dtype="int32")
        n = np.asarray(cells["n"], dtype="int64")
        zid, names = zone_codes(cy / CELLS_PER_DEGREE, cx / CELLS_PER_DEGREE,
                                _known_zones(cur))
        placed = zid >= 0
        per_zone = np.bincount(zid[placed], weights=n[placed], minlength=len(names))
        events[BASIS_ZONE] += int(n[placed].sum())
        events[BASIS_LONGITUDE] += int(n[~placed].sum())
        top = [names[k] for k in np.argsort(-per_zone, kind="stable")[:TOP_ZONES]]
        _update(cur, table, need, pd.DataFrame({"cy": cy, "cx": cx, "k": zid}), names,
                clocks(cur, names, lo, hi))
    events = {b: n for b, n in events.items() if n}
    basis = max(events, key=lambda b: events[b]) if events else BASIS_UTC
    return {"basis": basis, "events": events, "zones": [str(z) for z in top]}


#: Far bounds of the first and last segment of a clock (the workspace keeps times inside).
_EVER = (pd.Timestamp(TIME_MIN), pd.Timestamp(TIME_MAX))


def _update(cur: duckdb.DuckDBPyConnection, table: str, need: str, cells: pd.DataFrame,
            names: list[str],
            segments: list[list[tuple[np.datetime64 | None, int]]] | None) -> None:
    """One UPDATE of the rows ``need`` selects: the offset of their cell's zone (``cells``:
    cy, cx, k = index in ``names`` or -1: no zone, longitude rule) at their instant.

    Zones whose offsets agree over the span share a clock (the 36 zones of the contiguous
    US and its neighbours have 8 in a year). Up to :data:`MAX_CASE_CLOCKS` clocks: a CASE
    over the clocks' change instants (no join at all when every cell has the same clock);
    more: a join to the clocks' segments; no ``segments`` (too many to find): DuckDB's ICU
    converts each event in its zone."""
    t, lon = f"{table}.{T}", f"{table}.{LO}"
    solar = solar_offset_sql(lon)
    cell = f"c.cy = {_cell(f'{table}.{LA}')} AND c.cx = {_cell(f'{table}.{LO}')}"
    zone = cells["k"].to_numpy()
    if segments is None:
        side = pd.DataFrame({"k": [-1, *range(len(names))], "zone": [None, *names]})
        expr = f"CASE WHEN z.zone IS NULL THEN {solar} ELSE {offset_sql('z.zone', t)} END"
        _joined(cur, table, expr, cells, side, f"{need} AND {cell} AND z.k = c.k")
        return
    index: dict[tuple, int] = {}
    kid = np.array([index.setdefault(tuple(seg), len(index)) for seg in segments],
                   dtype="int32")
    cells = cells.assign(k=np.where(zone >= 0, kid[np.maximum(zone, 0)], -1))
    clock = list(index)
    if len(clock) <= MAX_CASE_CLOCKS and all(len(c) <= MAX_CHANGES for c in clock):
        branch = {-1: solar, **{k: _clock_sql(list(c), t) for k, c in enumerate(clock)}}
        kinds = np.unique(cells["k"].to_numpy()).tolist()
        if len(kinds) == 1:
            cur.execute(f"UPDATE {table} SET {TZ} = {branch[kinds[0]]} WHERE {need}")
            return
        expr = f"CASE c.k {' '.join(f'WHEN {k} THEN {branch[k]}' for k in kinds)} END"
        _joined(cur, table, expr, cells, None, f"{need} AND {cell}")
        return
    rows = [(-1, *_EVER, None)]
    for k, c in enumerate(clock):
        starts = [_EVER[0]] + [pd.Timestamp(start) for start, _ in c[1:]]
        rows += [(k, a, b, off) for a, b, (_, off) in zip(
            starts, starts[1:] + [_EVER[1]], c, strict=True)]
    side = pd.DataFrame(rows, columns=["k", "a", "b", "off"]).astype({"off": "Int32"})
    _joined(cur, table, f"coalesce(z.off, {solar})", cells, side,
            f"{need} AND {cell} AND z.k = c.k AND {t} >= z.a AND {t} < z.b")


def _joined(cur: duckdb.DuckDBPyConnection, table: str, expr: str, cells: pd.DataFrame,
            side: pd.DataFrame | None, where: str) -> None:
    """UPDATE ``table`` SET tz_offset_min = ``expr`` FROM ``cells`` AS c (and ``side`` AS z)
    WHERE ``where``, the frames registered for the statement."""
    views = {f"_ts_cells_{uuid.uuid4().hex[:10]}": cells}
    if side is not None:
        views[f"_ts_side_{uuid.uuid4().hex[:10]}"] = side
    for name, frame in views.items():
        cur.register(name, frame)
    try:
        tables = ", ".join(f"{name} AS {alias}" for name, alias in zip(views, "cz",
                                                                        strict=False))
        cur.execute(f"UPDATE {table} SET {TZ} = {expr} FROM {tables} WHERE {where}")
    finally:
        for name in views:
            cur.unregister(name)

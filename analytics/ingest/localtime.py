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
   daylight saving included (DuckDB's ICU ``timezone``, over a join with the small
   cell -> zone table);
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

T, LA, LO, TZ = schema.TS, schema.LAT, schema.LON, schema.TZ_OFFSET
#: Cells per degree of the zone lookup: 0.01 degrees, about 1.1 km north-south.
CELLS_PER_DEGREE = 100
#: How many zone names the report lists (most events first).
TOP_ZONES = 5

_names_lock = threading.Lock()
_icu_names: set[str] = set()


def _known_zones(cur: duckdb.DuckDBPyConnection) -> set[str]:
    """The zone names DuckDB's ICU knows (read once per process)."""
    with _names_lock:
        if not _icu_names:
            _icu_names.update(r[0] for r in cur.execute(
                "SELECT name FROM pg_timezone_names()").fetchall())
        return _icu_names


def zone_names(lat: np.ndarray, lon: np.ndarray, known: set[str] | None = None) -> np.ndarray:
    """The IANA zone at each point (object array), None where no country's zone covers it
    (open sea: tzfpy's ``Etc/...`` bands, which the longitude rule matches) or where the name
    is not in ``known`` (the zones DuckDB can convert to)."""
    out = np.empty(len(lat), dtype=object)
    for k, (y, x) in enumerate(zip(lat.tolist(), lon.tolist(), strict=True)):
        name = tzfpy.get_tz(x, y)
        ok = name and not name.startswith("Etc/") and (known is None or name in known)
        out[k] = name if ok else None
    return out


def _cell(col: str) -> str:
    return f"CAST(round({col} * {CELLS_PER_DEGREE}) AS INTEGER)"


def fill(cur: duckdb.DuckDBPyConnection, table: str, where: str = "TRUE",
         given: str | None = None) -> dict[str, Any]:
    """Fill the unknown ``tz_offset_min`` of the rows of ``table`` matching ``where`` from
    their coordinates (in place); returns ``{"basis", "events", "zones"}``: the basis of most
    events, events per basis and the most common zones looked up.

    ``given`` is the basis of the offsets already there (``BASIS_FILE`` or ``BASIS_FORMAT``;
    None: nothing could have set them, so any found are counted as the file's)."""
    known, no_coords = cur.execute(
        f"SELECT count(*) FILTER ({TZ} IS NOT NULL), count(*) FILTER ({TZ} IS NULL AND "
        f"({LA} IS NULL OR {LO} IS NULL)) FROM {table} WHERE {where}").fetchone()
    need = f"({where}) AND {TZ} IS NULL AND {LA} IS NOT NULL AND {LO} IS NOT NULL"
    cells = cur.execute(f"SELECT {_cell(LA)} AS cy, {_cell(LO)} AS cx, count(*) AS n "
                        f"FROM {table} WHERE {need} GROUP BY ALL").fetchnumpy()
    events = dict.fromkeys(BASES, 0)
    events[given or BASIS_FILE] += int(known)
    events[BASIS_UTC] += int(no_coords)
    top: list[str] = []
    if len(cells["n"]):
        zone = zone_names(np.asarray(cells["cy"]) / CELLS_PER_DEGREE,
                          np.asarray(cells["cx"]) / CELLS_PER_DEGREE, _known_zones(cur))
        frame = pd.DataFrame({"cy": np.asarray(cells["cy"], dtype="int32"),
                              "cx": np.asarray(cells["cx"], dtype="int32"),
                              "zone": pd.array(zone, dtype="string")})
        n = np.asarray(cells["n"], dtype="int64")
        placed = frame["zone"].notna().to_numpy()
        events[BASIS_ZONE] += int(n[placed].sum())
        events[BASIS_LONGITUDE] += int(n[~placed].sum())
        per_zone = pd.Series(n[placed], index=frame["zone"][placed]).groupby(level=0).sum()
        top = per_zone.sort_values(ascending=False, kind="stable").index[:TOP_ZONES].tolist()
        _update(cur, table, need, frame)
    events = {b: n for b, n in events.items() if n}
    basis = max(events, key=lambda b: events[b]) if events else BASIS_UTC
    return {"basis": basis, "events": events, "zones": [str(z) for z in top]}


def _update(cur: duckdb.DuckDBPyConnection, table: str, need: str,
            cells: pd.DataFrame) -> None:
    """One UPDATE joining ``table`` to the cell -> zone frame: the zone's offset at each
    event's instant (daylight saving included), or the longitude rule where no zone."""
    view = f"_ts_zones_{uuid.uuid4().hex[:10]}"
    cur.register(view, cells)
    try:
        utc = f"timezone('UTC', {table}.{T})"  # naive UTC -> TIMESTAMPTZ, whatever the session
        offset = (f"CAST(round((epoch(timezone(c.zone, {utc})) - epoch({table}.{T})) / 60) "
                  "AS INTEGER)")
        cur.execute(
            f"UPDATE {table} SET {TZ} = CASE WHEN c.zone IS NULL "
            f"THEN {solar_offset_sql(f'{table}.{LO}')} ELSE {offset} END "
            f"FROM {view} AS c WHERE {need} "
            f"AND c.cy = {_cell(f'{table}.{LA}')} AND c.cx = {_cell(f'{table}.{LO}')}")
    finally:
        cur.unregister(view)

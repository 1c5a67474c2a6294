"""Memoised spatial analytics for the Map and Users pages (heat points, hexagons, zones, flows,
paths), each computed inside DuckDB on the stored events table with the page's filter.

Everything here needs coordinates: :func:`coordinates_note` says politely why a dataset has no
map (MovieLens, Taobao) and pages show that instead of calling the rest. Drawing-sized
results are sampled deterministically (a hash of user and time), so the same filter always
draws the same points and the browser never receives millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ...analytics.geo import with_coords
from ...analytics.rollups import spatial as answers
from ...analytics.rollups import users as user_answers
from ...analytics.schema import LAT, LON, TS, USER
from ...analytics.spatial import density as space
from ...analytics.spatial import flows as fl
from ...analytics.spatial import mobility, zones_sql
from ...analytics.spatial.zones import Zones
from .analytics import EventFilter, sql_where
from .workspace import dataset_info, get_store, memoize_dataset

#: Most points a heat layer draws; beyond this the events are sampled.
MAX_HEAT_POINTS = 25_000
#: Users whose movement paths the map replays, and points per path.
PATH_USERS = 25
PATH_POINTS = 120


def coordinates_note(name: str) -> str | None:
    """None when the dataset has coordinates, else the sentence a page shows instead."""
    info = dataset_info(name)
    if info.has_coordinates:
        return None
    return (f"{name!r} has no coordinates: its events carry no latitude/longitude "
            f"(ratings, clicks or purchases such as MovieLens or Taobao), so there is nothing "
            f"to put on a map. Its time patterns are on the Overview page and per-user "
            f"behaviour on the Users page. To see maps, import check-ins or GPS fixes with "
            f"latitude/longitude columns on the Data page, or try the built-in sample.")


@memoize_dataset
def located_span(name: str, flt: EventFilter | None = None) -> tuple[pd.Timestamp | None,
                                                                      pd.Timestamp | None, int]:
    """(first time, last time, number) of the filtered events that have coordinates."""
    table, where, params = sql_where(name, flt)
    cur = get_store().cursor()
    try:
        lo, hi, n = answers.located_span(cur, table, where, params)
    finally:
        cur.close()
    return (pd.Timestamp(lo) if lo is not None else None,
            pd.Timestamp(hi) if hi is not None else None, int(n))


@memoize_dataset
def heat_points(name: str, flt: EventFilter | None = None,
                limit: int = MAX_HEAT_POINTS) -> pd.DataFrame:
    """Located events to draw (``lat, lon, ts, category``), a deterministic sample of at most
    ``limit``; ``attrs["total"]`` is how many matched before sampling."""
    table, where, params = sql_where(name, flt)
    con = get_store().cursor()
    try:
        out = answers.sample_points_sql(con, table, limit, where, params)
    finally:
        con.close()
    out.attrs["total"] = located_span(name, flt)[2]
    return out


def hex_resolution(name: str) -> int:
    """An H3 resolution giving a few hundred cells over the dataset's bounding box."""
    return space.auto_hex_resolution(dataset_info(name).bbox)


@memoize_dataset
def hex_cells(name: str, flt: EventFilter | None = None,
              resolution: int | None = None) -> pd.DataFrame:
    """Events and users per H3 hexagon with the cell polygon (``analytics.space``)."""
    table, where, params = sql_where(name, flt)
    res = resolution or hex_resolution(name)
    con = get_store().cursor()
    try:
        out = answers.hex_density_sql(con, table, res, where=where, params=params,
                                      polygons=True)
    finally:
        con.close()
    out.attrs["resolution"] = res
    return out


@dataclass(frozen=True)
class ZoneResult:
    zones: pd.DataFrame       # zone_id, lat, lon, n_places, visits, users, radius_km, polygon,
    #                           wkt, trend columns (see analytics.zones)
    activity: pd.DataFrame    # zone_id, window_start, visits, users, share
    window: str
    eps_m: float
    min_visits: int


@memoize_dataset
def zones(name: str, flt: EventFilter | None = None) -> ZoneResult:
    """Aggregation zones (DBSCAN of visited places) with per-window visits and trend labels,
    with the page's parameters (``analytics.zones_sql.page_zone_params``: ``min_visits``
    scales with the located events, zones of fewer than 3 users are dropped). Unfiltered,
    they come stored with the dataset's rollup."""
    start, end, n = located_span(name, flt)
    spec = zones_sql.page_zone_params(n, start, end)
    window, eps_m, min_visits = spec["window"], spec["eps_m"], spec["min_visits"]
    table, where, params = sql_where(name, flt)
    con = get_store().cursor()
    try:
        if n == 0:
            found = Zones(zones=pd.DataFrame(), places=pd.DataFrame(),
                          activity=pd.DataFrame())
        else:
            found = answers.find_zones_sql(con, table, **spec, where=where, params=params)
    finally:
        con.close()
    return ZoneResult(zones=found.zones, activity=found.activity, window=window, eps_m=eps_m,
                      min_visits=min_visits)


@memoize_dataset
def flows(name: str, flt: EventFilter | None = None, top: int = 200) -> pd.DataFrame:
    """The ``top`` zone-to-zone flows (consecutive events of a user at most 12 h apart)."""
    z = zones(name, flt).zones
    if z.empty:
        return pd.DataFrame(columns=[fl.ORIGIN, fl.DEST, fl.TRIPS, fl.USERS])
    table, where, params = sql_where(name, flt)
    con = get_store().cursor()
    try:
        out = answers.od_flows_sql(con, table, z, max_gap=zones_sql.PAGE_FLOW_GAP,
                                   where=where, params=params)
    finally:
        con.close()
    return out.head(top).reset_index(drop=True)


@memoize_dataset
def paths(name: str, flt: EventFilter | None = None, users: int = PATH_USERS,
          max_points: int = PATH_POINTS) -> pd.DataFrame:
    """Movement paths (``analytics.mobility.user_paths``) of a deterministic sample of up to
    ``users`` users with at least 3 located events, for replay. ``timestamps`` are seconds
    since the first located event of the filter (``located_span(name, flt)[0]``); the page's
    default comes stored by the summary build."""
    table, where, params = sql_where(name, flt)
    start = located_span(name, flt)[0]
    con = get_store().cursor()
    try:
        got = answers.page_paths(con, table, users, max_points, start, where, params)
    finally:
        con.close()
    return _no_paths() if got is None else got


@memoize_dataset
def user_paths(name: str, user: str, max_points: int = 400) -> pd.DataFrame:
    """All movement paths of one user (each trip thinned to ``max_points``); ``timestamps``
    are seconds since the user's first located event."""
    con = get_store().cursor()
    try:
        ev = with_coords(user_answers.user_events_sql(con, get_store().table(name), user,
                                                      [USER, TS, LAT, LON]))
    finally:
        con.close()
    if ev.empty:
        return _no_paths()
    return mobility.user_paths(ev, idle_gap="12h", max_points=max_points,
                               reference=ev[TS].min())


def _no_paths() -> pd.DataFrame:
    return pd.DataFrame({USER: pd.Series(dtype="string"),
                         mobility.TRIP: pd.Series(dtype="int64"),
                         mobility.PATH: pd.Series(dtype="object"),
                         mobility.TIMESTAMPS: pd.Series(dtype="object")})

"""Memoised spatial analytics for the Map and Users pages (heat points, hexagons, zones, flows,
paths), each computed inside DuckDB on the stored events table with the page's filter.

Everything here needs coordinates: :func:`coordinates_note` says politely why a dataset has no
map (MovieLens, Taobao) and pages show that instead of calling the rest. Drawing-sized
results are sampled deterministically (a hash of user and time), so the same filter always
draws the same points and the browser never receives millions of rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ...analytics.geo import with_coords
from ...analytics.rollups import spatial as answers
from ...analytics.rollups import users as user_answers
from ...analytics.schema import LAT, LON, TS, USER
from ...analytics.spacetime import WINDOW
from ...analytics.spatial import density as space
from ...analytics.spatial import flows as fl
from ...analytics.spatial import mobility, zones_sql
from ...analytics.spatial import zones as zn
from ...analytics.temporal import periods
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
    zones: pd.DataFrame       # zone_id, name, lat, lon, n_places, visits, users, share,
    #                           radius_km, extent_km, polygon, wkt, trend columns
    #                           (analytics.spatial.zones), most visited first
    activity: pd.DataFrame    # zone_id, window_start, visits, users, share, complete
    window: str
    eps_m: float
    min_visits: int
    located: int = 0          # located events of the filter
    params: dict | None = None  # the settings the zones were found with (whole dataset)
    partial: str = ""         # the partial windows left out of the trend test, for users
    filtered: bool = False    # zones of the whole dataset recounted for a filter

    @property
    def coverage(self) -> float:
        """Share of the filter's located events at the zones' places."""
        return float(self.zones[zn.SHARE].sum()) if len(self.zones) else 0.0

    def complete_activity(self) -> pd.DataFrame:
        """The activity over the complete windows (the ones the trend test uses), or all of
        it when fewer than two windows are complete."""
        a = self.activity
        if a.empty or zn.COMPLETE not in a.columns:
            return a
        done = a[a[zn.COMPLETE]]
        return done if done[WINDOW].nunique() >= 2 else a


@memoize_dataset
def zones(name: str, flt: EventFilter | None = None) -> ZoneResult:
    """Aggregation zones with per-window visits and trend labels at the page's settings
    (``analytics.spatial.zones_sql.page_zone_params``: DBSCAN at 100 m, no zone wider than
    1.5 km or holding over 5% of the events unless one venue, ``min_visits`` scaled with the
    located events, zones of fewer than 3 users dropped).

    Zones are found on the whole dataset (stored with its summary tables); a filter only
    recounts them (its visits, users and places, zones it never visits left out) and tests
    its own trend, so a filter never has more zones than the whole data and a zone keeps its
    id and name under every filter. The trend test leaves partial first and last windows
    out (``analytics.temporal.periods``)."""
    _, _, n_all = located_span(name)
    if n_all == 0:
        empty = zn.empty_activity()
        return ZoneResult(zones=pd.DataFrame(), activity=empty, window="month", eps_m=0.0,
                          min_visits=0)
    start, end, n = located_span(name, flt)
    window = zones_sql.page_zone_params(n, start, end)["window"]
    table, where, params = sql_where(name, flt)
    con = get_store().cursor()
    try:
        whole_spec = answers.page_zone_params(con, get_store().table(name), n_all,
                                              *located_span(name)[:2])
        if where is None:
            window = whole_spec["window"]
        found = answers.find_zones_sql(con, table, **whole_spec)
        if where is not None:
            found = zn.Zones(zones=pd.DataFrame(), places=found.places,
                             activity=zn.empty_activity()) if n == 0 else \
                answers.zones_for_subset_sql(
                    con, table, found, window, whole_spec["alpha"], whole_spec["min_change"],
                    whole_spec["relative"], where, params)
    finally:
        con.close()
    return ZoneResult(zones=found.zones, activity=found.activity, window=window,
                      eps_m=whole_spec["eps_m"], min_visits=whole_spec["min_visits"],
                      located=n, params={k: v for k, v in whole_spec.items() if k != "window"},
                      partial=_partial_note(found.activity, window, start, end),
                      filtered=where is not None)


def _partial_note(activity: pd.DataFrame, window: str, start: Any, end: Any) -> str:
    """The partial windows of the trend, as users read them ("" when none)."""
    if activity.empty or start is None or window not in ("hour", "day", "week", "month"):
        return ""
    starts = pd.DatetimeIndex(sorted(activity[WINDOW].unique()))
    return periods.describe(periods.partial_periods(starts, window, start, end), window)


def zones_summary(name: str) -> dict[str, Any]:
    """The Map page's zones of dataset ``name`` at its default settings as a JSON-safe dict
    (``trailscope aggregate zones NAME --json``): ``dataset``, ``params``, ``window``,
    ``located`` events, ``coverage`` (share of them in zones), ``partial_windows`` (left out
    of the trend test) and one object per zone, most visited first: ``zone``, ``name``,
    ``events``, ``users``, ``places``, ``extent_km``, ``share``, ``trend``, ``change`` (the
    Sen line's relative change over the complete windows, >= -1; null when it starts at 0)
    and ``p_value`` (the Mann-Kendall test the trend label comes from)."""
    z = zones(name)
    rows = []
    for r in z.zones.itertuples(index=False):
        rows.append({"zone": int(r.zone_id), "name": str(r.name), "events": int(r.visits),
                     "users": int(r.users), "places": int(r.n_places),
                     "extent_km": round(float(r.extent_km), 3), "share": _num(r.share, 5),
                     "trend": getattr(r, "trend", None),
                     "change": _num(getattr(r, zn.CHANGE, None), 4),
                     "p_value": _num(getattr(r, zn.P_VALUE, None), 5)})
    params = {k: v if v is None or isinstance(v, str | bool | int) else float(v)
              for k, v in (z.params or {}).items()}
    return {"dataset": name, "params": params, "window": z.window, "located": z.located,
            "coverage": round(z.coverage, 5), "partial_windows": z.partial, "zones": rows}


def _num(value: Any, digits: int) -> float | None:
    """A float rounded to ``digits``, None for a missing or non-finite value."""
    if value is None or not isinstance(value, int | float | np.floating | np.integer):
        return None
    v = float(value)
    return round(v, digits) if math.isfinite(v) else None


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

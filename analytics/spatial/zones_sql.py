"""Aggregation zones on a stored DuckDB table: the heavy group-bys in SQL, the rest shared.

``find_zones_sql(con, store.table(name), ...)`` returns what
:func:`analytics.zones.find_zones` returns for the same events, but only small tables leave
DuckDB: one row per place (to cluster), per distinct coordinate (to look zones up), per
zone (distinct users) and per zone x window (activity). Clustering, outlines and trends run
in Python on those, through the same code as the pandas version.
"""

from __future__ import annotations

import json
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from ..geo import has_coords_sql, latlon_from_xyz
from ..rollups import tables as rollup
from ..schema import ITEM, LAT, LON, TS, USER
from ..spacetime import WINDOW, Window, all_windows, window_sql
from .density import registered
from .zones import (
    NOISE,
    PLACE_DECIMALS,
    POLYGON,
    USERS,
    VISITS,
    ZONE,
    Zones,
    assign_zones,
    empty_activity,
    fill_activity,
    with_trends,
    zones_from_places,
)


def _located(table: str, where: str | None, columns: list[str]) -> str:
    """Subquery of the located events of ``table`` (optionally filtered by ``where``)."""
    cond = has_coords_sql() + (f" AND ({where})" if where else "")
    return f"(SELECT {', '.join(columns)} FROM {table} WHERE {cond})"


def places_query(src: str) -> str:
    """SQL of one row per item of ``src`` (located events): unit-vector sums, visits, users."""
    return (f"SELECT {ITEM}, sum(cos(radians({LAT})) * cos(radians({LON}))) AS x, "
            f"sum(cos(radians({LAT})) * sin(radians({LON}))) AS y, sum(sin(radians({LAT}))) "
            f"AS z, count(*) AS {VISITS}, count(DISTINCT {USER}) AS {USERS} "
            f"FROM {src} GROUP BY {ITEM} ORDER BY {ITEM}")


def visited_places_sql(con: duckdb.DuckDBPyConnection, table: str, where: str | None = None,
                       params: list | None = None) -> pd.DataFrame:
    """:func:`analytics.zones.visited_places` in DuckDB: item, lat, lon, visits, users."""
    ru = rollup.for_sql(con, table, where)
    if ru is not None:
        df = ru.df(f"SELECT * FROM {ru.t('places_items')}")
    else:
        df = con.execute(places_query(_located(table, where, [USER, ITEM, LAT, LON])),
                         params or []).df()
    if df.empty:
        raise ValueError(
            f"finding zones needs events with coordinates, but {table} has none with a usable "
            f"{LAT}/{LON}; import a dataset with latitude/longitude columns"
        )
    lat, lon = (np.round(v, PLACE_DECIMALS) for v in latlon_from_xyz(df["x"], df["y"], df["z"]))
    return pd.DataFrame({ITEM: df[ITEM], LAT: lat, LON: lon,
                         VISITS: df[VISITS].astype("int64"), USERS: df[USERS].astype("int64")})


def zone_activity_sql(con: duckdb.DuckDBPyConnection, table: str, zones: pd.DataFrame,
                      window: Window, where: str | None = None,
                      params: list | None = None) -> pd.DataFrame:
    """:func:`analytics.zones.zone_activity` with the per-window counting in DuckDB."""
    if zones.empty:
        return empty_activity()
    ru = rollup.for_sql(con, table, where)
    if ru is None:
        src = _located(table, where, [USER, TS, LAT, LON])
        lo, hi = con.execute(f"SELECT min({TS}), max({TS}) FROM {src}",
                             params or []).fetchone()
        coords = con.execute(f"SELECT DISTINCT {LAT}, {LON} FROM {src}", params or []).df()
        key = [LAT, LON]
    else:  # integer user and place ids of the rollup's event table; same rows, same counts
        src = (f"(SELECT user_idx AS {USER}, {TS}, coord_idx FROM {ru.t('ev')} "
               "WHERE coord_idx IS NOT NULL)")
        lo, hi = ru.one(f"SELECT located_first, located_last FROM {ru.t('summary')}")
        coords = ru.df(f"SELECT * FROM {ru.t('places')}")
        key = ["coord_idx"]
    if lo is None:
        return empty_activity()
    lookup = coords.assign(**{ZONE: assign_zones(coords, zones).to_numpy("int64")})
    lookup = lookup.loc[lookup[ZONE] != NOISE, key + [ZONE]]
    w_expr, w_cond = window_sql(window, f"e.{TS}")
    on = " AND ".join(f"e.{k} = z.{k}" for k in key)
    with registered(con, lookup, "zone_lookup") as view:
        df = con.execute(
            f"SELECT {w_expr} AS {WINDOW}, coalesce(z.{ZONE}, {NOISE}) AS {ZONE}, "
            f"count(*) AS {VISITS}, count(DISTINCT e.{USER}) AS {USERS} FROM {src} e "
            f"LEFT JOIN {view} z ON {on} WHERE {w_cond} GROUP BY 1, 2",
            [] if ru else params or []).df()
    df[WINDOW] = df[WINDOW].astype("datetime64[us]")
    totals = df.groupby(WINDOW)[VISITS].sum()
    counts = df[df[ZONE] != NOISE].set_index([ZONE, WINDOW])[[VISITS, USERS]]
    return fill_activity(counts, totals, zones, all_windows(pd.Timestamp(lo), pd.Timestamp(hi),
                                                            window))


def find_zones_sql(con: duckdb.DuckDBPyConnection, table: str, eps_m: float = 100.0,
                   min_visits: int = 50, method: Literal["dbscan", "hdbscan"] = "dbscan",
                   min_cluster_size: int = 5, buffer_m: float | None = None,
                   window: Window = None, alpha: float = 0.05, min_change: float = 0.2,
                   relative: bool = True, min_users: int = 1, where: str | None = None,
                   params: list | None = None) -> Zones:
    """:func:`analytics.zones.find_zones` on a DuckDB table; ``where``/``params`` filter it.

    The Map page's zones of a whole dataset (:func:`page_zone_params`) come stored with its
    rollup."""
    ru = rollup.for_sql(con, table, where)
    if ru is not None:
        stored = _stored_zones(ru, {
            "eps_m": eps_m, "min_visits": min_visits, "method": method,
            "min_cluster_size": min_cluster_size, "buffer_m": buffer_m, "window": window,
            "alpha": alpha, "min_change": min_change, "relative": relative,
            "min_users": min_users})
        if stored is not None:
            return stored
    places = visited_places_sql(con, table, where, params)
    src = _located(table, where, [USER, ITEM])
    if ru is not None:  # integer ids: items are looked up once, events joined on item_idx
        src = (f"(SELECT e.user_idx AS {USER}, i.{ITEM} FROM {ru.t('ev')} e JOIN "
               f"{ru.t('items')} i ON e.item_idx = i.item_idx WHERE e.coord_idx IS NOT NULL)")

    def users_of(labelled: pd.DataFrame) -> pd.Series:
        labels = labelled.loc[labelled[ZONE] != NOISE, [ITEM, ZONE]]
        with registered(con, labels, "place_labels") as view:
            df = con.execute(
                f"SELECT m.{ZONE}, count(DISTINCT e.{USER}) AS n FROM {src} e "
                f"JOIN {view} m ON e.{ITEM} = m.{ITEM} GROUP BY 1",
                [] if ru else params or []).df()
        return pd.Series(df["n"].to_numpy("int64"), index=df[ZONE].to_numpy(np.int64))

    zones, places = zones_from_places(places, users_of, eps_m=eps_m, min_visits=min_visits,
                                      method=method, min_cluster_size=min_cluster_size,
                                      buffer_m=buffer_m, min_users=min_users)
    activity = empty_activity()
    if window is not None and not zones.empty:
        activity = zone_activity_sql(con, table, zones, window, where, params)
        zones = with_trends(zones, activity, relative, alpha, min_change)
    return Zones(zones=zones, places=places, activity=activity)


# -- the Map page's zones of a whole dataset, stored with its rollup ---------------------------
#: Largest gap between two events of a user that still makes a move, on the Map page.
PAGE_FLOW_GAP = "12h"
_PAGE_DEFAULTS = {"eps_m": 100.0, "method": "dbscan", "min_cluster_size": 5, "buffer_m": None,
                  "alpha": 0.05, "min_change": 0.2, "relative": True, "min_users": 3}


def page_zone_params(located: int, first: pd.Timestamp | None,
                     last: pd.Timestamp | None) -> dict:
    """The Map page's zone parameters for ``located`` events between ``first`` and ``last``:
    DBSCAN at 100 m; ``min_visits`` scales with the events (a zone is a place many people
    go, at 10k events as at 1M), zones of fewer than 3 users dropped; the trend window is a
    day for up to 4 weeks of data, a week up to 30 weeks, else a month."""
    days = None if first is None or last is None else (pd.Timestamp(last)
                                                       - pd.Timestamp(first)).days
    window = "month" if days is None else "day" if days <= 28 else "week" if days <= 210 \
        else "month"
    return dict(_PAGE_DEFAULTS, min_visits=int(max(15, min(1000, located * 0.001))),
                window=window)


def _page_params(ru: rollup.Rollup) -> dict:
    n, first, last = ru.one(f"SELECT located, located_first, located_last "
                            f"FROM {ru.t('summary')}")
    return page_zone_params(int(n), first, last)


def build_page_zones(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    """Store the page's zones, their activity, places and 12 h flows (``rollup`` calls this
    while building, so the zones are found from the rollup's own tables)."""
    from .flows import _rollup_counts

    ru = rollup.Rollup(cur, name)
    params = _page_params(ru)
    found = find_zones_sql(cur, f'"events__{name}"', **params) if params["min_visits"] and \
        ru.one(f"SELECT located FROM {ru.t('summary')}")[0] else None
    if found is None or found.zones.empty:
        return
    zones = found.zones.assign(**{POLYGON: [json.dumps(r) for r in found.zones[POLYGON]]})
    moves = _rollup_counts(ru, found.zones, PAGE_FLOW_GAP, False)
    for what, frame in (("zones", zones), ("zone_activity", found.activity),
                        ("zone_places", found.places), ("zone_flows", moves)):
        cur.register("_rows", frame)  # rows come back in this order (insertion order)
        try:
            cur.execute(f"CREATE TABLE {ru.t(what)} AS SELECT * FROM _rows")
        finally:
            cur.unregister("_rows")


def _stored_zones(ru: rollup.Rollup, call: dict) -> Zones | None:
    """The stored page zones when ``call`` (find_zones_sql's parameters) asks for them."""
    if call != _page_params(ru) or not ru.has("zones"):
        return None
    zones = ru.df(f"SELECT * FROM {ru.t('zones')}")
    zones[POLYGON] = [json.loads(r) for r in zones[POLYGON]]
    activity = ru.df(f"SELECT * FROM {ru.t('zone_activity')}")
    activity[WINDOW] = activity[WINDOW].astype("datetime64[us]")
    return Zones(zones=zones, places=ru.df(f"SELECT * FROM {ru.t('zone_places')}"),
                 activity=activity)


def stored_flows(ru: rollup.Rollup, zones: pd.DataFrame, max_gap: object,
                 include_self: bool) -> pd.DataFrame | None:
    """The stored moves between the page's zones, when ``zones`` are those zones and the
    gap and self-moves are the page's; else None."""
    if include_self or max_gap is None or pd.Timedelta(max_gap) != pd.Timedelta(PAGE_FLOW_GAP) \
            or not ru.has("zones"):
        return None
    keys = ru.df(f"SELECT {ZONE}, {LAT}, {LON} FROM {ru.t('zones')}")
    if len(keys) != len(zones) or not keys.equals(
            zones[[ZONE, LAT, LON]].reset_index(drop=True).astype(keys.dtypes.to_dict())):
        return None
    return ru.df(f"SELECT * FROM {ru.t('zone_flows')}")

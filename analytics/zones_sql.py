"""Aggregation zones on a stored DuckDB table: the heavy group-bys in SQL, the rest shared.

``find_zones_sql(con, store.table(name), ...)`` returns what
:func:`analytics.zones.find_zones` returns for the same events, but only small tables leave
DuckDB: one row per place (to cluster), per distinct coordinate (to look zones up), per
zone (distinct users) and per zone x window (activity). Clustering, outlines and trends run
in Python on those, through the same code as the pandas version.
"""

from __future__ import annotations

from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from analytics import rollup
from analytics.geo import has_coords_sql, latlon_from_xyz
from analytics.schema import ITEM, LAT, LON, TS, USER
from analytics.space import registered
from analytics.spacetime import WINDOW, Window, all_windows, window_sql
from analytics.zones import (
    NOISE,
    PLACE_DECIMALS,
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
    """:func:`analytics.zones.find_zones` on a DuckDB table; ``where``/``params`` filter it."""
    places = visited_places_sql(con, table, where, params)
    ru = rollup.for_sql(con, table, where)
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

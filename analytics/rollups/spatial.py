"""Map questions answered from the summary tables when they can, else by the analyses.

Densities (``spatial.density``), heat points, zones (``spatial.zones_sql``), flows
(``spatial.flows``), replay paths (``spatial.mobility``) and the located span of a stored
table. Each function returns exactly what its analysis returns; see temporal.py for the rule.
The summary event table carries integer user, item and place ids, so the queries here group
integers where the raw ones hash strings.
"""

from __future__ import annotations

from typing import Any, Literal

import duckdb
import pandas as pd

from ..geo import has_coords_sql
from ..schema import CATEGORY, ITEM, LAT, LON, TS, USER
from ..spacetime import Window
from ..spatial import density, flows, mobility, zones_sql
from ..spatial.sql import registered, zone_lookup
from ..spatial.zones import EXTENT, MAX_EXTENT_KM, MAX_SHARE, ZONE, Zones
from ..store import events_table
from . import defaults, lookup
from .tables import HEAT_ROWS, Rollup

CELL = density.CELL


# -- densities --------------------------------------------------------------------------------
def density_rows(ru: Rollup, kind: str, size: float, window: Window,
                 stored: bool = True) -> pd.DataFrame:
    """``density.sql_density``'s rows for the whole dataset of ``ru``: read from its stored
    densities (the map's standard grids, ``tables.DENSITY_SPECS``) when ``stored`` and there,
    else counted over its event table, each distinct place's cell looked up once and users
    counted as integers."""
    key = density.density_key(kind, size, window)
    if stored and key is not None:
        got = ru.df(f"SELECT {density.WINDOW}, {CELL}, {density.COUNT}, {density.USERS} "
                    f"FROM {ru.t('density')} WHERE spec = ?", [key])
        if len(got):
            got[CELL] = got[CELL].astype("int64" if kind == "grid" else "string")
            got[density.WINDOW] = got[density.WINDOW].astype("datetime64[us]")
            return got if window is not None else got.drop(columns=density.WINDOW)
    if kind == "grid":
        lookup_sql = (f"(SELECT coord_idx, {density.grid_cell_ids_sql(size)} AS {CELL} "
                      f"FROM {ru.t('places')})")
        return density.sql_density(ru.con, _cells(ru, lookup_sql), CELL, window, None, None)
    places = ru.df(f"SELECT * FROM {ru.t('places')}")
    with registered(ru.con, density.hex_lookup(places, int(size)), "hex_lookup") as view:
        out = density.sql_density(ru.con, _cells(ru, view), CELL, window, None, None)
    out[CELL] = out[CELL].astype("string")
    return out


def _cells(ru: Rollup, lookup_sql: str) -> str:
    """The located events of ``ru`` with the cell of their place (``lookup_sql``: coord_idx,
    cell_id) and integer user ids: what ``sql_density`` groups, without a string hash."""
    return (f"(SELECT e.user_idx AS {USER}, e.{TS}, e.{LAT}, e.{LON}, c.{CELL} FROM "
            f"{ru.t('ev')} e JOIN {lookup_sql} c ON e.coord_idx = c.coord_idx)")


def grid_density_sql(con: duckdb.DuckDBPyConnection, table: str, cell_m: float = 500.0,
                     window: Window = None, where: str | None = None,
                     params: list | None = None, polygons: bool = False) -> pd.DataFrame:
    """``density.grid_density_sql``."""
    ru = lookup.for_sql(con, table, where)
    if ru is None:
        return density.grid_density_sql(con, table, cell_m, window, where, params, polygons)
    return density.finish_grid(density_rows(ru, "grid", cell_m, window), cell_m, window,
                               polygons)


def hex_density_sql(con: duckdb.DuckDBPyConnection, table: str, resolution: int = 8,
                    window: Window = None, where: str | None = None,
                    params: list | None = None, polygons: bool = False) -> pd.DataFrame:
    """``density.hex_density_sql``."""
    ru = lookup.for_sql(con, table, where)
    if ru is None:
        return density.hex_density_sql(con, table, resolution, window, where, params, polygons)
    return density.finish_hex(density_rows(ru, "hex", resolution, window), window, polygons)


def sample_points_sql(con: duckdb.DuckDBPyConnection, table: str, limit: int,
                      where: str | None = None, params: list | None = None) -> pd.DataFrame:
    """``density.sample_points_sql``: the summary tables store the draw-order hash, and the
    first HEAT_ROWS rows in that order."""
    ru = lookup.for_sql(con, table, where)
    if ru is None:
        return density.sample_points_sql(con, table, limit, where, params)
    small = int(limit) <= HEAT_ROWS
    return ru.df(f"SELECT {LAT}, {LON}, {TS}, {CATEGORY} FROM {ru.t('heat')} ORDER BY h "
                 f"LIMIT {int(limit)}" if small else
                 f"SELECT e.{LAT}, e.{LON}, e.{TS}, c.{CATEGORY} FROM (SELECT {LAT}, {LON}, {TS}, "
                 f"cat_idx, h FROM {ru.t('ev')} WHERE coord_idx IS NOT NULL ORDER BY h LIMIT "
                 f"{int(limit)}) e LEFT JOIN {ru.t('categories')} c ON e.cat_idx = c.cat_idx "
                 "ORDER BY e.h", arrow=True)


# -- zones ------------------------------------------------------------------------------------
class StoredLocated(zones_sql.LocatedEvents):
    """The located events of a whole dataset read from its summary tables: per-item sums
    stored, integer user and place ids, the span from the summary row. Same rows, same
    counts as the raw table."""

    def __init__(self, ru: Rollup) -> None:
        super().__init__(ru.con, events_table(ru.name))
        self.ru = ru

    def place_sums(self) -> pd.DataFrame:
        return self.ru.df(f"SELECT * FROM {self.ru.t('places_items')}")

    def user_items(self) -> tuple[str, list]:
        # items are looked up once, events joined on item_idx
        return (f"(SELECT e.user_idx AS {USER}, i.{ITEM} FROM {self.ru.t('ev')} e JOIN "
                f"{self.ru.t('items')} i ON e.item_idx = i.item_idx WHERE e.coord_idx IS NOT "
                "NULL)", [])

    def item_categories(self) -> tuple[str, list]:
        return (f"(SELECT i.{ITEM}, c.{CATEGORY} FROM {self.ru.t('ev')} e JOIN "
                f"{self.ru.t('items')} i ON e.item_idx = i.item_idx LEFT JOIN "
                f"{self.ru.t('categories')} c ON e.cat_idx = c.cat_idx WHERE e.coord_idx IS NOT "
                "NULL)", [])

    def span(self) -> tuple[Any, Any]:
        return self.ru.one(f"SELECT located_first, located_last FROM {self.ru.t('summary')}")

    def places(self) -> tuple[pd.DataFrame, list[str]]:
        return self.ru.df(f"SELECT * FROM {self.ru.t('places')}"), ["coord_idx"]

    def user_times(self) -> tuple[str, list]:
        return (f"(SELECT user_idx AS {USER}, {TS}, coord_idx FROM {self.ru.t('ev')} "
                "WHERE coord_idx IS NOT NULL)", [])


def find_zones_sql(con: duckdb.DuckDBPyConnection, table: str, eps_m: float = 100.0,
                   min_visits: int = 50, method: Literal["dbscan", "hdbscan"] = "dbscan",
                   min_cluster_size: int = 5, buffer_m: float | None = None,
                   window: Window = None, alpha: float = 0.05, min_change: float = 0.2,
                   relative: bool = True, min_users: int = 1, where: str | None = None,
                   params: list | None = None, max_extent_km: float | None = MAX_EXTENT_KM,
                   max_share: float | None = MAX_SHARE) -> Zones:
    """``zones_sql.find_zones_sql``: the Map page's zones of a whole dataset come stored
    (defaults.py); other unfiltered requests are found from the summary tables."""
    call = {"eps_m": eps_m, "min_visits": min_visits, "method": method,
            "min_cluster_size": min_cluster_size, "buffer_m": buffer_m, "window": window,
            "alpha": alpha, "min_change": min_change, "relative": relative,
            "min_users": min_users, "max_extent_km": max_extent_km, "max_share": max_share}
    ru = lookup.for_sql(con, table, where)
    if ru is None:
        return zones_sql.find_zones_sql(con, table, **call, where=where, params=params)
    stored = defaults.stored_zones(ru, call)
    if stored is not None and EXTENT in stored.zones.columns:  # not a set from older zones
        return stored
    return zones_sql.find_zones_in(StoredLocated(ru), **call)


def zones_for_subset_sql(con: duckdb.DuckDBPyConnection, table: str, whole: Zones,
                         window: Window = None, alpha: float = 0.05, min_change: float = 0.2,
                         relative: bool = True, where: str | None = None,
                         params: list | None = None) -> Zones:
    """``zones_sql.zones_for_subset_in``: the zones ``whole`` of the dataset recounted for
    its events matching ``where`` (always from the raw table: a filter has no summary)."""
    return zones_sql.zones_for_subset_in(zones_sql.LocatedEvents(con, table, where, params),
                                         whole, window, alpha, min_change, relative)


# -- flows ------------------------------------------------------------------------------------
def flow_counts(ru: Rollup, zones: pd.DataFrame, max_gap: str | pd.Timedelta | None,
                include_self: bool) -> pd.DataFrame:
    """The moves of ``flows.od_flows_sql`` (``origin, destination, trips, users``) from the
    summary tables' ``steps``, whose rows already carry the previous event's place and time
    (no window to run)."""
    lookup_rows = zone_lookup(ru.df(f"SELECT * FROM {ru.t('places')}"), zones, ["coord_idx"])
    conds = ["TRUE" if include_self else f"o.{ZONE} <> d.{ZONE}"]
    gap = flows.gap_us(max_gap)
    if gap is not None:
        conds.append(f"e.us - e.prev_us <= {gap}")
    with registered(ru.con, lookup_rows, "zone_lookup") as view:
        return ru.df(
            f"SELECT o.{ZONE} AS {flows.ORIGIN}, d.{ZONE} AS {flows.DEST}, count(*) AS "
            f"{flows.TRIPS}, count(DISTINCT e.user_idx) AS {flows.USERS} FROM {ru.t('steps')} e "
            f"JOIN {view} d ON e.coord_idx = d.coord_idx "
            f"JOIN {view} o ON e.prev_coord = o.coord_idx "
            f"WHERE {' AND '.join(conds)} GROUP BY 1, 2")


def od_flows_sql(con: duckdb.DuckDBPyConnection, table: str, zones: pd.DataFrame,
                 max_gap: str | pd.Timedelta | None = None, include_self: bool = False,
                 where: str | None = None, params: list | None = None) -> pd.DataFrame:
    """``flows.od_flows_sql``: the Map page's flows come stored (defaults.py)."""
    ru = lookup.for_sql(con, table, where)
    if ru is None:
        return flows.od_flows_sql(con, table, zones, max_gap, include_self, where, params)
    counts = defaults.stored_flows(ru, zones, max_gap, include_self)
    if counts is None:
        counts = flow_counts(ru, zones, max_gap, include_self)
    return flows.finish(counts, zones)


# -- replay paths and the located span ---------------------------------------------------------
def path_events_sql(con: Any, table: str, users: int, where: str | None = None,
                    params: list | None = None) -> pd.DataFrame:
    """``mobility.path_events_sql``: the per-user table knows who has 3 located events; one
    query (a semi-join: three times faster here than a literal IN list of the users)."""
    ru = lookup.for_sql(con, table, where)
    if ru is None:
        return mobility.path_events_sql(con, table, users, where, params)
    return ru.df(f"SELECT u.{USER}, e.{TS}, e.{LAT}, e.{LON} FROM {ru.t('ev')} e JOIN (SELECT "
                 f"user_idx, {USER} FROM {ru.t('users')} WHERE located >= 3 ORDER BY "
                 f"hash({USER}) LIMIT {int(users)}) u ON e.user_idx = u.user_idx WHERE "
                 f"e.coord_idx IS NOT NULL ORDER BY e.user_idx, e.us, e.{LAT}, e.{LON}")


def page_paths(con: Any, table: str, users: int, max_points: int,
               reference: pd.Timestamp | None, where: str | None = None,
               params: list | None = None, stored: bool = True) -> pd.DataFrame | None:
    """The Map page's movement paths (``mobility.user_paths``, 12 h idle gap) of a
    deterministic sample of ``users`` users with 3 located events, timestamps counted from
    ``reference``; None when no user has 3 located events. With ``stored`` the page's own
    request comes stored (defaults.py)."""
    if stored and defaults.is_page_paths(where, users, max_points):
        got = defaults.stored_page_paths(lookup.for_sql(con, table))
        if got is not None:
            return got
    ev = path_events_sql(con, table, users, where, params)
    if ev.empty:
        return None
    return mobility.user_paths(ev, idle_gap=defaults.PAGE_IDLE_GAP, max_points=max_points,
                               reference=reference)


def page_zone_params(con: Any, table: str, located: int, first: Any, last: Any) -> dict:
    """``zones_sql.page_zone_params`` of a whole dataset: those its stored page zones were
    found with when it has a fresh summary set (defaults.zone_params: appended events do not
    move them before the next build), else from ``located`` events between ``first`` and
    ``last``."""
    ru = lookup.for_sql(con, table, None)
    if ru is not None:
        return defaults.zone_params(ru)
    return zones_sql.page_zone_params(located, first, last)


def located_span(con: Any, table: str, where: str | None = None,
                 params: list | None = None) -> tuple[Any, Any, int]:
    """(first time, last time, number) of the located events of ``table`` (filtered)."""
    ru = lookup.for_sql(con, table, where)
    if ru is not None:
        lo, hi, n = ru.one(f"SELECT located_first, located_last, located FROM "
                           f"{ru.t('summary')}")
    else:
        cond = has_coords_sql() + (f" AND ({where})" if where else "")
        lo, hi, n = con.execute(f"SELECT min({TS}), max({TS}), count(*) FROM {table} WHERE "
                                f"{cond}", params or []).fetchall()[0]
    return lo, hi, int(n)

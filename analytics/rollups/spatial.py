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
import numpy as np
import pandas as pd

from ..geo import has_coords_sql, unit_vectors
from ..runs import index_lookup
from ..schema import CATEGORY, ITEM, LAT, LON, TS, USER
from ..spacetime import WINDOW, Window, all_windows, window_index
from ..spatial import density, flows, mobility, zones_sql
from ..spatial.sql import zone_lookup
from ..spatial.zones import EXTENT, MAX_EXTENT_KM, MAX_SHARE, NOISE, USERS, VISITS, ZONE, Zones
from ..store import events_table
from . import batches, defaults, lookup
from .tables import HEAT_ROWS, Rollup

CELL = density.CELL
#: A batch of whole users' located events: user, time, place (and ``more`` columns).
_LOCATED_TIMES = ("SELECT user_idx, us, coord_idx{more} FROM {ev} WHERE coord_idx IS NOT NULL "
                  "AND user_idx BETWEEN {{lo}} AND {{hi}}")


# -- densities --------------------------------------------------------------------------------
def density_rows(ru: Rollup, kind: str, size: float, window: Window,
                 stored: bool = True) -> pd.DataFrame:
    """``density.sql_density``'s rows for the whole dataset of ``ru``: read from its stored
    densities (the map's standard grids, ``tables.DENSITY_SPECS``) when ``stored`` and there,
    else counted over its event table (:func:`density_counts`)."""
    key = density.density_key(kind, size, window)
    if stored and key is not None:
        got = ru.df(f"SELECT {density.WINDOW}, {CELL}, {density.COUNT}, {density.USERS} "
                    f"FROM {ru.t('density')} WHERE spec = ?", [key])
        if len(got):
            got[CELL] = got[CELL].astype("int64" if kind == "grid" else "string")
            got[density.WINDOW] = got[density.WINDOW].astype("datetime64[us]")
            return got if window is not None else got.drop(columns=density.WINDOW)
    return density_counts(ru, [(kind, size, window)])[0][0]


def density_counts(ru: Rollup, specs: list[tuple[str, float, Window]],
                   place_sums: bool = False) -> tuple[list[pd.DataFrame], pd.DataFrame | None]:
    """``density.sql_density``'s rows of each (kind, cell size or H3 resolution, window) of
    ``specs`` for the whole dataset of ``ru``, from one pass over its located events in
    batches of whole users (``batches.keyed_user_counts``): each place's cell is looked up
    once, a window is an index into the span's windows, users are integers. With
    ``place_sums``, the same pass gives the per-item sums of ``zones_sql.places_query`` (the
    ``places_items`` table; None without): visits and users per item, and its unit-vector
    sums from its visits per place."""
    places = ru.df(f"SELECT coord_idx, {LAT}, {LON} FROM {ru.t('places')}")
    first, last = ru.one(f"SELECT located_first, located_last FROM {ru.t('summary')}")
    keyings = []  # per spec: cell of each coord_idx (-1: none), the cells, window starts
    for kind, size, window in specs:
        if kind == "grid":
            cells = ru.df(f"SELECT coord_idx, {density.grid_cell_ids_sql(size)} AS {CELL} "
                          f"FROM {ru.t('places')}")
        else:
            cells = density.hex_lookup(places, int(size))
        codes, names = pd.factorize(cells[CELL], sort=True)
        cell_of = index_lookup(places["coord_idx"], cells["coord_idx"], codes, -1)
        starts = (pd.DatetimeIndex([pd.NaT]) if window is None or first is None
                  else all_windows(pd.Timestamp(first), pd.Timestamp(last), window))
        keyings.append((kind, cell_of, names, window, starts))

    vectors = tuple(index_lookup(places["coord_idx"], places["coord_idx"], v, np.nan)
                    for v in unit_vectors(places[LAT].to_numpy("float64"),
                                          places[LON].to_numpy("float64")))

    def keys(got: dict[str, np.ndarray]) -> list[np.ndarray]:
        place = np.asarray(got["coord_idx"], np.int64)
        out = []
        for _, cell_of, names, window, starts in keyings:
            cell = cell_of[place]
            if window is not None:
                w = window_index(np.asarray(got["us"]), window, starts)
                cell = np.where((w >= 0) & (cell >= 0), w * len(names) + cell, -1)
            out.append(cell)
        if place_sums:  # per item: distinct users; visits and unit vectors summed
            item = np.asarray(got["item_idx"], np.int64)
            out.append((item, [v[place] for v in vectors]))
        return out

    counted = batches.keyed_user_counts(ru, _LOCATED_TIMES.format(
        ev=ru.t("ev"), more=", item_idx" if place_sums else ""), keys)
    sums = _place_sums(ru, counted[-1]) if place_sums else None
    frames = []
    for (kind, _, names, window, starts), (key, rows, users) in zip(
            keyings, counted[:len(keyings)], strict=True):
        out = pd.DataFrame({CELL: names[key % len(names)] if len(names) else names[:0],
                            density.COUNT: rows, density.USERS: users})
        if window is not None:
            out.insert(0, density.WINDOW, starts[key // len(names)].astype("datetime64[us]")
                       if len(names) else pd.DatetimeIndex([], dtype="datetime64[us]"))
        out[CELL] = out[CELL].astype("int64" if kind == "grid" else "string")
        frames.append(out)
    return frames, sums


def _place_sums(ru: Rollup, per_item: tuple[np.ndarray, ...]) -> pd.DataFrame:
    """``zones_sql.places_query``'s rows (item, unit-vector sums, visits, users, in item
    order) from the visits, users and unit vectors summed per item_idx."""
    item, visits, users, x, y, z = per_item
    names = ru.df(f"SELECT item_idx, {ITEM} FROM {ru.t('items')}").set_index("item_idx")[ITEM]
    out = pd.DataFrame({ITEM: names.reindex(item).to_numpy(), "x": x, "y": y, "z": z,
                        VISITS: visits, USERS: users})
    return out.sort_values(ITEM, ignore_index=True)


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

    def zone_users(self, labelled: pd.DataFrame) -> pd.Series:
        items = self.ru.df(f"SELECT item_idx, {ITEM} FROM {self.ru.t('items')}")
        at = items.merge(labelled.loc[labelled[ZONE] != NOISE, [ITEM, ZONE]], on=ITEM)
        zone_of = index_lookup(items["item_idx"], at["item_idx"], at[ZONE], -1)
        ((zone, _, users),) = batches.keyed_user_counts(
            self.ru, f"SELECT user_idx, item_idx FROM {self.ru.t('ev')} WHERE coord_idx IS "
            "NOT NULL AND user_idx BETWEEN {lo} AND {hi}",
            lambda got: [zone_of[np.asarray(got["item_idx"], np.int64)]])
        return pd.Series(users, index=zone)

    def window_counts(self, lookup: pd.DataFrame, key: list[str],
                      window: Window) -> pd.DataFrame:
        lo, hi = self.span()
        starts = all_windows(pd.Timestamp(lo), pd.Timestamp(hi), window)
        zones = np.r_[NOISE, np.sort(lookup[ZONE].unique())].astype(np.int64)
        places = self.ru.df(f"SELECT coord_idx FROM {self.ru.t('places')}")["coord_idx"]
        zone_of = index_lookup(places, lookup["coord_idx"],
                               np.searchsorted(zones, lookup[ZONE].to_numpy(np.int64)), 0)

        def keys(got: dict[str, np.ndarray]) -> list[np.ndarray]:
            w = window_index(np.asarray(got["us"]), window, starts)
            return [np.where(w >= 0, w * len(zones) + zone_of[np.asarray(got["coord_idx"],
                                                                         np.int64)], -1)]

        ((k, visits, users),) = batches.keyed_user_counts(self.ru, _LOCATED_TIMES.format(
            ev=self.ru.t("ev"), more=""), keys)
        return pd.DataFrame({WINDOW: starts[k // len(zones)].astype("datetime64[us]"),
                             ZONE: zones[k % len(zones)], VISITS: visits, USERS: users})


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
    """The moves of ``flows.od_flows_sql`` (``origin, destination, trips, users``) over the
    summary tables' sorted ``ev``: per batch of whole users (``batches``) each event beside
    the user's previous one, a move where both are located and their places in zones."""
    places = ru.df(f"SELECT * FROM {ru.t('places')}")
    found = zone_lookup(places, zones, ["coord_idx"])
    ids = np.sort(found[ZONE].unique()).astype(np.int64)
    zone_of = index_lookup(places["coord_idx"], found["coord_idx"],
                           np.searchsorted(ids, found[ZONE].to_numpy(np.int64)), -1)
    gap = flows.gap_us(max_gap)

    def keys(got: dict[str, np.ndarray]) -> list[np.ndarray]:
        user, us = np.asarray(got["user_idx"]), np.asarray(got["us"])
        zone = zone_of[np.ma.asarray(got["coord_idx"]).filled(-1)]  # -1: not located / no zone
        d, o = zone[1:], zone[:-1]
        keep = (d >= 0) & (o >= 0) & (user[1:] == user[:-1])
        if not include_self:
            keep &= o != d
        if gap is not None:
            keep &= us[1:] - us[:-1] <= gap
        return [np.r_[-1, np.where(keep, o * len(ids) + d, -1)]]

    ((key, trips, users),) = batches.keyed_user_counts(
        ru, f"SELECT rowid, user_idx, us, coord_idx FROM {ru.t('ev')} WHERE user_idx BETWEEN "
        "{lo} AND {hi}", keys)
    return pd.DataFrame({flows.ORIGIN: ids[key // len(ids)] if len(ids) else ids,
                         flows.DEST: ids[key % len(ids)] if len(ids) else ids,
                         flows.TRIPS: trips, flows.USERS: users})


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

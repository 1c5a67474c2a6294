"""Aggregation zones on a stored DuckDB table: the heavy group-bys in SQL, the rest shared.

``find_zones_sql(con, store.table(name), ...)`` returns what
:func:`analytics.zones.find_zones` returns for the same events, but only small tables leave
DuckDB: one row per place (to cluster), per distinct coordinate (to look zones up), per
zone (distinct users) and per zone x window (activity). Clustering, outlines and trends run
in Python on those, through the same code as the pandas version.

Where those small tables come from is a :class:`LocatedEvents`: SQL over the stored table
(filtered by ``where``); a caller holding faster equivalents (the summary tables) passes a
subclass to :func:`find_zones_in` / :func:`zone_activity_in` and gets the same rows.

:func:`zones_for_subset_in` recounts the zones of the whole dataset for filtered events (the
Map page with a filter: filters never find new zones); :func:`page_zone_params` holds the
Map page's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from ..geo import latlon_from_xyz
from ..schema import CATEGORY, ITEM, LAT, LON, TS, USER
from ..spacetime import WINDOW, Window, all_windows, window_sql
from .sql import located_sql, registered, zone_lookup
from .zones import (
    MAX_EXTENT_KM,
    MAX_SHARE,
    N_PLACES,
    NOISE,
    PLACE_DECIMALS,
    TREND_COLUMNS,
    USERS,
    VISITS,
    ZONE,
    Zones,
    complete_windows,
    empty_activity,
    fill_activity,
    recount_zones,
    with_trends,
    zones_from_places,
)


def places_query(src: str) -> str:
    """SQL of one row per item of ``src`` (located events): unit-vector sums, visits, users."""
    return (f"SELECT {ITEM}, sum(cos(radians({LAT})) * cos(radians({LON}))) AS x, "
            f"sum(cos(radians({LAT})) * sin(radians({LON}))) AS y, sum(sin(radians({LAT}))) "
            f"AS z, count(*) AS {VISITS}, count(DISTINCT {USER}) AS {USERS} "
            f"FROM {src} GROUP BY {ITEM} ORDER BY {ITEM}")


@dataclass
class LocatedEvents:
    """The located events of stored ``table`` (``where``/``params`` filter them) as the zone
    queries read them. Each method is one small read; subclasses may answer faster."""

    con: duckdb.DuckDBPyConnection
    table: str
    where: str | None = None
    params: list | None = None

    def place_sums(self) -> pd.DataFrame:
        """One row per item: ``item_id, x, y, z`` (unit-vector sums), ``visits, users``."""
        src = located_sql(self.table, self.where, [USER, ITEM, LAT, LON])
        return self.con.execute(places_query(src), self.params or []).df()

    def user_items(self) -> tuple[str, list]:
        """(subquery of ``user_id, item_id`` per located event, its parameters)."""
        return located_sql(self.table, self.where, [USER, ITEM]), self.params or []

    def item_categories(self) -> tuple[str, list]:
        """(subquery of ``item_id, category`` per located event, its parameters)."""
        return located_sql(self.table, self.where, [ITEM, CATEGORY]), self.params or []

    def span(self) -> tuple[Any, Any]:
        """(first, last) time of the located events; (None, None) when there are none."""
        src = located_sql(self.table, self.where, [TS])
        return self.con.execute(f"SELECT min({TS}), max({TS}) FROM {src}",
                                self.params or []).fetchone()

    def places(self) -> tuple[pd.DataFrame, list[str]]:
        """(distinct places: ``lat, lon`` plus key columns, the key joining them to
        :meth:`user_times`)."""
        src = located_sql(self.table, self.where, [LAT, LON])
        return (self.con.execute(f"SELECT DISTINCT {LAT}, {LON} FROM {src}",
                                 self.params or []).df(), [LAT, LON])

    def user_times(self) -> tuple[str, list]:
        """(subquery of ``user_id, ts`` and the place key per located event, parameters)."""
        return located_sql(self.table, self.where, [USER, TS, LAT, LON]), self.params or []

    def zone_users(self, labelled: pd.DataFrame) -> pd.Series:
        """Distinct users of the events at the places of each zone (``labelled``: ``item_id,
        zone_id`` per place, NOISE for none), indexed by zone_id."""
        events, params = self.user_items()
        df = _per_zone(self, labelled, events, params, f"count(DISTINCT e.{USER}) AS n")
        return pd.Series(df["n"].to_numpy("int64"), index=df[ZONE].to_numpy(np.int64))

    def window_counts(self, lookup: pd.DataFrame, key: list[str],
                      window: Window) -> pd.DataFrame:
        """``window, zone_id, visits, users`` per window and zone of the located events
        (``lookup``: the ``key`` columns of :meth:`places` and the zone of each place in a
        zone; the events elsewhere count under NOISE)."""
        events, params = self.user_times()
        w_expr, w_cond = window_sql(window, f"e.{TS}")
        on = " AND ".join(f"e.{k} = z.{k}" for k in key)
        with registered(self.con, lookup, "zone_lookup") as view:
            df = self.con.execute(
                f"SELECT {w_expr} AS {WINDOW}, coalesce(z.{ZONE}, {NOISE}) AS {ZONE}, "
                f"count(*) AS {VISITS}, count(DISTINCT e.{USER}) AS {USERS} FROM {events} e "
                f"LEFT JOIN {view} z ON {on} WHERE {w_cond} GROUP BY 1, 2", params).df()
        df[WINDOW] = df[WINDOW].astype("datetime64[us]")
        return df


def visited_places_sql(con: duckdb.DuckDBPyConnection, table: str, where: str | None = None,
                       params: list | None = None) -> pd.DataFrame:
    """:func:`analytics.zones.visited_places` in DuckDB: item, lat, lon, visits, users."""
    return visited_places_in(LocatedEvents(con, table, where, params))


def visited_places_in(src: LocatedEvents) -> pd.DataFrame:
    """:func:`visited_places_sql` of the located events ``src``."""
    df = src.place_sums()
    if df.empty:
        raise ValueError(
            f"finding zones needs events with coordinates, but {src.table} has none with a "
            f"usable {LAT}/{LON}; import a dataset with latitude/longitude columns"
        )
    lat, lon = (np.round(v, PLACE_DECIMALS) for v in latlon_from_xyz(df["x"], df["y"], df["z"]))
    return pd.DataFrame({ITEM: df[ITEM], LAT: lat, LON: lon,
                         VISITS: df[VISITS].astype("int64"), USERS: df[USERS].astype("int64")})


def zone_activity_sql(con: duckdb.DuckDBPyConnection, table: str, zones: pd.DataFrame,
                      window: Window, where: str | None = None,
                      params: list | None = None) -> pd.DataFrame:
    """:func:`analytics.zones.zone_activity` with the per-window counting in DuckDB."""
    return zone_activity_in(LocatedEvents(con, table, where, params), zones, window)


def zone_activity_in(src: LocatedEvents, zones: pd.DataFrame, window: Window) -> pd.DataFrame:
    """:func:`zone_activity_sql` of the located events ``src``."""
    if zones.empty:
        return empty_activity()
    lo, hi = src.span()
    if lo is None:
        return empty_activity()
    coords, key = src.places()
    df = src.window_counts(zone_lookup(coords, zones, key), key, window)
    totals = df.groupby(WINDOW)[VISITS].sum()
    counts = df[df[ZONE] != NOISE].set_index([ZONE, WINDOW])[[VISITS, USERS]]
    starts = all_windows(pd.Timestamp(lo), pd.Timestamp(hi), window)
    return fill_activity(counts, totals, zones, starts,
                         complete_windows(starts, window, pd.Timestamp(lo), pd.Timestamp(hi)))


def find_zones_sql(con: duckdb.DuckDBPyConnection, table: str, eps_m: float = 100.0,
                   min_visits: int = 50, method: Literal["dbscan", "hdbscan"] = "dbscan",
                   min_cluster_size: int = 5, buffer_m: float | None = None,
                   window: Window = None, alpha: float = 0.05, min_change: float = 0.2,
                   relative: bool = True, min_users: int = 1, where: str | None = None,
                   params: list | None = None, max_extent_km: float | None = MAX_EXTENT_KM,
                   max_share: float | None = MAX_SHARE) -> Zones:
    """:func:`analytics.zones.find_zones` on a DuckDB table; ``where``/``params`` filter it."""
    return find_zones_in(LocatedEvents(con, table, where, params), eps_m=eps_m,
                         min_visits=min_visits, method=method,
                         min_cluster_size=min_cluster_size, buffer_m=buffer_m, window=window,
                         alpha=alpha, min_change=min_change, relative=relative,
                         min_users=min_users, max_extent_km=max_extent_km,
                         max_share=max_share)


def find_zones_in(src: LocatedEvents, eps_m: float = 100.0, min_visits: int = 50,
                  method: Literal["dbscan", "hdbscan"] = "dbscan", min_cluster_size: int = 5,
                  buffer_m: float | None = None, window: Window = None, alpha: float = 0.05,
                  min_change: float = 0.2, relative: bool = True, min_users: int = 1,
                  max_extent_km: float | None = MAX_EXTENT_KM,
                  max_share: float | None = MAX_SHARE) -> Zones:
    """:func:`find_zones_sql` of the located events ``src``."""
    places = visited_places_in(src)

    def categories_of(labelled: pd.DataFrame) -> pd.DataFrame:
        cats, cat_params = src.item_categories()
        df = _per_zone(src, labelled, cats, cat_params, f"e.{CATEGORY}, count(*) AS {VISITS}",
                       f"e.{CATEGORY} IS NOT NULL", 2)
        return df.astype({ZONE: "int64", VISITS: "int64"})

    zones, places = zones_from_places(places, src.zone_users, categories_of, eps_m=eps_m,
                                      min_visits=min_visits, method=method,
                                      min_cluster_size=min_cluster_size, buffer_m=buffer_m,
                                      min_users=min_users, max_extent_km=max_extent_km,
                                      max_share=max_share)
    activity = empty_activity()
    if window is not None and not zones.empty:
        activity = zone_activity_in(src, zones, window)
        zones = with_trends(zones, activity, relative, alpha, min_change)
    return Zones(zones=zones, places=places, activity=activity)


def _per_zone(src: LocatedEvents, labelled: pd.DataFrame, events: str, params: list,
              select: str, cond: str = "TRUE", keys: int = 1) -> pd.DataFrame:
    """``zone_id`` and ``select`` (over ``e``, the rows of ``events`` at labelled places)
    grouped by the first ``keys`` output columns."""
    labels = labelled.loc[labelled[ZONE] != NOISE, [ITEM, ZONE]]
    group = ", ".join(str(i + 1) for i in range(keys))
    with registered(src.con, labels, "place_labels") as view:
        return src.con.execute(
            f"SELECT m.{ZONE}, {select} FROM {events} e JOIN {view} m "
            f"ON e.{ITEM} = m.{ITEM} WHERE {cond} GROUP BY {group}", params).df()


def zones_for_subset_in(src: LocatedEvents, whole: Zones, window: Window = None,
                        alpha: float = 0.05, min_change: float = 0.2,
                        relative: bool = True) -> Zones:
    """:func:`analytics.spatial.zones.zones_for_subset` of the located events ``src`` (the
    filtered events of a dataset whose zones are ``whole``)."""
    events, params = src.user_items()
    counts = _per_zone(src, whole.places, events, params,
                       f"count(*) AS {VISITS}, count(DISTINCT e.{USER}) AS {USERS}, "
                       f"count(DISTINCT e.{ITEM}) AS {N_PLACES}")
    located = src.con.execute(f"SELECT count(*) FROM {events}", params).fetchone()[0]
    zones = recount_zones(whole.zones.drop(columns=TREND_COLUMNS, errors="ignore"), counts, located)
    activity = empty_activity()
    if window is not None and not zones.empty:
        activity = zone_activity_in(src, zones, window)
        zones = with_trends(zones, activity, relative, alpha, min_change)
    return Zones(zones=zones, places=whole.places, activity=activity)



# -- the Map page's zones ------------------------------------------------------------------
#: Largest gap between two events of a user that still makes a move, on the Map page.
PAGE_FLOW_GAP = "12h"
_PAGE_DEFAULTS = {"eps_m": 100.0, "method": "dbscan", "min_cluster_size": 5, "buffer_m": None,
                  "alpha": 0.05, "min_change": 0.2, "relative": True, "min_users": 3,
                  "max_extent_km": MAX_EXTENT_KM, "max_share": MAX_SHARE}


def page_zone_params(located: int, first: pd.Timestamp | None,
                     last: pd.Timestamp | None) -> dict:
    """The Map page's zone parameters for ``located`` events between ``first`` and ``last``:
    DBSCAN at 100 m, clusters split until none is wider than 1.5 km across or holds more
    than 5% of the located events (unless one venue); ``min_visits`` scales with the events
    (a zone is a place many people go, at 10k events as at 1M), zones of fewer than 3 users
    dropped; the trend window is a day for up to 4 weeks of data, a week up to 30 weeks,
    else a month."""
    days = None if first is None or last is None else (pd.Timestamp(last)
                                                       - pd.Timestamp(first)).days
    window = "month" if days is None else "day" if days <= 28 else "week" if days <= 210 \
        else "month"
    return dict(_PAGE_DEFAULTS, min_visits=int(max(15, min(1000, located * 0.001))),
                window=window)

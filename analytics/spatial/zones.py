"""Aggregation zones: density-based clusters of visited places, with outline, activity, trend.

A *place* is a distinct item with coordinates, weighted by its number of visits. Places are
clustered with DBSCAN (haversine metric on radians, ``eps`` in metres, a place's visits as
its sample weight, so a single very busy venue can seed a zone) or with HDBSCAN (unweighted,
for data with strongly varying density). Each zone gets:

* ``zone_id`` (0 = most visited), centroid ``lat``/``lon`` (visit-weighted), ``n_places``,
  ``visits``, ``users``, ``radius_km`` (centroid to farthest place);
* ``polygon``: the convex hull of its places buffered by ``buffer_m`` (so a one- or two-place
  zone still has an area), as a closed ring ``[[lon, lat], ...]``, and ``wkt``;
* with a ``window``: visits per window (:func:`zone_activity`, zero-filled) and a trend label
  emerging / stable / declining from a Mann-Kendall test (:mod:`analytics.trend`).

:func:`assign_zones` maps any events to the zone whose polygon contains them (-1 = noise).
For a stored table, :func:`analytics.zones_sql.find_zones_sql` returns the same result with
the group-bys in DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..geo import (
    EARTH_RADIUS_KM,
    from_local_m,
    group_centroids,
    has_coords,
    haversine_km,
    require_coords,
    to_local_m,
    unique_points,
    with_coords,
)
from ..schema import ITEM, LAT, LON, TS, USER
from ..spacetime import WINDOW, Window, all_windows, window_start
from ..temporal.trend import trend_table

ZONE = "zone_id"
VISITS = "visits"
USERS = "users"
N_PLACES = "n_places"
RADIUS = "radius_km"
POLYGON = "polygon"
WKT = "wkt"
SHARE = "share"
NOISE = -1
#: Place coordinates are rounded to 1e-10 degrees (~0.01 mm): the pandas and DuckDB sums,
#: which differ in the last bits, then give identical places (inputs with up to 9 decimals
#: never sit near a rounding midpoint), and HDBSCAN, sensitive to float ties, the same zones.
PLACE_DECIMALS = 10


@dataclass(frozen=True)
class Zones:
    """Result of :func:`find_zones`.

    zones:    one row per zone (columns above, plus trend columns when a window was given);
    places:   one row per visited place: ``item_id``, ``lat``, ``lon``, ``visits``, ``users``,
              ``zone_id`` (-1 = noise);
    activity: ``zone_id``, ``window_start``, ``visits``, ``users``, ``share`` (of all located
              visits in the window) per zone and window (empty without a window).
    """

    zones: pd.DataFrame
    places: pd.DataFrame
    activity: pd.DataFrame


def visited_places(events: pd.DataFrame) -> pd.DataFrame:
    """Distinct items with coordinates: location (centroid of its events, rounded to
    ``PLACE_DECIMALS``), visits, users."""
    pts = require_coords(events, "finding zones")
    loc = group_centroids(pts, ITEM).round({LAT: PLACE_DECIMALS, LON: PLACE_DECIMALS})
    g = pts.groupby(ITEM, sort=True)
    counts = pd.DataFrame({VISITS: g.size(), USERS: g[USER].nunique()}).reset_index()
    return loc.merge(counts, on=ITEM).astype({VISITS: "int64", USERS: "int64"})


def cluster_places(places: pd.DataFrame, eps_m: float = 100.0, min_visits: int = 50,
                   method: Literal["dbscan", "hdbscan"] = "dbscan",
                   min_cluster_size: int = 5) -> np.ndarray:
    """Cluster label per place (-1 = noise) by DBSCAN (weighted) or HDBSCAN (unweighted)."""
    if eps_m <= 0 or min_visits < 1:
        raise ValueError(f"zones need eps_m > 0 and min_visits >= 1, got {eps_m}, {min_visits}")
    x = np.radians(places[[LAT, LON]].to_numpy("float64"))
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        model = DBSCAN(eps=eps_m / (EARTH_RADIUS_KM * 1000.0), min_samples=min_visits,
                       metric="haversine", algorithm="ball_tree")
        return model.fit_predict(x, sample_weight=places[VISITS].to_numpy("float64"))
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        if len(places) < max(min_cluster_size, 2):
            return np.full(len(places), NOISE)
        model = HDBSCAN(min_cluster_size=min_cluster_size, metric="haversine", copy=True)
        return model.fit_predict(x)
    raise ValueError(f"unknown zone clustering method {method!r}: use 'dbscan' or 'hdbscan'")


def _outline(lat: np.ndarray, lon: np.ndarray, c_lat: float, c_lon: float,
             buffer_m: float) -> list[list[float]]:
    """Buffered convex hull of points as a closed [[lon, lat], ...] ring."""
    import shapely

    x, y = to_local_m(lat, lon, c_lat, c_lon)
    # centimetre grid: points equal up to float noise make the same hull (and outline)
    hull = shapely.multipoints(np.column_stack([x, y]).round(2)).convex_hull
    ring = np.asarray(hull.buffer(buffer_m, quad_segs=4).exterior.coords)  # (V, 2) metres
    r_lat, r_lon = from_local_m(ring[:, 0], ring[:, 1], c_lat, c_lon)
    return np.column_stack([r_lon, r_lat]).round(7).tolist()


def _zone_table(places: pd.DataFrame, users: pd.Series,
                buffer_m: float) -> tuple[pd.DataFrame, dict[int, int]]:
    """One row per cluster label, renumbered by visits; also the old -> new label map.

    ``users``: distinct users per cluster label (they need the events, not place counts).
    """
    members = places[places[ZONE] != NOISE]
    cols = [ZONE, LAT, LON, N_PLACES, VISITS, USERS, RADIUS, POLYGON, WKT]
    if members.empty:
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in cols}).astype(
            {ZONE: "int64", LAT: "float64", LON: "float64", N_PLACES: "int64",
             VISITS: "int64", USERS: "int64", RADIUS: "float64"})
        return empty, {}
    cent = group_centroids(members, ZONE, weight=VISITS)
    g = members.groupby(ZONE, sort=True)
    cent[N_PLACES] = g.size().to_numpy()
    cent[VISITS] = g[VISITS].sum().to_numpy()
    cent[USERS] = users.reindex(cent[ZONE]).fillna(0).to_numpy()
    m = members.merge(cent[[ZONE, LAT, LON]], on=ZONE, suffixes=("", "_c"))
    m["_d"] = haversine_km(m[LAT], m[LON], m[f"{LAT}_c"], m[f"{LON}_c"])
    cent[RADIUS] = m.groupby(ZONE, sort=True)["_d"].max().to_numpy()
    rings = []  # one hull per zone (groups and centroids are both sorted by zone label)
    for (_, grp), c_lat, c_lon in zip(members.groupby(ZONE, sort=True), cent[LAT].tolist(),
                                      cent[LON].tolist(), strict=True):
        rings.append(_outline(grp[LAT].to_numpy(), grp[LON].to_numpy(), c_lat, c_lon,
                              buffer_m))
    cent[POLYGON] = rings
    cent[WKT] = [_ring_wkt(r) for r in rings]
    # renumber: zone 0 is the most visited; ties by size then place, never by the label,
    # which clustering may permute when coordinates differ in the last bit
    order = cent.sort_values([VISITS, N_PLACES, LAT, LON],
                             ascending=[False, False, True, True])[ZONE].to_numpy()
    remap = dict(zip(order, range(len(order)), strict=True))
    cent[ZONE] = cent[ZONE].map(remap).astype("int64")
    return cent.sort_values(ZONE, ignore_index=True)[cols].astype(
        {N_PLACES: "int64", VISITS: "int64", USERS: "int64"}), remap


def _ring_wkt(ring: list[list[float]]) -> str:
    return "POLYGON ((" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in ring) + "))"


def find_zones(events: pd.DataFrame, eps_m: float = 100.0, min_visits: int = 50,
               method: Literal["dbscan", "hdbscan"] = "dbscan", min_cluster_size: int = 5,
               buffer_m: float | None = None, window: Window = None, alpha: float = 0.05,
               min_change: float = 0.2, relative: bool = True, min_users: int = 1) -> Zones:
    """Cluster the visited places of ``events`` into zones (see the module docstring).

    eps_m:       DBSCAN neighbourhood radius in metres;
    min_visits:  visits (sample weight) within ``eps_m`` needed for a core place;
    buffer_m:    hull buffer in metres (default ``eps_m / 2``);
    min_users:   clusters visited by fewer distinct users become noise;
    window, alpha, min_change, relative: per-window activity and trend
                 (:func:`analytics.trend.trend_table`); no trend without a window.
    """
    places = visited_places(events)
    located = with_coords(events)[[USER, ITEM]]

    def users_of(labelled: pd.DataFrame) -> pd.Series:
        ev = located.merge(labelled.loc[labelled[ZONE] != NOISE, [ITEM, ZONE]], on=ITEM)
        return ev.groupby(ZONE)[USER].nunique()

    zones, places = zones_from_places(places, users_of, eps_m=eps_m, min_visits=min_visits,
                                      method=method, min_cluster_size=min_cluster_size,
                                      buffer_m=buffer_m, min_users=min_users)
    activity = empty_activity()
    if window is not None and not zones.empty:
        activity = zone_activity(events, zones, window)
        zones = with_trends(zones, activity, relative, alpha, min_change)
    return Zones(zones=zones, places=places, activity=activity)


def zones_from_places(places: pd.DataFrame, users_of: Callable[[pd.DataFrame], pd.Series], *,
                      eps_m: float, min_visits: int, method: Literal["dbscan", "hdbscan"],
                      min_cluster_size: int, buffer_m: float | None,
                      min_users: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster ``places`` and build the zone table; (zones, places with ``zone_id``).

    ``users_of(places_with_labels)`` returns distinct users per cluster label: the pandas and
    the DuckDB front ends (:mod:`analytics.zones_sql`) count them from their own events.
    """
    labels = cluster_places(places, eps_m, min_visits, method, min_cluster_size)
    places = places.assign(**{ZONE: labels.astype("int64")})
    users = users_of(places)
    if min_users > 1:  # a venue only one person frequents (a home) is no aggregation zone
        small = users.index[users < min_users]
        places.loc[places[ZONE].isin(small), ZONE] = NOISE
        users = users.drop(small)
    buffer_m = eps_m / 2.0 if buffer_m is None else float(buffer_m)
    zones, remap = _zone_table(places, users, buffer_m)
    places[ZONE] = places[ZONE].map(remap).fillna(NOISE).astype("int64")
    return zones, places


def with_trends(zones: pd.DataFrame, activity: pd.DataFrame, relative: bool, alpha: float,
                min_change: float) -> pd.DataFrame:
    """``zones`` plus the trend columns of :func:`analytics.trend.trend_table`."""
    trends = trend_table(activity, ZONE, SHARE if relative else VISITS, WINDOW,
                         alpha=alpha, min_change=min_change)
    return zones.merge(trends, on=ZONE, how="left")


def empty_activity() -> pd.DataFrame:
    return pd.DataFrame({ZONE: pd.Series(dtype="int64"),
                         WINDOW: pd.Series(dtype="datetime64[us]"),
                         VISITS: pd.Series(dtype="int64"), USERS: pd.Series(dtype="int64"),
                         SHARE: pd.Series(dtype="float64")})


def assign_zones(events: pd.DataFrame, zones: pd.DataFrame) -> pd.Series:
    """Zone of each event (int64 Series aligned with ``events``; -1 = in no zone / no coords).

    An event belongs to a zone when its point lies inside the zone polygon; where buffered
    polygons overlap, the zone with the nearest centroid wins. Works for any events, not
    only those the zones were built from. Point-in-polygon runs once per distinct coordinate.
    """
    import shapely

    out = np.full(len(events), NOISE, dtype="int64")
    has = has_coords(events).to_numpy()
    if zones.empty or not has.any():
        return pd.Series(out, index=events.index, name=ZONE)
    inverse, u_lat, u_lon = unique_points(events[LAT].to_numpy("float64", na_value=np.nan)[has],
                                          events[LON].to_numpy("float64", na_value=np.nan)[has])
    uniq = np.column_stack([u_lat, u_lon])
    polys = np.array([shapely.Polygon(r) for r in zones[POLYGON]], dtype=object)
    tree = shapely.STRtree(polys)
    p_idx, z_idx = tree.query(shapely.points(uniq[:, 1], uniq[:, 0]), predicate="within")
    best = np.full(len(uniq), NOISE, dtype="int64")
    if len(p_idx):
        d = haversine_km(uniq[p_idx, 0], uniq[p_idx, 1],
                         zones[LAT].to_numpy("float64")[z_idx],
                         zones[LON].to_numpy("float64")[z_idx])
        order = np.lexsort((d, p_idx))  # per point, nearest candidate centroid first
        first = np.ones(len(order), dtype=bool)
        first[1:] = p_idx[order][1:] != p_idx[order][:-1]
        chosen = order[first]
        best[p_idx[chosen]] = zones[ZONE].to_numpy("int64")[z_idx[chosen]]
    out[has] = best[inverse]
    return pd.Series(out, index=events.index, name=ZONE)


def zone_activity(events: pd.DataFrame, zones: pd.DataFrame, window: Window) -> pd.DataFrame:
    """Visits, distinct users and share of all located visits per zone and window.

    A visit counts for a zone when it lies inside the zone's outline (:func:`assign_zones`).
    Every (zone, window) pair between the first and last window of the data is present,
    with 0 where a zone had no visit, so trends see the quiet windows too.
    """
    pts = with_coords(events)
    if pts.empty or zones.empty:
        return empty_activity()
    frame = pd.DataFrame({ZONE: assign_zones(pts, zones), WINDOW: window_start(pts[TS], window),
                          USER: pts[USER]}).dropna(subset=[WINDOW])
    totals = frame.groupby(WINDOW).size()
    g = frame[frame[ZONE] != NOISE].groupby([ZONE, WINDOW])
    counts = pd.DataFrame({VISITS: g.size(), USERS: g[USER].nunique()})
    starts = all_windows(pts[TS].min(), pts[TS].max(), window)
    return fill_activity(counts, totals, zones, starts)


def fill_activity(counts: pd.DataFrame, totals: pd.Series, zones: pd.DataFrame,
                  starts: pd.DatetimeIndex) -> pd.DataFrame:
    """Zero-fill per-(zone, window) ``counts`` over all zones x ``starts``; add the share of
    ``totals`` (located visits per window)."""
    full = pd.MultiIndex.from_product([zones[ZONE].to_numpy("int64"), starts],
                                      names=[ZONE, WINDOW])
    out = counts.reindex(full, fill_value=0).reset_index()
    tot = np.tile(totals.reindex(starts).to_numpy("float64", na_value=0.0), len(zones))
    out[SHARE] = np.divide(out[VISITS].to_numpy("float64"), tot,
                           out=np.zeros(len(out)), where=tot > 0)
    return out.astype({VISITS: "int64", USERS: "int64"})

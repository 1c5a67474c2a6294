"""Aggregation zones: density-based clusters of visited places, with outline, activity, trend.

A *place* is a distinct item with coordinates, weighted by its number of visits. Places are
clustered with DBSCAN (haversine metric on radians, ``eps`` in metres, a place's visits as
its sample weight, so a single very busy venue can seed a zone) or with HDBSCAN (unweighted,
for data with strongly varying density).

**Zones stay local.** Density clustering chains: in a dense city every venue has a
neighbour within 100 m, and DBSCAN links Manhattan into one "zone". So every cluster whose
outline would be wider than ``max_extent_km`` across, or that holds more than ``max_share``
of the located visits without being one spot (its places within ``eps_m`` of each other:
one venue, or a venue and its entrances; on a small dataset every zone may hold over 5%),
is split in two (a visit-weighted 2-means
started from the split at the weighted median along the cluster's major axis) and the parts
are checked again, until every zone fits (:func:`split_clusters`). Every place of a cluster
stays in one of its parts; a part visited by fewer than ``min_users`` users becomes noise.
``max_extent_km=None, max_share=None`` is plain DBSCAN / HDBSCAN (the old behaviour, kept as
the benchmark's baseline).

Each zone gets:

* ``zone_id`` (0 = most visited), centroid ``lat``/``lon`` (visit-weighted), ``n_places``,
  ``visits``, ``users``, ``radius_km`` (centroid to farthest place), ``extent_km`` (the
  largest distance across its outline), ``share`` (of all located visits; their sum is the
  share of events the zones cover), ``name`` (its two busiest categories, else places);
* ``polygon``: the convex hull of its places buffered by ``buffer_m`` (so a one- or two-place
  zone still has an area), as a closed ring ``[[lon, lat], ...]``, and ``wkt``;
* with a ``window``: visits per window (:func:`zone_activity`, zero-filled, each window marked
  ``complete`` or not by the one partial-period rule, :mod:`analytics.temporal.periods`) and
  a trend (:func:`zone_trends`): a Mann-Kendall test and Sen's slope over the complete
  windows only, so a range that ends mid-month does not read as a collapse. ``rel_change`` is
  the change of the Sen line from the first to the last complete window relative to its
  start, the line clipped at 0, so it never falls below -100% (NaN when the line starts at
  0); the label (emerging / stable / declining) comes from that same test and change.

:func:`assign_zones` maps any events to the zone whose polygon contains them (-1 = noise).
:func:`recount_zones` keeps the zones of the whole data and recounts them for a subset of its
events (a filter): filters never find new zones, so a filter never has more zones than the
whole data. For a stored table, :mod:`analytics.spatial.zones_sql` returns the same results
with the group-bys in DuckDB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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
from ..schema import CATEGORY, ITEM, LAT, LON, TS, USER
from ..spacetime import WINDOW, Window, all_windows, window_start
from ..temporal.periods import complete_mask
from ..temporal.trend import DECLINING, EMERGING, STABLE, TREND, mann_kendall

ZONE = "zone_id"
VISITS = "visits"
USERS = "users"
N_PLACES = "n_places"
RADIUS = "radius_km"
EXTENT = "extent_km"
NAME = "name"
POLYGON = "polygon"
WKT = "wkt"
SHARE = "share"
COMPLETE = "complete"
CHANGE = "rel_change"
P_VALUE = "p_value"
#: The columns :func:`zone_trends` adds to the zone table.
TREND_COLUMNS = ["n_windows", "tau", "sen_slope", CHANGE, P_VALUE, TREND]
NOISE = -1
#: Place coordinates are rounded to 1e-10 degrees (~0.01 mm): the pandas and DuckDB sums,
#: which differ in the last bits, then give identical places (inputs with up to 9 decimals
#: never sit near a rounding midpoint), and HDBSCAN, sensitive to float ties, the same zones.
PLACE_DECIMALS = 10
#: The defaults that keep zones local: no zone wider than 1.5 km across its outline, none
#: holding more than 5% of the located visits unless it is one venue.
MAX_EXTENT_KM = 1.5
MAX_SHARE = 0.05
#: Windows the partial-period rule knows (analytics.temporal.periods); other windows (custom
#: edges, quarters, fixed widths) count every window as complete.
_PERIOD_FREQS = ("hour", "day", "week", "month")


@dataclass(frozen=True)
class Zones:
    """Result of :func:`find_zones`.

    zones:    one row per zone (columns above, plus trend columns when a window was given);
    places:   one row per visited place: ``item_id``, ``lat``, ``lon``, ``visits``, ``users``,
              ``zone_id`` (-1 = noise);
    activity: ``zone_id``, ``window_start``, ``visits``, ``users``, ``share`` (of all located
              visits in the window), ``complete`` per zone and window (empty without a
              window).
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


# -- keeping zones local -----------------------------------------------------------------------
def split_clusters(places: pd.DataFrame, labels: np.ndarray, max_extent_km: float | None,
                   max_share: float | None, buffer_m: float, spot_m: float) -> np.ndarray:
    """``labels`` with every cluster split until each fits (see the module doc).

    A cluster fits when its places' diameter plus twice ``buffer_m`` (the width of its
    outline) is at most ``max_extent_km``, and its visits are at most ``max_share`` of all
    visits of ``places`` or its places' diameter is at most ``spot_m`` (one spot). ``None``
    switches a limit off. New labels are consecutive from 0; noise stays -1.
    """
    labels = np.asarray(labels, dtype="int64")
    if max_extent_km is None and max_share is None:
        return labels
    if max_extent_km is not None and max_extent_km * 1000.0 <= 2 * buffer_m:
        raise ValueError(f"max_extent_km={max_extent_km} leaves no room inside the outline's "
                         f"{buffer_m:.0f} m buffer; use a larger limit or a smaller buffer")
    lat = places[LAT].to_numpy("float64")
    lon = places[LON].to_numpy("float64")
    w = places[VISITS].to_numpy("float64")
    max_w = np.inf if max_share is None else max_share * w.sum()
    max_d = np.inf if max_extent_km is None else max_extent_km * 1000.0 - 2 * buffer_m
    out = np.full(len(labels), NOISE, dtype="int64")
    todo = [np.flatnonzero(labels == k) for k in np.unique(labels[labels != NOISE])]
    n_done = 0
    while todo:
        idx = todo.pop()
        x, y = to_local_m(lat[idx], lon[idx], float(lat[idx].mean()), float(lon[idx].mean()))
        diameter = _diameter_m(x, y)
        if diameter > max_d or (diameter > spot_m and w[idx].sum() > max_w):
            left = _split_two(x, y, w[idx])
            todo += [idx[~left], idx[left]]
            continue
        out[idx] = n_done
        n_done += 1
    return out


def _diameter_m(x: np.ndarray, y: np.ndarray) -> float:
    """Largest distance between two of the points (over their convex hull's vertices)."""
    if len(x) < 2:
        return 0.0
    pts = np.column_stack([x, y])
    if len(pts) > 16:
        import shapely

        hull = shapely.multipoints(pts).convex_hull
        pts = shapely.get_coordinates(hull)
    d = pts[:, None, :] - pts[None, :, :]
    return float(np.sqrt((d ** 2).sum(-1)).max())


def _split_two(x: np.ndarray, y: np.ndarray, w: np.ndarray, rounds: int = 25) -> np.ndarray:
    """A visit-weighted 2-means of points that are not all one point: True for one side.

    Started from the split at the weighted median along the major axis (deterministic: no
    random start), so both sides are never empty.
    """
    pts = np.column_stack([x, y])
    wn = w / w.sum()
    d = pts - wn @ pts
    axis = np.linalg.eigh((d * wn[:, None]).T @ d)[1][:, -1]
    proj = d @ axis
    order = np.lexsort((pts[:, 1], pts[:, 0], proj))
    k = int(np.searchsorted(np.cumsum(w[order]), w.sum() / 2.0))
    k = min(max(k, 0), len(order) - 2)
    left = np.zeros(len(pts), dtype=bool)
    left[order[:k + 1]] = True
    for _ in range(rounds):
        c0 = np.average(pts[left], axis=0, weights=w[left])
        c1 = np.average(pts[~left], axis=0, weights=w[~left])
        new = ((pts - c0) ** 2).sum(1) < ((pts - c1) ** 2).sum(1)
        if new.all() or not new.any() or (new == left).all():
            break
        left = new
    return left


# -- the zone table ----------------------------------------------------------------------------
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


def ring_extent_km(ring: list[list[float]]) -> float:
    """Largest great-circle distance between two vertices of a ``[[lon, lat], ...]`` ring."""
    r = np.asarray(ring, dtype="float64")
    d = haversine_km(r[:, None, 1], r[:, None, 0], r[None, :, 1], r[None, :, 0])
    return float(d.max()) if d.size else 0.0


def _zone_table(places: pd.DataFrame, users: pd.Series, categories: pd.DataFrame,
                buffer_m: float) -> tuple[pd.DataFrame, dict[int, int]]:
    """One row per cluster label, renumbered by visits; also the old -> new label map.

    ``users``: distinct users per cluster label (they need the events, not place counts);
    ``categories``: ``zone_id, category, visits`` of the located events at clustered places.
    """
    members = places[places[ZONE] != NOISE]
    cols = [ZONE, NAME, LAT, LON, N_PLACES, VISITS, USERS, SHARE, RADIUS, EXTENT, POLYGON, WKT]
    if members.empty:
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in cols}).astype(
            {ZONE: "int64", LAT: "float64", LON: "float64", N_PLACES: "int64",
             VISITS: "int64", USERS: "int64", SHARE: "float64", RADIUS: "float64",
             EXTENT: "float64"})
        return empty, {}
    cent = group_centroids(members, ZONE, weight=VISITS)
    g = members.groupby(ZONE, sort=True)
    cent[N_PLACES] = g.size().to_numpy()
    cent[VISITS] = g[VISITS].sum().to_numpy()
    cent[USERS] = users.reindex(cent[ZONE]).fillna(0).to_numpy()
    cent[SHARE] = cent[VISITS] / max(int(places[VISITS].sum()), 1)
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
    cent[EXTENT] = [ring_extent_km(r) for r in rings]
    cent[NAME] = zone_names(members, categories).reindex(cent[ZONE]).to_numpy()
    # renumber: zone 0 is the most visited; ties by size then place, never by the label,
    # which clustering may permute when coordinates differ in the last bit
    order = cent.sort_values([VISITS, N_PLACES, LAT, LON],
                             ascending=[False, False, True, True])[ZONE].to_numpy()
    remap = dict(zip(order, range(len(order)), strict=True))
    cent[ZONE] = cent[ZONE].map(remap).astype("int64")
    return cent.sort_values(ZONE, ignore_index=True)[cols].astype(
        {N_PLACES: "int64", VISITS: "int64", USERS: "int64", NAME: "str"}), remap


def zone_names(members: pd.DataFrame, categories: pd.DataFrame, top: int = 2) -> pd.Series:
    """A short name per cluster label: its ``top`` categories by visits ("Bar · Subway"),
    else (no category known) its ``top`` busiest places ("place 3601 · place 254")."""
    names: dict[Any, str] = {}
    if len(categories):
        cats = categories.sort_values([ZONE, VISITS, CATEGORY], ascending=[True, False, True])
        for k, grp in cats.groupby(ZONE, sort=True):
            names[k] = " · ".join(str(c) for c in grp[CATEGORY].head(top))
    busiest = members.sort_values([ZONE, VISITS, ITEM], ascending=[True, False, True])
    for k, grp in busiest.groupby(ZONE, sort=True):
        if k not in names:
            names[k] = " · ".join(f"place {i}" for i in grp[ITEM].head(top))
    return pd.Series(names, dtype="object")


def _ring_wkt(ring: list[list[float]]) -> str:
    return "POLYGON ((" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in ring) + "))"


def find_zones(events: pd.DataFrame, eps_m: float = 100.0, min_visits: int = 50,
               method: Literal["dbscan", "hdbscan"] = "dbscan", min_cluster_size: int = 5,
               buffer_m: float | None = None, window: Window = None, alpha: float = 0.05,
               min_change: float = 0.2, relative: bool = True, min_users: int = 1,
               max_extent_km: float | None = MAX_EXTENT_KM,
               max_share: float | None = MAX_SHARE) -> Zones:
    """Cluster the visited places of ``events`` into zones (see the module docstring).

    eps_m:       DBSCAN neighbourhood radius in metres;
    min_visits:  visits (sample weight) within ``eps_m`` needed for a core place;
    buffer_m:    hull buffer in metres (default ``eps_m / 2``);
    min_users:   clusters visited by fewer distinct users become noise;
    max_extent_km, max_share: clusters wider across, or holding a larger share of the
                 located visits (unless one spot, ``eps_m`` across), are split (None: no
                 limit);
    window, alpha, min_change, relative: per-window activity and trend (:func:`zone_trends`);
                 no trend without a window.
    """
    places = visited_places(events)
    located = with_coords(events)

    def users_of(labelled: pd.DataFrame) -> pd.Series:
        ev = located[[USER, ITEM]].merge(labelled.loc[labelled[ZONE] != NOISE, [ITEM, ZONE]],
                                         on=ITEM)
        return ev.groupby(ZONE)[USER].nunique()

    def categories_of(labelled: pd.DataFrame) -> pd.DataFrame:
        return category_visits(located, labelled)

    zones, places = zones_from_places(places, users_of, categories_of, eps_m=eps_m,
                                      min_visits=min_visits, method=method,
                                      min_cluster_size=min_cluster_size, buffer_m=buffer_m,
                                      min_users=min_users, max_extent_km=max_extent_km,
                                      max_share=max_share)
    activity = empty_activity()
    if window is not None and not zones.empty:
        activity = zone_activity(events, zones, window)
        zones = with_trends(zones, activity, relative, alpha, min_change)
    return Zones(zones=zones, places=places, activity=activity)


def category_visits(located: pd.DataFrame, labelled: pd.DataFrame) -> pd.DataFrame:
    """``zone_id, category, visits``: located events per zone and known category."""
    if CATEGORY not in located.columns:
        return pd.DataFrame({ZONE: pd.Series(dtype="int64"),
                             CATEGORY: pd.Series(dtype="object"),
                             VISITS: pd.Series(dtype="int64")})
    ev = located[[ITEM, CATEGORY]].dropna(subset=[CATEGORY]).merge(
        labelled.loc[labelled[ZONE] != NOISE, [ITEM, ZONE]], on=ITEM)
    return ev.groupby([ZONE, CATEGORY]).size().rename(VISITS).reset_index()


def zones_from_places(places: pd.DataFrame, users_of: Callable[[pd.DataFrame], pd.Series],
                      categories_of: Callable[[pd.DataFrame], pd.DataFrame], *,
                      eps_m: float, min_visits: int, method: Literal["dbscan", "hdbscan"],
                      min_cluster_size: int, buffer_m: float | None, min_users: int,
                      max_extent_km: float | None = MAX_EXTENT_KM,
                      max_share: float | None = MAX_SHARE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster ``places``, split the clusters that are too wide or too busy, and build the
    zone table; (zones, places with ``zone_id``).

    ``users_of(places_with_labels)`` returns distinct users per cluster label and
    ``categories_of(places_with_labels)`` the ``zone_id, category, visits`` of their events:
    the pandas and the DuckDB front ends (:mod:`analytics.spatial.zones_sql`) count them
    from their own events.
    """
    buffer_m = eps_m / 2.0 if buffer_m is None else float(buffer_m)
    labels = cluster_places(places, eps_m, min_visits, method, min_cluster_size)
    labels = split_clusters(places, labels, max_extent_km, max_share, buffer_m, eps_m)
    places = places.assign(**{ZONE: labels.astype("int64")})
    users = users_of(places)
    if min_users > 1:  # a venue only one person frequents (a home) is no aggregation zone
        small = users.index[users < min_users]
        places.loc[places[ZONE].isin(small), ZONE] = NOISE
        users = users.drop(small)
    zones, remap = _zone_table(places, users, categories_of(places), buffer_m)
    places[ZONE] = places[ZONE].map(remap).fillna(NOISE).astype("int64")
    return zones, places


# -- trends over complete windows ------------------------------------------------------------
def complete_windows(starts: pd.DatetimeIndex, window: Window, first: Any,
                     last: Any) -> np.ndarray:
    """True for the windows of ``starts`` the data between ``first`` and ``last`` covers
    whole (:func:`analytics.temporal.periods.complete_mask`); windows that rule does not
    know (custom edges, quarters, fixed widths) all count as complete."""
    if isinstance(window, str) and window.strip().lower() in _PERIOD_FREQS:
        return complete_mask(starts, window.strip().lower(), first, last)
    return np.ones(len(starts), dtype=bool)


def zone_trends(activity: pd.DataFrame, relative: bool = True, alpha: float = 0.05,
                min_change: float = 0.2) -> pd.DataFrame:
    """Trend per zone over its complete windows (see the module doc).

    Columns: ``zone_id``, ``n_windows`` (complete windows tested), ``tau``, ``sen_slope``,
    ``rel_change`` (bounded: >= -1; NaN when the Sen line starts at 0), ``p_value``,
    ``trend``: emerging when the Mann-Kendall p-value is below ``alpha``, the trend rises
    and ``rel_change`` is at least ``min_change`` (or the line starts at 0); declining
    likewise downward; stable otherwise.
    """
    act = activity[activity[COMPLETE]] if COMPLETE in activity.columns else activity
    series = act.sort_values([ZONE, WINDOW]).groupby(ZONE, sort=True)[
        SHARE if relative else VISITS]
    rows = [(k, *_trend_row(y.to_numpy("float64"), alpha, min_change)) for k, y in series]
    return pd.DataFrame(rows, columns=[ZONE, *TREND_COLUMNS])


def _trend_row(y: np.ndarray, alpha: float, min_change: float) -> tuple:
    """``TREND_COLUMNS`` of one series."""
    mk = mann_kendall(y)
    change = sen_change(y, mk.sen_slope)
    return (len(y), mk.tau, mk.sen_slope, change, mk.p_value,
            trend_of(mk.p_value, mk.s, change, alpha, min_change))


def sen_change(y: np.ndarray, slope: float) -> float:
    """Relative change of the Sen line (intercept: median of ``y - slope * t``) from the
    first to the last window, the line clipped at 0: in [-1, inf), NaN from a start of 0."""
    if len(y) < 2:
        return 0.0
    t = np.arange(len(y), dtype="float64")
    start = float(np.median(y - slope * t))
    begin, end = max(start, 0.0), max(start + slope * (len(y) - 1), 0.0)
    if begin > 0:
        return end / begin - 1.0
    return float("nan") if end > 0 else 0.0


def trend_of(p_value: float, s: int, change: float, alpha: float, min_change: float) -> str:
    """The label of a Mann-Kendall result (p-value, S) and its Sen change (see
    :func:`zone_trends`)."""
    if p_value >= alpha or s == 0:
        return STABLE
    if s > 0 and (np.isnan(change) or change >= min_change):
        return EMERGING
    if s < 0 and change <= -min_change:
        return DECLINING
    return STABLE


def with_trends(zones: pd.DataFrame, activity: pd.DataFrame, relative: bool, alpha: float,
                min_change: float) -> pd.DataFrame:
    """``zones`` plus the trend columns of :func:`zone_trends`."""
    trends = zone_trends(activity, relative, alpha, min_change)
    return zones.merge(trends, on=ZONE, how="left")


def empty_activity() -> pd.DataFrame:
    return pd.DataFrame({ZONE: pd.Series(dtype="int64"),
                         WINDOW: pd.Series(dtype="datetime64[us]"),
                         VISITS: pd.Series(dtype="int64"), USERS: pd.Series(dtype="int64"),
                         SHARE: pd.Series(dtype="float64"), COMPLETE: pd.Series(dtype="bool")})


# -- events to zones -------------------------------------------------------------------------
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
    with 0 where a zone had no visit, so trends see the quiet windows too; ``complete``
    marks the windows the data covers whole (:func:`complete_windows`).
    """
    pts = with_coords(events)
    if pts.empty or zones.empty:
        return empty_activity()
    frame = pd.DataFrame({ZONE: assign_zones(pts, zones), WINDOW: window_start(pts[TS], window),
                          USER: pts[USER]}).dropna(subset=[WINDOW])
    totals = frame.groupby(WINDOW).size()
    g = frame[frame[ZONE] != NOISE].groupby([ZONE, WINDOW])
    counts = pd.DataFrame({VISITS: g.size(), USERS: g[USER].nunique()})
    first, last = pts[TS].min(), pts[TS].max()
    starts = all_windows(first, last, window)
    return fill_activity(counts, totals, zones, starts,
                         complete_windows(starts, window, first, last))


def fill_activity(counts: pd.DataFrame, totals: pd.Series, zones: pd.DataFrame,
                  starts: pd.DatetimeIndex, complete: np.ndarray) -> pd.DataFrame:
    """Zero-fill per-(zone, window) ``counts`` over all zones x ``starts``; add the share of
    ``totals`` (located visits per window) and whether each window is ``complete``."""
    full = pd.MultiIndex.from_product([zones[ZONE].to_numpy("int64"), starts],
                                      names=[ZONE, WINDOW])
    out = counts.reindex(full, fill_value=0).reset_index()
    tot = np.tile(totals.reindex(starts).to_numpy("float64", na_value=0.0), len(zones))
    out[SHARE] = np.divide(out[VISITS].to_numpy("float64"), tot,
                           out=np.zeros(len(out)), where=tot > 0)
    out[COMPLETE] = np.tile(np.asarray(complete, dtype=bool), len(zones))
    return out.astype({VISITS: "int64", USERS: "int64"})


# -- the zones of the whole data, recounted for a subset ---------------------------------------
def recount_zones(zones: pd.DataFrame, counts: pd.DataFrame, located: int) -> pd.DataFrame:
    """``zones`` (of the whole data) recounted for a subset of its events: ``counts`` holds
    ``zone_id, visits, users, n_places`` of the subset's located events at each zone's places,
    ``located`` the subset's located events. Zones the subset never visits are left out, so
    a subset has at most the zones of the whole data; ids, names and outlines are kept."""
    keep = [c for c in zones.columns if c not in (VISITS, USERS, N_PLACES, SHARE)]
    got = counts[counts[VISITS] > 0][[ZONE, VISITS, USERS, N_PLACES]]
    out = zones[keep].merge(got, on=ZONE, how="inner")
    out[SHARE] = out[VISITS] / max(int(located), 1)
    cols = [c for c in zones.columns if c in out.columns]
    return out[cols].astype({VISITS: "int64", USERS: "int64", N_PLACES: "int64"}).sort_values(
        [VISITS, ZONE], ascending=[False, True], ignore_index=True)


def subset_counts(events: pd.DataFrame, places: pd.DataFrame) -> pd.DataFrame:
    """``zone_id, visits, users, n_places`` of the located ``events`` at the places of each
    zone (``places``: ``item_id, zone_id`` as :class:`Zones` holds them)."""
    ev = with_coords(events)[[USER, ITEM]].merge(
        places.loc[places[ZONE] != NOISE, [ITEM, ZONE]], on=ITEM)
    g = ev.groupby(ZONE)
    return pd.DataFrame({VISITS: g.size(), USERS: g[USER].nunique(),
                         N_PLACES: g[ITEM].nunique()}).reset_index()


def zones_for_subset(events: pd.DataFrame, whole: Zones, window: Window = None,
                     alpha: float = 0.05, min_change: float = 0.2,
                     relative: bool = True) -> Zones:
    """The zones ``whole`` (found on all events) for the subset ``events``: recounted
    (:func:`recount_zones`), with the subset's activity and trends."""
    located = int(has_coords(events).sum())
    zones = recount_zones(whole.zones.drop(columns=TREND_COLUMNS, errors="ignore"),
                          subset_counts(events, whole.places), located)
    activity = empty_activity()
    if window is not None and not zones.empty:
        activity = zone_activity(events, zones, window)
        zones = with_trends(zones, activity, relative, alpha, min_change)
    return Zones(zones=zones, places=whole.places, activity=activity)

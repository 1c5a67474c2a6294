"""Per-user mobility: movement paths for replay, radius of gyration, travel, home and work.

* :func:`user_paths`: each user's located events in time order, cut into trips at idle gaps
  and at implausible jumps, as ``path`` ``[[lon, lat], ...]`` plus ``timestamps`` (seconds
  from a common reference), the shape a deck.gl TripsLayer replays.
* :func:`user_mobility`: one row per user (and window) with events, distinct places, radius
  of gyration, travel distance and the home / work anchors (:func:`home_work`).

The radius of gyration is the standard one (Gonzalez et al., Nature 2008):
``r_g = sqrt(sum_i w_i d(p_i, c)^2 / sum_i w_i)`` with ``c`` the visit-weighted centre of
mass (spherical mean) and ``d`` the haversine distance; every event is one visit.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from ..geo import (
    chord_km,
    group_centroids,
    has_coords_sql,
    haversine_km,
    require_coords,
    unit_vectors,
    with_coords,
)
from ..runs import in_order, run_ids, run_starts
from ..schema import COLUMNS, ITEM, LAT, LON, TS, USER
from ..spacetime import (
    WINDOW,
    Window,
    local_time,
    offset_minutes,
    utc_naive,
    window_start,
    window_starts_us,
)

TRIP = "trip"
PATH = "path"
TIMESTAMPS = "timestamps"
RG = "rg_km"
TRAVEL = "travel_km"
EVENTS = "events"
PLACES = "places"
#: Local hours [start, end) that count as night (home) and as working hours on Monday-Friday
#: (work) for :func:`home_work`.
NIGHT_HOURS = (22, 6)
WORK_HOURS = (9, 17)


# -- paths -----------------------------------------------------------------------------------
def _steps(user: np.ndarray, t_us: np.ndarray, lat: np.ndarray,
           lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: same user as previous row, km and seconds since it (first rows: False/NaN)."""
    n = len(user)
    same = np.zeros(n, dtype=bool)
    d = np.full(n, np.nan)
    dt = np.full(n, np.nan)
    if n > 1:
        same[1:] = user[1:] == user[:-1]
        d[1:] = haversine_km(lat[:-1], lon[:-1], lat[1:], lon[1:])
        dt[1:] = (t_us[1:] - t_us[:-1]) / 1e6
    return same, d, dt


def _is_jump(d: np.ndarray, dt: np.ndarray, max_speed_kmh: float | None,
             min_jump_km: float) -> np.ndarray:
    """Steps too fast to be real movement (GPS glitches, missing stretches)."""
    if max_speed_kmh is None:
        return np.zeros(len(d), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.where(dt > 0, d / (dt / 3600.0), np.where(d > 0, np.inf, 0.0))
    return (speed > max_speed_kmh) & (d > min_jump_km)


def user_paths(events: pd.DataFrame, idle_gap: str | pd.Timedelta | None = "30min",
               max_speed_kmh: float | None = 300.0, min_jump_km: float = 0.5,
               min_points: int = 2, max_points: int | None = None,
               reference: pd.Timestamp | None = None) -> pd.DataFrame:
    """Trips of each user as drawable paths with replay timestamps.

    Consecutive located events of a user stay in one trip unless more than ``idle_gap`` apart
    in time (None: never split on time) or the step between them is a *jump*: faster than
    ``max_speed_kmh`` over more than ``min_jump_km`` (None: no speed rule). A lone fix that
    jumps away and straight back (a GPS spike) is dropped rather than splitting the trip.
    Trips with fewer than ``min_points`` points are left out; ``max_points`` thins long
    trips to about that many evenly spaced points (first and last kept).

    Columns: ``user_id``, ``trip`` (0.. per user), ``start``, ``end``, ``n_points``,
    ``length_km``, ``duration_s``, ``path`` ``[[lon, lat], ...]``, ``timestamps`` (seconds
    from ``reference``, default the earliest returned event; also in ``df.attrs``).
    """
    pts = require_coords(events, "movement paths")[[USER, TS, LAT, LON]]
    pts = pts.assign(**{TS: utc_naive(pts[TS])})
    pts = pts.sort_values([USER, TS], kind="mergesort", ignore_index=True)
    user = pts[USER].to_numpy()
    t = pts[TS].to_numpy("datetime64[us]").astype("int64")
    lat, lon = pts[LAT].to_numpy("float64"), pts[LON].to_numpy("float64")

    same, d, dt = _steps(user, t, lat, lon)
    jump_in = same & _is_jump(d, dt, max_speed_kmh, min_jump_km)
    jump_out = np.append(jump_in[1:], False)
    # spike: in and out are jumps, yet its neighbours are close to each other
    nb = np.full(len(pts), np.inf)
    if len(pts) > 2:
        nb[1:-1] = haversine_km(lat[:-2], lon[:-2], lat[2:], lon[2:])
    spike = jump_in & jump_out & (nb <= min_jump_km)
    if spike.any():
        keep = ~spike
        user, t, lat, lon = user[keep], t[keep], lat[keep], lon[keep]
        same, d, dt = _steps(user, t, lat, lon)

    cut = ~same | _is_jump(d, dt, max_speed_kmh, min_jump_km)
    if idle_gap is not None:
        cut |= dt > pd.Timedelta(idle_gap).total_seconds()
    trip_global = np.cumsum(cut) - 1                          # 0.. over all users
    step = np.where(cut, 0.0, d)

    frame = pd.DataFrame({USER: user, "_g": trip_global, "_t": t, LAT: lat, LON: lon,
                          "_step": step})
    g = frame.groupby("_g", sort=True)
    size = g["_t"].transform("size").to_numpy()
    frame = frame[size >= min_points]
    if frame.empty:
        return _empty_paths()
    if max_points is not None and max_points >= 2:
        frame = _thin(frame, max_points)

    g = frame.groupby("_g", sort=True)
    trips = pd.DataFrame({
        USER: g[USER].first(),
        "start": g["_t"].min().to_numpy().astype("datetime64[us]"),
        "end": g["_t"].max().to_numpy().astype("datetime64[us]"),
        "n_points": g.size(),
        "length_km": g["_step"].sum(),
    }).reset_index(drop=True)
    trips.insert(1, TRIP, trips.groupby(USER, sort=False).cumcount().astype("int64"))
    trips["duration_s"] = (trips["end"] - trips["start"]).dt.total_seconds()

    ref = (pd.Timestamp(frame["_t"].min(), unit="us") if reference is None
           else pd.Timestamp(reference))
    ref_us = int(ref.to_datetime64().astype("datetime64[us]").astype("int64"))
    bounds = np.flatnonzero(np.diff(frame["_g"].to_numpy())) + 1
    coords = np.column_stack([frame[LON].to_numpy(), frame[LAT].to_numpy()]).round(6)
    secs = (frame["_t"].to_numpy() - ref_us) / 1e6
    trips[PATH] = [c.tolist() for c in np.split(coords, bounds)]
    trips[TIMESTAMPS] = [s.tolist() for s in np.split(secs, bounds)]
    trips.attrs["reference"] = ref
    return trips


def _thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """Keep about ``max_points`` evenly spaced rows per trip (first and last always)."""
    g = frame.groupby("_g", sort=False)
    r = g.cumcount().to_numpy()
    n = g["_t"].transform("size").to_numpy()
    slot = np.floor(r * (max_points - 1) / np.maximum(n - 1, 1))
    prev = np.floor((r - 1) * (max_points - 1) / np.maximum(n - 1, 1))
    keep = (r == 0) | (r == n - 1) | (slot != prev)
    # the step column must still sum to the trip length: fold dropped steps forward
    return frame.loc[keep].assign(_step=_fold_steps(frame["_step"].to_numpy(), keep, r))


def _fold_steps(step: np.ndarray, keep: np.ndarray, r: np.ndarray) -> np.ndarray:
    """For each kept row, the sum of steps since the previous kept row of its trip."""
    cum = np.cumsum(step)
    kept_cum = cum[keep]
    prev_cum = np.concatenate([[0.0], kept_cum[:-1]])
    return np.where(r[keep] == 0, 0.0, kept_cum - prev_cum)


def _empty_paths() -> pd.DataFrame:
    return pd.DataFrame({USER: pd.Series(dtype="string"), TRIP: pd.Series(dtype="int64"),
                         "start": pd.Series(dtype="datetime64[us]"),
                         "end": pd.Series(dtype="datetime64[us]"),
                         "n_points": pd.Series(dtype="int64"),
                         "length_km": pd.Series(dtype="float64"),
                         "duration_s": pd.Series(dtype="float64"),
                         PATH: pd.Series(dtype="object"), TIMESTAMPS: pd.Series(dtype="object")})


# -- reading events from the store ------------------------------------------------------------
def user_events_sql(con: Any, table: str, user: str,
                    columns: list[str] | None = None) -> pd.DataFrame:
    """One user's events of stored ``table`` (``Store.table(name)``) in time order (a
    filtered scan)."""
    cols = ", ".join(columns or COLUMNS)
    return con.execute(f"SELECT {cols} FROM {table} WHERE {USER} = ? ORDER BY {TS}",
                       [str(user)]).df()


def page_window(first: Any, last: Any) -> str:
    """The window the Users page cuts a dataset spanning [first, last] into (its interest
    drift and mobility): days up to three weeks, weeks up to ~4 months, months beyond."""
    days = (pd.Timestamp(last) - pd.Timestamp(first)).days
    return "day" if days <= 21 else "week" if days <= 120 else "month"


def user_mobility_sql(con: Any, table: str, user: str, window: Window = None) -> pd.DataFrame:
    """``user_mobility(user_events_sql(con, table, user), window)``."""
    return user_mobility(user_events_sql(con, table, user), window)


def path_events_sql(con: Any, table: str, users: int, where: str | None = None,
                    params: list | None = None) -> pd.DataFrame:
    """Located events (``user_id, ts, lat, lon``, sorted by all four) of a deterministic sample
    of ``users`` users with at least 3 located events: the first by a hash of the user id."""
    cond = has_coords_sql() + (f" AND ({where})" if where else "")
    return con.execute(
        f"SELECT {USER}, {TS}, {LAT}, {LON} FROM {table} WHERE {cond} AND {USER} IN ("
        f"SELECT {USER} FROM {table} WHERE {cond} GROUP BY {USER} HAVING count(*) >= 3 "
        f"ORDER BY hash({USER}) LIMIT {int(users)}) ORDER BY {USER}, {TS}, {LAT}, {LON}",
        (params or []) * 2).df()


# -- per-user metrics ------------------------------------------------------------------------
def _keys(df: pd.DataFrame, window: Window) -> tuple[pd.DataFrame, list[str]]:
    if window is None:
        return df, [USER]
    df = df.assign(**{WINDOW: window_start(df[TS], window)}).dropna(subset=[WINDOW])
    return df, [USER, WINDOW]


def radius_of_gyration(events: pd.DataFrame, window: Window = None) -> pd.DataFrame:
    """Radius of gyration in km per user (and window): columns keys + ``rg_km``."""
    pts, keys = _keys(with_coords(events), window)
    if pts.empty:
        return pd.DataFrame({k: [] for k in keys} | {RG: []})
    cm = group_centroids(pts, keys)
    m = pts[keys + [LAT, LON]].merge(cm, on=keys, suffixes=("", "_cm"))
    m["_d2"] = haversine_km(m[LAT], m[LON], m[f"{LAT}_cm"], m[f"{LON}_cm"]) ** 2
    out = m.groupby(keys, sort=True)["_d2"].mean().pow(0.5).rename(RG).reset_index()
    return out


def travel_distance(events: pd.DataFrame, window: Window = None) -> pd.DataFrame:
    """Sum of great-circle steps between consecutive located events, per user (and window).

    Events at the same time are taken in (item, lat, lon) order, so the sum does not depend
    on the order the rows came in (a store returns ties in any order)."""
    pts, keys = _keys(with_coords(events), window)
    pts = pts.sort_values(keys + [TS, ITEM, LAT, LON], kind="mergesort", ignore_index=True)
    grp = pts.groupby(keys, sort=False).ngroup().to_numpy()
    d = np.zeros(len(pts))
    if len(pts) > 1:
        step = haversine_km(pts[LAT].to_numpy()[:-1], pts[LON].to_numpy()[:-1],
                            pts[LAT].to_numpy()[1:], pts[LON].to_numpy()[1:])
        d[1:] = np.where(grp[1:] == grp[:-1], step, 0.0)
    return (pts[keys].assign(**{TRAVEL: d}).groupby(keys, sort=True)[TRAVEL].sum()
            .reset_index())


def _anchor(df: pd.DataFrame, mask: np.ndarray, keys: list[str], name: str) -> pd.DataFrame:
    """Most frequent item per key group among rows in ``mask`` (ties: smallest item id)."""
    sel = df.loc[mask, keys + [ITEM, LAT, LON]]
    g = sel.groupby(keys + [ITEM], sort=False)
    counts = pd.DataFrame({"_n": g.size(), LAT: g[LAT].mean(), LON: g[LON].mean()})
    counts = counts.reset_index().sort_values(["_n", ITEM], ascending=[False, True],
                                              kind="mergesort")
    top = counts.drop_duplicates(subset=keys, keep="first")
    return top.rename(columns={ITEM: f"{name}_item", LAT: f"{name}_lat", LON: f"{name}_lon",
                               "_n": f"{name}_visits"})[keys + [f"{name}_item", f"{name}_lat",
                                                                f"{name}_lon", f"{name}_visits"]]


def home_work(events: pd.DataFrame, window: Window = None,
              night_hours: tuple[int, int] = NIGHT_HOURS, work_hours: tuple[int, int] = WORK_HOURS,
              tz_fallback: Literal["longitude", "utc"] = "longitude") -> pd.DataFrame:
    """Home and work anchors per user (and window).

    Home: the item visited most at night (local hour >= ``night_hours[0]`` or
    < ``night_hours[1]``); work: the item visited most Monday-Friday with
    ``work_hours[0] <= hour < work_hours[1]``. Local time from ``tz_offset_min``, else
    ``tz_fallback`` (:func:`analytics.spacetime.local_time`). Users with no such visit get
    missing values. Columns: keys, ``home_item``/``_lat``/``_lon``/``_visits``, same for work.
    """
    df, keys = _keys(events, window)
    local = local_time(df, fallback=tz_fallback)
    night, work = _night_work(local.dt.hour.to_numpy(), local.dt.day_of_week.to_numpy(),
                              night_hours, work_hours)
    df = df.assign(**{LAT: pd.to_numeric(df[LAT]) if LAT in df else np.nan,
                      LON: pd.to_numeric(df[LON]) if LON in df else np.nan})
    out = df[keys].drop_duplicates().sort_values(keys, ignore_index=True)
    out = out.merge(_anchor(df, night, keys, "home"), on=keys, how="left")
    out = out.merge(_anchor(df, work, keys, "work"), on=keys, how="left")
    return out.astype({"home_visits": "Int64", "work_visits": "Int64"})


def _night_work(hour: np.ndarray, weekday: np.ndarray,
                night_hours: tuple[int, int] = NIGHT_HOURS,
                work_hours: tuple[int, int] = WORK_HOURS) -> tuple[np.ndarray, np.ndarray]:
    """Which local times (``hour``, ``weekday`` 0 = Monday) are night and working hours."""
    lo, hi = night_hours
    night = (hour >= lo) | (hour < hi) if lo > hi else (hour >= lo) & (hour < hi)
    return night, (weekday < 5) & (hour >= work_hours[0]) & (hour < work_hours[1])


def user_mobility(events: pd.DataFrame, window: Window = None,
                  tz_fallback: Literal["longitude", "utc"] = "longitude") -> pd.DataFrame:
    """One row per user (and window): ``events``, ``places`` (distinct items), ``rg_km``,
    ``travel_km`` (NaN / 0 without coordinates) and the home/work anchors."""
    df, keys = _keys(events, window)
    g = df.groupby(keys, sort=True)
    out = pd.DataFrame({EVENTS: g.size(), PLACES: g[ITEM].nunique()}).reset_index()
    out = out.merge(radius_of_gyration(events, window), on=keys, how="left")
    out = out.merge(travel_distance(events, window), on=keys, how="left")
    out = out.merge(home_work(events, window, tz_fallback=tz_fallback), on=keys, how="left")
    return out.astype({EVENTS: "int64", PLACES: "int64"})


# -- every user's mobility in numpy (the summary build) ------------------------------------
def mobility_arrays(user: np.ndarray, us: np.ndarray, item: np.ndarray, located: np.ndarray,
                    lat: np.ndarray, lon: np.ndarray, tz: np.ndarray, window: str,
                    coordinates: bool = True,
                    place: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """:func:`user_mobility` of every user per calendar ``window`` over integer-keyed events
    sorted by (user, time, item, lat, lon), as the summary build's sorted event table is
    (other orders are sorted first): ``user`` and ``item`` integer ids (items in id order,
    so the smallest id wins a tie), ``us`` epoch microseconds, ``located`` the events with
    usable coordinates, ``lat`` / ``lon`` (NaN where missing) and ``tz`` (minutes, NaN where
    unknown). The same rules as the pandas functions: every event is a visit; the radius of
    gyration around the spherical centroid of the located events; the travel along the
    located events in order; home and work the items visited most in the local night /
    working hours (local time from ``tz`` else the solar zone of the longitude else UTC).
    ``coordinates=False`` says no event has a latitude or longitude (no positions to
    average). ``place``, when given, is a non-negative id of each located event's
    coordinates (the build's ``coord_idx``: equal ids, equal coordinates), so each place's
    unit vector is computed once, not per event; distances come from the unit vectors
    (``geo.chord_km``). One stable sort of the events by (user, window, item): the rest is
    linear.

    Returns ``user``, ``window_start`` (epoch microseconds), ``events``, ``places``,
    ``rg_km``, ``travel_km`` (NaN without located events) and per anchor ``home_item`` /
    ``work_item`` (-1: none), ``_lat``, ``_lon``, ``_visits`` (0: none), one entry per (user,
    window) in that order.
    """
    n = len(user)
    if n == 0:
        return {k: np.zeros(0) for k in MOBILITY_ARRAYS}
    if not in_order(user, us, item):
        order = np.lexsort((lon, lat, item, us, user))
        user, us, item, located, lat, lon, tz = (a[order] for a in (user, us, item, located,
                                                                    lat, lon, tz))
        place = None if place is None else place[order]
    w = window_starts_us(us, window)
    g_start = run_starts(user, w)
    group = run_ids(n, g_start)
    size = len(g_start)
    out = {"user": user[g_start], WINDOW: w[g_start], EVENTS: np.diff(np.r_[g_start, n])}

    # home and work: per (window, item) the night and working-hour visits
    local = us + offset_minutes(tz, lon) * 60_000_000
    day = local // 86_400_000_000
    night, work = _night_work((local - day * 86_400_000_000) // 3_600_000_000, (day + 3) % 7)
    order = np.argsort(group * (int(item.max()) + 1) + item, kind="stable")
    r_start = run_starts(group[order], item[order])  # runs of one (window, item)
    r_item = item[order][r_start]
    g_runs = run_starts(group[order][r_start])  # each window's first run
    out[PLACES] = np.diff(np.r_[g_runs, len(r_start)])
    ordered = {"lat": lat[order], "lon": lon[order]} if coordinates else {}
    for name, flag in (("home", night), ("work", work)):
        f = flag[order]
        visits = np.add.reduceat(f.astype(np.int64), r_start)
        top = np.repeat(np.maximum.reduceat(visits, g_runs), out[PLACES])
        best = np.where((visits == top) & (visits > 0), np.arange(len(r_start)), len(r_start))
        first = np.minimum.reduceat(best, g_runs)  # the smallest item among the most visited
        has = first < len(r_start)
        at = np.where(has, first, 0)
        out[f"{name}_item"] = np.where(has, r_item[at], -1)
        out[f"{name}_visits"] = np.where(has, visits[at], 0)
        for col in ("lat", "lon"):
            mean = np.full(size, np.nan)
            if coordinates:
                v = ordered[col]
                ok = f & ~np.isnan(v)
                total = np.add.reduceat(np.where(ok, v, 0.0), r_start)[at]
                count = np.add.reduceat(ok.astype(np.int64), r_start)[at]
                mean[has & (count > 0)] = (total / np.maximum(count, 1))[has & (count > 0)]
            out[f"{name}_{col}"] = mean

    # radius of gyration and travel over the located events
    out[RG] = np.full(size, np.nan)
    out[TRAVEL] = np.full(size, np.nan)
    if coordinates and located.any():
        at = np.flatnonzero(located)
        g = group[at]
        if place is None:
            xyz = unit_vectors(lat[at], lon[at])
        else:  # each place's vector once, gathered per event
            p = place[at]
            one = np.zeros(int(p.max()) + 1, np.int64)
            one[p] = at
            xyz = tuple(v[p] for v in unit_vectors(lat[one], lon[one]))
        counts = np.bincount(g, minlength=size)
        sums = [np.bincount(g, weights=v, minlength=size) for v in xyz]
        norm = np.sqrt(sum(v ** 2 for v in sums))
        centre = tuple((v / np.where(norm > 0, norm, 1.0))[g] for v in sums)
        has = counts > 0
        d2 = chord_km(xyz, centre) ** 2
        out[RG][has] = np.sqrt(np.bincount(g, weights=d2, minlength=size)[has] / counts[has])
        step = np.zeros(len(at))
        same = np.flatnonzero(g[1:] == g[:-1])
        step[same + 1] = chord_km(tuple(v[same] for v in xyz), tuple(v[same + 1] for v in xyz))
        out[TRAVEL][has] = np.bincount(g, weights=step, minlength=size)[has]
    return out


#: The arrays of :func:`mobility_arrays`, in the order of the summary build's table.
MOBILITY_ARRAYS = ("user", WINDOW, EVENTS, PLACES, RG, TRAVEL) + tuple(
    f"{a}_{c}" for a in ("home", "work") for c in ("item", "lat", "lon", "visits"))

"""GeoLife GPS trajectories (format ``geolife``; Zheng et al.), imported as stay-point events.

Variants: ``plt`` (one trajectory per ``.plt`` file: six lines of preamble, then lat, lon, 0,
altitude, days, date, time; the user is the folder above ``Trajectory``, the time is date +
time) and ``csv`` (a header ``lat,lng,datetime,uid``). The fixes are validated like events
(user, time, coordinates; no item needed) and then turned into stay-point events (Li et al.
2008, "Mining user similarity based on location history"):

A stay point is a stretch of a user's trajectory that stays within ``dist_m`` metres of its
first fix for at least ``min_minutes``; it is summarised by its mean position, arrival time
and dwell time. Stay points of all users are clustered into places (single linkage
within ``cluster_m`` metres, haversine: DBSCAN with min_samples=1, computed on a grid without
scikit-learn's slow import); each place is an item located at the centroid of its stay
points, and each stay point becomes one event: ts = arrival, value = dwell minutes,
lat/lon = the place's centroid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ... import schema
from ..layout import TextLayout, norm
from ..sql import lit, source_text
from ..types import Plan, Sniff
from .base import Derive, Format

U, IT, T, LAT, LON = schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON
HEADER = {"lat", "lng", "datetime", "uid"}
EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True)
class StayParams:
    dist_m: float = 200.0  # a stay keeps within this distance of its first fix
    min_minutes: float = 20.0  # ... for at least this long
    cluster_m: float = 150.0  # stay points this close (chained) form one place

    @classmethod
    def from_dict(cls, d: dict[str, float] | None) -> StayParams:
        d = dict(d or {})
        unknown = set(d) - {"dist_m", "min_minutes", "cluster_m"}
        if unknown:
            raise ValueError(f"unknown stay-point parameter(s) {sorted(unknown)}; use dist_m, "
                             "min_minutes, cluster_m")
        return cls(**{k: float(v) for k, v in d.items()})


def haversine_m(lat0: float, lon0: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Great-circle distance in metres from one point to arrays of points."""
    p0, p = np.radians(lat0), np.radians(lat)
    dlat, dlon = p - p0, np.radians(lon - lon0)
    a = np.sin(dlat / 2) ** 2 + np.cos(p0) * np.cos(p) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def stay_points_one(lat: np.ndarray, lon: np.ndarray, t: np.ndarray,
                    p: StayParams) -> list[tuple[float, float, float, float]]:
    """Stay points of one time-ordered trajectory (t in seconds):
    (lat, lon, arrival s, leave s) each."""
    n = len(t)
    min_s = p.min_minutes * 60.0
    # A stay starting at i is still within dist_m at the first fix >= t_i + min_s, so a
    # vectorised pre-check rules out the (many) fixes that cannot start one.
    end = np.searchsorted(t, t + min_s, side="left")
    cand = np.zeros(n, dtype=bool)
    idx = np.nonzero(end < n)[0]
    if idx.size:
        e = end[idx]
        cand[idx] = _pair_dist(lat[idx], lon[idx], lat[e], lon[e]) <= p.dist_m
    starts = np.nonzero(cand)[0]
    out: list[tuple[float, float, float, float]] = []
    i = 0
    while True:
        k = int(np.searchsorted(starts, i))
        if k >= len(starts):
            break
        i = int(starts[k])
        j = _first_far(lat, lon, i, p.dist_m)  # first fix beyond dist_m (or n)
        if t[j - 1] - t[i] >= min_s:
            out.append((float(lat[i:j].mean()), float(lon[i:j].mean()), float(t[i]),
                        float(t[j - 1])))
            i = j
        else:
            i += 1
    return out


def _pair_dist(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray,
               lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def _local_dist_m(lat0: float, lon0: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Equirectangular distance in metres: within a few km it matches haversine to < 0.1%
    and is several times cheaper (the stay-point scan calls it a lot)."""
    k = np.pi / 180.0 * EARTH_RADIUS_M
    dx = (lon - lon0) * (k * np.cos(np.radians(lat0)))
    dy = (lat - lat0) * k
    return np.sqrt(dx * dx + dy * dy)


def _first_far(lat: np.ndarray, lon: np.ndarray, i: int, dist_m: float) -> int:
    n, step, j = len(lat), 64, i + 1
    while j < n:
        end = min(n, j + step)
        far = np.nonzero(_local_dist_m(lat[i], lon[i], lat[j:end], lon[j:end]) > dist_m)[0]
        if far.size:
            return j + int(far[0])
        j, step = end, min(step * 2, 8192)
    return n


def stay_points(fixes: pd.DataFrame, params: StayParams) -> pd.DataFrame:
    """Stay points of every user; ``fixes`` has user_id, ts, lat, lon sorted by user, ts."""
    U, T = schema.USER, schema.TS
    rows = []
    for user, g in fixes.groupby(U, sort=False):
        t = g[T].to_numpy(dtype="datetime64[us]").astype("int64") / 1e6
        for lat, lon, a, b in stay_points_one(g[schema.LAT].to_numpy(float),
                                              g[schema.LON].to_numpy(float), t, params):
            rows.append((user, lat, lon, a, b))
    df = pd.DataFrame(rows, columns=[U, "lat", "lon", "arrive_s", "leave_s"])
    return df


def cluster_places(sp: pd.DataFrame, cluster_m: float) -> np.ndarray:
    """Place label per stay point: connected groups of points within ``cluster_m`` of each
    other (what DBSCAN with min_samples=1 gives), found with a grid and union-find."""
    n = len(sp)
    lat, lon = sp["lat"].to_numpy(float), sp["lon"].to_numpy(float)
    parent = np.arange(n)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    if n == 0:
        return parent
    dlat = cluster_m / 111_195.0  # metres per degree of latitude
    coslat = max(0.01, float(np.cos(np.radians(np.abs(lat).max()))))
    dlon = dlat / coslat  # cells at least cluster_m wide everywhere in the data
    cells: dict[tuple[int, int], list[int]] = {}
    for k, key in enumerate(zip(np.floor(lat / dlat).astype(int),
                                np.floor(lon / dlon).astype(int), strict=True)):
        cells.setdefault(key, []).append(k)
    for (ci, cj), members in cells.items():
        near = [m for di in (-1, 0, 1) for dj in (-1, 0, 1)
                for m in cells.get((ci + di, cj + dj), ())]
        near_a = np.asarray(near)
        for k in members:
            close = near_a[haversine_m(lat[k], lon[k], lat[near_a], lon[near_a]) <= cluster_m]
            rk = root(k)
            for m in close:
                rm = root(int(m))
                if rm != rk:
                    parent[rm] = rk
    return np.asarray([root(k) for k in range(n)])


def events_from_fixes(fixes: pd.DataFrame, params: StayParams) -> tuple[pd.DataFrame, dict]:
    """Canonical events (one per stay point) and a summary dict for the import report."""
    sp = stay_points(fixes, params)
    labels = cluster_places(sp, params.cluster_m)
    sp = sp.assign(place=labels).sort_values("arrive_s", kind="stable")
    # number places by first visit so ids are stable for a given input
    order = {lab: k for k, lab in enumerate(pd.unique(sp["place"]))}
    sp["place"] = sp["place"].map(order)
    cent = sp.groupby("place")[["lat", "lon"]].mean()
    width = max(4, len(str(len(cent))))
    ev = pd.DataFrame({
        schema.USER: sp[schema.USER].astype("string"),
        schema.ITEM: sp["place"].map(lambda k: f"place_{k:0{width}d}").astype("string"),
        schema.TS: pd.to_datetime(sp["arrive_s"].to_numpy() * 1e6, unit="us"),
        schema.LAT: sp["place"].map(cent["lat"]).astype(float),
        schema.LON: sp["place"].map(cent["lon"]).astype(float),
        schema.BEHAVIOR: schema.DEFAULT_BEHAVIOR,
        schema.CATEGORY: pd.Series([None] * len(sp), dtype="string", index=sp.index),
        schema.VALUE: (sp["leave_s"] - sp["arrive_s"]) / 60.0,
        schema.TZ_OFFSET: pd.Series([None] * len(sp), dtype="Int32", index=sp.index),
    }).sort_values([schema.USER, schema.TS], kind="stable").reset_index(drop=True)
    summary = {"fixes_kept": int(len(fixes)), "stay_points": int(len(sp)),
               "places": int(len(cent)), "stay_dist_m": params.dist_m,
               "stay_min_minutes": params.min_minutes, "place_cluster_m": params.cluster_m}
    return ev, summary


# -- the format's rules ----------------------------------------------------------------------
def _claim(path: Path, text: str | None) -> str | None:
    """A .plt file (by name, or by its first line) is a GeoLife trajectory, whatever else."""
    plt = path.suffix.lower() == ".plt" or (text is not None
                                            and text.startswith("Geolife trajectory"))
    return "plt" if plt else None


def _recognise(lay: TextLayout, path: Path) -> str | None:
    return "csv" if lay.has_header and HEADER <= lay.names else None


def _fit(sn: Sniff) -> str | None:
    return "csv" if HEADER <= {norm(c) for c in sn.columns} else None


def _required(variant: str) -> tuple[str, ...]:
    return (T,) if variant == "plt" else (U, T)


def _complete(mapping: dict[str, str], sn: Sniff) -> None:
    if sn.variant == "plt" and T not in mapping and "date" in sn.columns:
        mapping[T] = "date"


def _time_text(sn: Sniff, mapping: dict[str, str],
               user_set: set[str]) -> tuple[str, list[str]] | None:
    """A .plt file's time is its date and time columns together (unless the user mapped ts)."""
    if sn.variant != "plt" or T in user_set or "time" not in sn.columns:
        return None
    tcol = mapping[T]
    sql = f"nullif(concat_ws(' ', {source_text(sn, tcol)}, {source_text(sn, 'time')}), ' ')"
    i, j = sn.columns.index(tcol), sn.columns.index("time")
    return sql, [f"{r[i]} {r[j]}" for r in sn.sample if j < len(r)]


def plt_user(path: Path) -> str:
    """GeoLife's user id of a .plt file: the folder above ``Trajectory`` (Data/000/...)."""
    return path.parent.parent.name if path.parent.name.lower() == "trajectory" else path.stem


def _rules(plan: Plan, sn: Sniff, path: Path, user_set: set[str]) -> None:
    if IT not in plan.mapping:
        plan.inner["i"] = "'fix'"  # every fix is staged as an event of one item
    if plan.variant == "plt" and U not in plan.mapping:
        plan.inner["u"] = lit(plt_user(path))


FORMAT = Format(
    name="geolife", label="GeoLife GPS trajectories", recognise=_recognise, fit=_fit,
    expect="a header lat,lng,datetime,uid or a .plt trajectory file",
    claim=_claim, preamble={"plt": 6},
    names={"plt": ["lat", "lon", "zero", "altitude", "days", "date", "time"]},
    columns={"csv": {U: ("uid",), T: ("datetime",), LAT: ("lat",), LON: ("lng",)},
             "plt": {LAT: ("lat",), LON: ("lon",)}},
    required=_required, complete=_complete, time_text=_time_text, rules=_rules,
    derive=Derive(params=StayParams.from_dict, events=events_from_fixes,
                  empty="no stay points found in the GPS fixes (nobody stayed within the "
                        "distance for the minimum time); loosen stay_params"))

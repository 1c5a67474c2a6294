"""Great-circle geometry on event frames: distances, boxes, centroids, "has coordinates".

Everything is vectorised numpy: functions take scalars or arrays and broadcast like numpy
does, so a distance over 10M consecutive event pairs is one call, not a Python loop.
Distances are in kilometres on a sphere of the mean Earth radius (IUGG, 6371.0088 km); the
error against the WGS84 ellipsoid is below 0.5%, far under GPS and geocoding noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .schema import LAT, LON, USER

EARTH_RADIUS_KM = 6371.0088
#: Length of one degree of latitude (and of longitude at the equator), in metres.
M_PER_DEG = EARTH_RADIUS_KM * 1000.0 * np.pi / 180.0

ArrayLike = Any  # float, numpy array or pandas Series


def haversine_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike,
                 lon2: ArrayLike) -> np.ndarray:
    """Great-circle distance in km between (lat1, lon1) and (lat2, lon2), in degrees.

    Inputs broadcast against each other; NaN coordinates give NaN distances.
    """
    p1 = np.radians(np.asarray(lat1, dtype="float64"))
    p2 = np.radians(np.asarray(lat2, dtype="float64"))
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, dtype="float64") - np.asarray(lon1, dtype="float64"))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    # clip: rounding can push `a` a hair above 1 for antipodal points
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def pairwise_km(lat: ArrayLike, lon: ArrayLike, lat2: ArrayLike | None = None,
                lon2: ArrayLike | None = None) -> np.ndarray:
    """(N, M) matrix of distances in km between N points and M points (default: the same N).

    Built by broadcasting a column against a row, so it costs N*M floats of memory: meant
    for places or zone centroids (thousands), not raw events.
    """
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    lat2 = lat if lat2 is None else np.asarray(lat2, dtype="float64")
    lon2 = lon if lon2 is None else np.asarray(lon2, dtype="float64")
    return haversine_km(lat[:, None], lon[:, None], lat2[None, :], lon2[None, :])  # (N, M)


def has_coords(df: pd.DataFrame) -> pd.Series:
    """Boolean mask of rows with usable coordinates.

    The rule: both ``lat`` and ``lon`` present, finite, inside [-90, 90] x [-180, 180], and
    not exactly (0, 0) ("null island", the usual placeholder of a failed geocode).
    A frame without the columns has no coordinates at all.
    """
    if LAT not in df.columns or LON not in df.columns:
        return pd.Series(False, index=df.index)
    lat = pd.to_numeric(df[LAT], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    lon = pd.to_numeric(df[LON], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ok = np.isfinite(lat) & np.isfinite(lon)
    ok &= (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0)
    ok &= ~((lat == 0.0) & (lon == 0.0))
    return pd.Series(ok, index=df.index)


def has_coords_sql(lat: str = LAT, lon: str = LON) -> str:
    """The same rule as :func:`has_coords` as a DuckDB boolean expression."""
    return (
        f"({lat} IS NOT NULL AND {lon} IS NOT NULL AND isfinite({lat}) AND isfinite({lon}) "
        f"AND abs({lat}) <= 90 AND abs({lon}) <= 180 AND NOT ({lat} = 0 AND {lon} = 0))"
    )


def with_coords(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` that have usable coordinates (see :func:`has_coords`)."""
    return df.loc[has_coords(df)]


def require_coords(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Rows with coordinates; raise a ValueError saying what to do when there are none."""
    out = with_coords(df)
    if out.empty:
        raise ValueError(
            f"{what} needs events with coordinates, but none of the {len(df)} events has a "
            f"usable {LAT}/{LON}; import a dataset with latitude/longitude columns (check-ins, "
            "GPS fixes) or map them at import"
        )
    return out


def require_coord_columns(df: pd.DataFrame, what: str) -> None:
    """Raise a ValueError saying what to do when ``df`` has no lat/lon columns at all."""
    missing = [c for c in (LAT, LON) if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs {LAT}/{LON} columns, and these events have no {', '.join(missing)}; "
            "use a dataset with coordinates (check-ins, GPS fixes) or map them at import"
        )


def bbox(df: pd.DataFrame) -> tuple[float, float, float, float] | None:
    """(min_lat, max_lat, min_lon, max_lon) of the rows with coordinates, or None.

    Same order as ``DatasetInfo.bbox`` in analytics/store.py.
    """
    pts = with_coords(df)
    if pts.empty:
        return None
    return (float(pts[LAT].min()), float(pts[LAT].max()),
            float(pts[LON].min()), float(pts[LON].max()))


def unit_vectors(lat: ArrayLike, lon: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3-D unit vectors (x, y, z) of points in degrees; their weighted sum gives a centroid."""
    p, lm = np.radians(lat), np.radians(lon)
    return np.cos(p) * np.cos(lm), np.cos(p) * np.sin(lm), np.sin(p)


def chord_km(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> np.ndarray:
    """Great-circle distance in km between unit vectors ``a`` and ``b`` ((x, y, z) each, as
    :func:`unit_vectors` gives): :func:`haversine_km`'s distance (its ``sqrt(a)`` is half
    the chord) without trigonometry but one arcsine, for points whose vectors are known."""
    half = np.sqrt(sum((p - q) ** 2 for p, q in zip(a, b, strict=True))) / 2.0
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.minimum(half, 1.0))


def latlon_from_xyz(x: ArrayLike, y: ArrayLike, z: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Direction of (summed) vectors as (lat, lon) in degrees: inverse of unit_vectors."""
    x, y, z = (np.asarray(v, dtype="float64") for v in (x, y, z))
    return np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x))


def centroid(lat: ArrayLike, lon: ArrayLike,
             weights: ArrayLike | None = None) -> tuple[float, float]:
    """Weighted spherical centroid (mean of unit vectors), robust across the antimeridian.

    For points a few hundred km apart it equals the plain mean of lat/lon to within metres.
    Returns (nan, nan) for no points.
    """
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    if lat.size == 0:
        return (float("nan"), float("nan"))
    w = np.ones_like(lat) if weights is None else np.asarray(weights, dtype="float64")
    x, y, z = unit_vectors(lat, lon)
    c_lat, c_lon = latlon_from_xyz(np.sum(w * x), np.sum(w * y), np.sum(w * z))
    return (float(c_lat), float(c_lon))


def group_centroids(df: pd.DataFrame, by: str | list[str],
                    weight: str | None = None) -> pd.DataFrame:
    """Spherical centroid of each group: columns ``by``, ``lat``, ``lon`` (one groupby, no loop).

    Rows must have coordinates (filter with :func:`with_coords` first).
    """
    x, y, z = unit_vectors(df[LAT].to_numpy("float64"), df[LON].to_numpy("float64"))
    w = np.ones(len(df)) if weight is None else df[weight].to_numpy("float64")
    keys = [by] if isinstance(by, str) else list(by)
    parts = pd.DataFrame({"_x": x * w, "_y": y * w, "_z": z * w}, index=df.index)
    sums = parts.groupby([df[k] for k in keys], sort=True).sum()
    c_lat, c_lon = latlon_from_xyz(sums["_x"], sums["_y"], sums["_z"])
    out = sums.index.to_frame(index=False)
    out[LAT] = c_lat
    out[LON] = c_lon
    return out


def step_km(df: pd.DataFrame, by: str = USER) -> np.ndarray:
    """Distance in km from each row to the previous row of the same ``by`` group.

    ``df`` must already be sorted by (``by``, time); the first row of each group gets NaN.
    """
    lat = df[LAT].to_numpy("float64")
    lon = df[LON].to_numpy("float64")
    out = np.full(len(df), np.nan)
    if len(df) > 1:
        key = df[by].to_numpy()
        same = key[1:] == key[:-1]
        d = haversine_km(lat[:-1], lon[:-1], lat[1:], lon[1:])
        out[1:] = np.where(same, d, np.nan)
    return out


def to_local_m(lat: ArrayLike, lon: ArrayLike, lat0: float,
               lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular projection to metres east/north of (lat0, lon0).

    Accurate to well under 1% within ~50 km of the origin: enough to draw a zone's hull.
    """
    k = np.cos(np.radians(lat0))
    x = (np.asarray(lon, dtype="float64") - lon0) * M_PER_DEG * k
    y = (np.asarray(lat, dtype="float64") - lat0) * M_PER_DEG
    return x, y


def from_local_m(x: ArrayLike, y: ArrayLike, lat0: float,
                 lon0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_local_m`: (lat, lon) in degrees."""
    k = np.cos(np.radians(lat0))
    lat = lat0 + np.asarray(y, dtype="float64") / M_PER_DEG
    lon = lon0 + np.asarray(x, dtype="float64") / (M_PER_DEG * k)
    return lat, lon


def unique_points(lat: ArrayLike, lon: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, unique_lat, unique_lon): the distinct coordinate pairs and, per input point,
    the index of its pair. Hash-based (two factorizes), so 10M points cost about a second;
    used to run per-place work (H3 lookup, point-in-polygon) once per distinct place."""
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    c_lat, u_lat = pd.factorize(lat)
    c_lon, u_lon = pd.factorize(lon)
    codes, pairs = pd.factorize(c_lat.astype("int64") * max(len(u_lon), 1) + c_lon)
    span = max(len(u_lon), 1)
    return codes, np.asarray(u_lat)[pairs // span], np.asarray(u_lon)[pairs % span]

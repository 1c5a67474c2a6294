"""Event density on a square grid and on H3 hexagons, optionally per time window.

Two ways to compute each density, with the same result rows:

* ``grid_density(events, ...)`` / ``hex_density(events, ...)``: pandas, for frames in memory;
* ``grid_density_sql(con, table, ...)`` / ``hex_density_sql(...)``: the group-by runs inside
  DuckDB on a stored events table (``Store.table(name)``), for the 10M-event map page.

Result columns: ``cell_id``, ``lat``/``lon`` (cell centre), ``window_start`` (only when a
window is given), ``count`` (events), ``users`` (distinct users); plus ``polygon`` (closed ring
``[[lon, lat], ...]`` ready for a deck.gl PolygonLayer) when ``polygons=True``. Rows are
sorted by window then cell.

The square grid is global and needs no reference point: rows are latitude bands
``cell_m`` metres tall; inside each band the columns are ``cell_m`` metres wide at the band's
centre latitude, so cells keep (nearly) equal area at every latitude. A cell id packs
``row * 2**32 + col`` into an int64.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from ..geo import M_PER_DEG, has_coords_sql, require_coord_columns, unique_points, with_coords
from ..schema import CATEGORY, ITEM, LAT, LON, TS, USER
from ..spacetime import CALENDAR, WINDOW, Window, window_sql, window_start
from .sql import registered

CELL = "cell_id"
COUNT = "count"
USERS = "users"
POLYGON = "polygon"

_COL_SHIFT = 2**32


def _check_cell_m(cell_m: float) -> float:
    cell_m = float(cell_m)
    if not np.isfinite(cell_m) or cell_m < 1.0:
        raise ValueError(f"grid cell size must be at least 1 metre, got {cell_m!r}")
    return cell_m


def _band_center(row: np.ndarray, cell_m: float) -> np.ndarray:
    return -90.0 + (row + 0.5) * cell_m / M_PER_DEG


def _lon_width(band_lat: np.ndarray, cell_m: float) -> np.ndarray:
    # degrees of longitude spanned by cell_m metres at the band centre (floored near poles)
    return cell_m / (M_PER_DEG * np.maximum(np.cos(np.radians(band_lat)), 1e-9))


def grid_cell_ids(lat: np.ndarray, lon: np.ndarray, cell_m: float) -> np.ndarray:
    """int64 id of the square grid cell of each point (lat/lon in degrees, cell_m metres)."""
    cell_m = _check_cell_m(cell_m)
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    row = np.floor((lat + 90.0) * M_PER_DEG / cell_m)
    band = _band_center(row, cell_m)
    col = np.floor((lon + 180.0) / _lon_width(band, cell_m))
    return row.astype("int64") * _COL_SHIFT + col.astype("int64")


def grid_cell_ids_sql(cell_m: float, lat: str = LAT, lon: str = LON) -> str:
    """DuckDB expression computing :func:`grid_cell_ids` (same floating-point steps)."""
    cell_m = _check_cell_m(cell_m)
    row = f"floor(({lat} + 90.0) * {M_PER_DEG!r} / {cell_m!r})"
    band = f"(-90.0 + ({row} + 0.5) * {cell_m!r} / {M_PER_DEG!r})"
    width = f"({cell_m!r} / ({M_PER_DEG!r} * greatest(cos(radians({band})), 1e-9)))"
    col = f"floor(({lon} + 180.0) / {width})"
    return f"(CAST({row} AS BIGINT) * {_COL_SHIFT} + CAST({col} AS BIGINT))"


def grid_cell_centers(cell_ids: np.ndarray, cell_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of the centres of grid cells."""
    ids = np.asarray(cell_ids, dtype="int64")
    row, col = ids // _COL_SHIFT, ids % _COL_SHIFT
    band = _band_center(row.astype("float64"), cell_m)
    return band, -180.0 + (col + 0.5) * _lon_width(band, cell_m)


def grid_cell_polygons(cell_ids: np.ndarray, cell_m: float) -> list[list[list[float]]]:
    """Closed rings ``[[lon, lat], ...]`` (5 vertices) of grid cells."""
    ids = np.asarray(cell_ids, dtype="int64")
    row, col = ids // _COL_SHIFT, ids % _COL_SHIFT
    band = _band_center(row.astype("float64"), cell_m)
    half = 0.5 * cell_m / M_PER_DEG
    width = _lon_width(band, cell_m)
    w, e = -180.0 + col * width, -180.0 + (col + 1) * width
    s, n = band - half, band + half
    ring = np.stack([np.stack(c, axis=-1) for c in
                     ((w, s), (e, s), (e, n), (w, n), (w, s))], axis=1)  # (N, 5, 2)
    return ring.tolist()


def _aggregate(df: pd.DataFrame, window: Window) -> pd.DataFrame:
    """count/users per cell (and window) of a frame holding USER, TS and CELL."""
    keys = [CELL]
    if window is not None:
        df = df.assign(**{WINDOW: window_start(df[TS], window)}).dropna(subset=[WINDOW])
        keys = [WINDOW, CELL]
    g = df.groupby(keys, sort=True)
    out = pd.DataFrame({COUNT: g.size(), USERS: g[USER].nunique()}).reset_index()
    return out.astype({COUNT: "int64", USERS: "int64"})


def _finish(out: pd.DataFrame, centers: pd.DataFrame, window: Window) -> pd.DataFrame:
    out = out.merge(centers, on=CELL, how="left")
    cols = [CELL, LAT, LON] + ([WINDOW] if window is not None else []) + [COUNT, USERS]
    cols += [POLYGON] if POLYGON in out.columns else []
    order = [WINDOW, CELL] if window is not None else [CELL]
    return out.sort_values(order, ignore_index=True)[cols]


def grid_density(events: pd.DataFrame, cell_m: float = 500.0, window: Window = None,
                 polygons: bool = False) -> pd.DataFrame:
    """Events and distinct users per square grid cell of ``cell_m`` metres (per window)."""
    require_coord_columns(events, "grid density")
    pts = with_coords(events)
    pts = pts.assign(**{CELL: grid_cell_ids(pts[LAT].to_numpy("float64"),
                                            pts[LON].to_numpy("float64"), cell_m)})
    out = _aggregate(pts[[USER, TS, CELL]], window)
    return _finish(out, _grid_centers(out[CELL].unique(), cell_m, polygons), window)


def _grid_centers(cells: np.ndarray, cell_m: float, polygons: bool) -> pd.DataFrame:
    lat, lon = grid_cell_centers(cells, cell_m)
    centers = pd.DataFrame({CELL: np.asarray(cells, dtype="int64"), LAT: lat, LON: lon})
    if polygons:
        centers[POLYGON] = grid_cell_polygons(cells, cell_m)
    return centers


def sql_density(con: duckdb.DuckDBPyConnection, table: str, cell_expr: str,
                window: Window, where: str | None, params: list | None) -> pd.DataFrame:
    """Located events and distinct users per cell (``cell_expr`` over ``table``'s rows) and
    window, counted in DuckDB: the rows the ``*_density_sql`` functions finish."""
    conds = [has_coords_sql()]
    sel_w, group = "", CELL
    if window is not None:
        w_expr, w_cond = window_sql(window)
        conds.append(w_cond)
        sel_w, group = f"{w_expr} AS {WINDOW}, ", f"{WINDOW}, {CELL}"
    if where:
        conds.append(f"({where})")
    sql = (
        f"SELECT {sel_w}{cell_expr} AS {CELL}, count(*) AS {COUNT}, "
        f"count(DISTINCT {USER}) AS {USERS} FROM {table} "
        f"WHERE {' AND '.join(conds)} GROUP BY {group} ORDER BY {group}"
    )
    out = con.execute(sql, params or []).df()
    out = out.astype({COUNT: "int64", USERS: "int64"})
    if window is not None:
        out[WINDOW] = out[WINDOW].astype("datetime64[us]")
    return out


def grid_density_sql(con: duckdb.DuckDBPyConnection, table: str, cell_m: float = 500.0,
                     window: Window = None, where: str | None = None,
                     params: list | None = None, polygons: bool = False) -> pd.DataFrame:
    """:func:`grid_density` computed inside DuckDB on ``table`` (e.g. ``store.table(name)``).

    ``where`` is an extra SQL condition on the events (with ``?`` placeholders in ``params``).
    """
    out = sql_density(con, table, grid_cell_ids_sql(cell_m), window, where, params)
    return finish_grid(out, cell_m, window, polygons)


def finish_grid(out: pd.DataFrame, cell_m: float, window: Window,
                polygons: bool) -> pd.DataFrame:
    """``grid_density_sql``'s last step on the rows of :func:`sql_density`: cell centres
    (and polygons), column order, sorting."""
    return _finish(out, _grid_centers(out[CELL].unique(), cell_m, polygons), window)


# -- hexagons (H3) ---------------------------------------------------------------------------
def _h3():
    try:
        import h3
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "hexagon density needs the 'h3' package (v4): pip install h3"
        ) from exc
    return h3


def _check_resolution(resolution: int) -> int:
    if not isinstance(resolution, int | np.integer) or not 0 <= int(resolution) <= 15:
        raise ValueError(
            f"H3 resolution must be an integer 0..15 (8 is ~0.7 km2 cells), got {resolution!r}"
        )
    return int(resolution)


def hex_cells_of(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cell (string id) of each point.

    h3 converts one point per call, so it is called once per *distinct* coordinate pair and
    the result is broadcast back: check-in data has few distinct places per event.
    """
    h3 = _h3()
    res = _check_resolution(resolution)
    codes, u_lat, u_lon = unique_points(lat, lon)
    cells = np.array([h3.latlng_to_cell(a, b, res)
                      for a, b in zip(u_lat.tolist(), u_lon.tolist(), strict=True)], dtype=object)
    return cells[codes]


def _hex_centers(cells: np.ndarray, polygons: bool) -> pd.DataFrame:
    h3 = _h3()
    cells = list(cells)
    centers = np.array([h3.cell_to_latlng(c) for c in cells], dtype="float64").reshape(-1, 2)
    out = pd.DataFrame({CELL: pd.array(cells, dtype="string"),
                        LAT: centers[:, 0], LON: centers[:, 1]})
    if polygons:
        rings = []
        for c in cells:
            ring = [[lng, lt] for lt, lng in h3.cell_to_boundary(c)]
            rings.append(ring + ring[:1])
        out[POLYGON] = rings
    return out


def hex_density(events: pd.DataFrame, resolution: int = 8, window: Window = None,
                polygons: bool = False) -> pd.DataFrame:
    """Events and distinct users per H3 hexagon of ``resolution`` (per window)."""
    require_coord_columns(events, "hexagon density")
    pts = with_coords(events)
    cells = hex_cells_of(pts[LAT].to_numpy("float64"), pts[LON].to_numpy("float64"), resolution)
    out = _aggregate(pts[[USER, TS]].assign(**{CELL: pd.array(cells, dtype="string")}), window)
    return _finish(out, _hex_centers(out[CELL].unique(), polygons), window)


def hex_density_sql(con: duckdb.DuckDBPyConnection, table: str, resolution: int = 8,
                    window: Window = None, where: str | None = None,
                    params: list | None = None, polygons: bool = False) -> pd.DataFrame:
    """:func:`hex_density` with the group-by inside DuckDB.

    The distinct coordinates are fetched once, converted to H3 cells in Python, registered
    as a lookup table and joined back, so counting and distinct users stay in SQL.
    """
    cond = has_coords_sql()
    if where:
        cond += f" AND ({where})"
    coords = con.execute(
        f"SELECT DISTINCT {LAT}, {LON} FROM {table} WHERE {cond}", params or []).df()
    with registered(con, hex_lookup(coords, resolution), "hex_lookup") as view:
        joined = (f"(SELECT e.{USER}, e.{TS}, e.{LAT}, e.{LON}, h.{CELL} FROM "
                  f"(SELECT {USER}, {TS}, {LAT}, {LON} FROM {table} WHERE {cond}) e "
                  f"JOIN {view} h ON e.{LAT} = h.{LAT} AND e.{LON} = h.{LON})")
        out = sql_density(con, joined, CELL, window, None, params)
    return finish_hex(out, window, polygons)


def finish_hex(out: pd.DataFrame, window: Window, polygons: bool) -> pd.DataFrame:
    """``hex_density_sql``'s last step on the rows of :func:`sql_density`: string cell ids,
    cell centres (and polygons), column order, sorting."""
    out[CELL] = out[CELL].astype("string")
    return _finish(out, _hex_centers(out[CELL].unique(), polygons), window)


def sample_points_sql(con: duckdb.DuckDBPyConnection, table: str, limit: int,
                      where: str | None = None, params: list | None = None) -> pd.DataFrame:
    """Up to ``limit`` located events (``lat, lon, ts, category``) to draw, the same ones
    every time: the first by a hash of (user, time, item)."""
    cond = has_coords_sql() + (f" AND ({where})" if where else "")
    return con.execute(f"SELECT {LAT}, {LON}, {TS}, {CATEGORY} FROM {table} WHERE {cond} "
                       f"ORDER BY hash({USER}, {TS}, {ITEM}) LIMIT {int(limit)}",
                       params or []).df()


def hex_lookup(coords: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """``coords`` (distinct ``lat, lon``) with the string H3 cell of each."""
    lookup = coords.assign(**{CELL: hex_cells_of(coords[LAT].to_numpy("float64"),
                                                 coords[LON].to_numpy("float64"), resolution)})
    lookup[CELL] = lookup[CELL].astype("string")
    return lookup


# -- the stored densities' keys ------------------------------------------------------------
def density_key(kind: str, size: float, window: Window) -> str | None:
    """The key of a stored density (``kind:size:window``), None for custom windows."""
    if window is not None and not (isinstance(window, str) and window.strip().lower()
                                   in CALENDAR):
        return None
    win = "all" if window is None else str(window).strip().lower()
    return f"{kind}:{float(size):g}:{win}"


def auto_hex_resolution(bbox: tuple[float, float, float, float] | None) -> int:
    """An H3 resolution giving a few hundred cells over ``bbox`` (min_lat, max_lat, min_lon,
    max_lon): what the Map page draws."""
    if bbox is None:
        return 8
    min_lat, max_lat, min_lon, max_lon = bbox
    mid = np.radians((min_lat + max_lat) / 2)
    km = max((max_lat - min_lat) * 111.2, (max_lon - min_lon) * 111.2 * np.cos(mid), 0.1)
    # H3 edge lengths (km) by resolution: 4 ~22.6, 5 ~8.5, 6 ~3.2, 7 ~1.2, 8 ~0.46, 9 ~0.17
    for res, edge in ((9, 0.17), (8, 0.46), (7, 1.2), (6, 3.2), (5, 8.5)):
        if km / edge <= 120:
            return res
    return 4

"""analytics.space: square-grid and H3 density, pandas and DuckDB versions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import shapely
from trailscope.analytics import geo
from trailscope.analytics.schema import ITEM, LAT, LON, TS, USER
from trailscope.analytics.spacetime import WINDOW
from trailscope.analytics.spatial import density as space

from tests.analytics.geodata import NYC_BOX


def _events(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame({
        USER: pd.array([r[0] for r in rows], dtype="string"),
        ITEM: pd.array([f"p{i}" for i in range(len(rows))], dtype="string"),
        TS: pd.to_datetime([r[1] for r in rows]).astype("datetime64[us]"),
        LAT: [r[2] for r in rows], LON: [r[3] for r in rows],
    })


# -- grid cells ---------------------------------------------------------------------------
def test_grid_cell_by_hand() -> None:
    # cells one degree tall: (0, 0) is in row floor(90) = 90, whose band centre is 0.5 N;
    # there a cell spans 1 / cos(0.5 deg) degrees of longitude, so the column is
    # floor(180 * cos(0.5 deg)) = floor(179.9931) = 179.
    size = geo.M_PER_DEG
    cid = space.grid_cell_ids(np.array([0.0]), np.array([0.0]), size)[0]
    assert cid == 90 * 2**32 + 179
    lat, lon = space.grid_cell_centers(np.array([cid]), size)
    width = 1.0 / math.cos(math.radians(0.5))
    assert lat[0] == pytest.approx(0.5)
    assert lon[0] == pytest.approx(-180.0 + 179.5 * width)


def test_grid_cells_keep_their_size_at_high_latitude() -> None:
    cell_m = 1000.0
    for lat0 in (0.0, 60.0):
        # points 400 m apart east-west share a cell or sit in neighbours, never 2 cells apart
        lon_step = 400.0 / geo.M_PER_DEG / math.cos(math.radians(lat0))
        lons = 10.0 + lon_step * np.arange(50)
        ids = space.grid_cell_ids(np.full(50, lat0 + 0.0001), lons, cell_m)
        cols = ids % 2**32
        assert np.all(np.diff(cols) <= 1)
        # 50 points over 19.6 km east-west touch about 20 one-kilometre columns at any latitude
        assert 19 <= len(np.unique(cols)) <= 21
    rings = space.grid_cell_polygons(ids[:1], cell_m)
    poly = shapely.Polygon(rings[0])
    assert len(rings[0]) == 5 and rings[0][0] == rings[0][-1]
    assert poly.contains(shapely.Point(lons[0], 60.0001))
    # cell sides ~ 1 km: half-diagonal from centre to corner ~ 707 m
    c_lat, c_lon = space.grid_cell_centers(ids[:1], cell_m)
    corner = rings[0][0]
    assert geo.haversine_km(c_lat[0], c_lon[0], corner[1], corner[0]) == pytest.approx(
        0.7071, rel=0.01)


def test_grid_density_counts_by_hand() -> None:
    ev = _events([
        ("u1", "2012-04-02 10:00", 40.7500, -73.9900),
        ("u1", "2012-04-02 11:00", 40.7501, -73.9901),  # same 500 m cell as above
        ("u2", "2012-04-02 12:00", 40.7502, -73.9899),  # same cell, another user
        ("u2", "2012-04-03 09:00", 40.8000, -73.9500),  # ~6 km away: another cell
        ("u3", "2012-04-03 09:30", np.nan, -73.9500),   # no coordinates: not counted
    ])
    dens = space.grid_density(ev, cell_m=500)
    assert dens["count"].tolist() == [3, 1] or dens["count"].tolist() == [1, 3]
    big = dens.loc[dens["count"].idxmax()]
    assert big["users"] == 2
    assert geo.haversine_km(big[LAT], big[LON], 40.7501, -73.99) < 0.5
    daily = space.grid_density(ev, cell_m=500, window="day", polygons=True)
    assert list(daily.columns) == ["cell_id", LAT, LON, WINDOW, "count", "users", "polygon"]
    assert [(str(r[WINDOW].date()), r["count"], r["users"]) for _, r in daily.iterrows()] == [
        ("2012-04-02", 3, 2), ("2012-04-03", 1, 1)]


def test_density_without_coordinates() -> None:
    ev = _events([("u", "2012-01-01", np.nan, np.nan), ("v", "2012-01-02", 95.0, 10.0)])
    empty = space.grid_density(ev, window="week")
    assert empty.empty and list(empty.columns) == ["cell_id", LAT, LON, WINDOW, "count", "users"]
    assert space.hex_density(ev).empty
    with pytest.raises(ValueError, match="lat/lon columns"):
        space.grid_density(ev.drop(columns=[LAT, LON]))


def test_bad_cell_size_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="at least 1 metre"):
        space.grid_density(_events([("u", "2012-01-01", 1.0, 1.0)]), cell_m=0)


# -- hexagons ----------------------------------------------------------------------------
def test_hex_density_by_hand() -> None:
    ev = _events([
        ("u1", "2012-04-02 10:00", 40.7500, -73.9900),
        ("u2", "2012-04-02 11:00", 40.7500, -73.9900),
        ("u2", "2012-04-09 11:00", 40.7500, -73.9900),
        ("u1", "2012-04-09 12:00", 51.5000, -0.1200),
    ])
    dens = space.hex_density(ev, resolution=8, window="week", polygons=True)
    assert len(dens) == 3
    first = dens.iloc[0]
    assert (str(first[WINDOW].date()), first["count"], first["users"]) == ("2012-04-02", 2, 2)
    # a resolution-8 hexagon has ~0.46 km edges: its centre is within that of the point
    assert geo.haversine_km(first[LAT], first[LON], 40.75, -73.99) < 0.5
    ring = first["polygon"]
    assert len(ring) == 7 and ring[0] == ring[-1]
    assert shapely.Polygon(ring).contains(shapely.Point(-73.99, 40.75))
    with pytest.raises(ValueError, match="resolution"):
        space.hex_density(ev, resolution=16)


# -- real data: NYC, pandas == DuckDB -----------------------------------------------------
@pytest.mark.parametrize("window", [None, "month", "6h",
                                    ["2012-05-01", "2012-07-01", "2012-12-24"]])
def test_grid_density_sql_equals_pandas_on_nyc(nyc_workspace, window) -> None:
    store, name = nyc_workspace
    events = store.events(name)
    cur = store.cursor()
    try:
        got = space.grid_density_sql(cur, store.table(name), 500, window=window)
    finally:
        cur.close()
    want = space.grid_density(events, 500, window=window)
    pd.testing.assert_frame_equal(got, want)
    if window is None:
        assert got["count"].sum() == int(geo.has_coords(events).sum()) > 40_000  # slice: 47,838


def test_hex_density_sql_equals_pandas_on_nyc(nyc_workspace) -> None:
    store, name = nyc_workspace
    cur = store.cursor()
    try:
        got = space.hex_density_sql(cur, store.table(name), 8, window="week", polygons=True,
                                    where=f"{USER} <> ?", params=["1"])
    finally:
        cur.close()
    events = store.events(name)
    want = space.hex_density(events[events[USER] != "1"], 8, window="week", polygons=True)
    pd.testing.assert_frame_equal(got, want)


def test_nyc_density_peaks_in_manhattan(nyc_workspace) -> None:
    store, name = nyc_workspace
    cur = store.cursor()
    try:
        dens = space.grid_density_sql(cur, store.table(name), 1000)
    finally:
        cur.close()
    lo_lat, hi_lat, lo_lon, hi_lon = NYC_BOX
    assert dens[LAT].between(lo_lat, hi_lat).mean() > 0.95
    assert dens[LON].between(lo_lon, hi_lon).mean() > 0.95
    top = dens.nlargest(5, "count")
    # the five busiest square kilometres are all in Manhattan below Central Park
    assert top[LAT].between(40.70, 40.78).all() and top[LON].between(-74.02, -73.96).all()

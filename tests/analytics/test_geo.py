"""analytics.geo and analytics.spacetime: distances, boxes, centroids, windows, local time."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import geo, spacetime
from trailscope.analytics.schema import LAT, LON, TS, TZ_OFFSET, USER

R = geo.EARTH_RADIUS_KM
DEG_KM = R * math.pi / 180.0  # 111.195 km: one degree of latitude


# -- haversine ----------------------------------------------------------------------------
def test_haversine_exact_arcs() -> None:
    # one degree along a meridian, a quarter of the equator, antipodes: pi R / 180, pi R / 2, pi R
    assert geo.haversine_km(10.0, 20.0, 11.0, 20.0) == pytest.approx(DEG_KM, rel=1e-12)
    assert geo.haversine_km(0.0, 0.0, 0.0, 90.0) == pytest.approx(math.pi * R / 2, rel=1e-12)
    assert geo.haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * R, rel=1e-12)
    assert geo.haversine_km(45.0, 7.0, 45.0, 7.0) == 0.0


def test_haversine_known_city_pairs() -> None:
    # published great-circle distances (spherical Earth): London-Paris 343.5, NYC-LA 3936
    london, paris = (51.5074, -0.1278), (48.8566, 2.3522)
    nyc, la = (40.7128, -74.0060), (34.0522, -118.2437)
    assert geo.haversine_km(*london, *paris) == pytest.approx(343.5, abs=1.0)
    assert geo.haversine_km(*nyc, *la) == pytest.approx(3936.0, abs=5.0)
    # symmetric and crossing the antimeridian the short way (0.2 degrees at the equator)
    assert geo.haversine_km(*paris, *london) == pytest.approx(geo.haversine_km(*london, *paris))
    assert geo.haversine_km(0.0, 179.9, 0.0, -179.9) == pytest.approx(0.2 * DEG_KM, rel=1e-9)


def test_haversine_vectorised_and_nan() -> None:
    lat = np.array([0.0, 1.0, np.nan])
    out = geo.haversine_km(lat, 0.0, 0.0, 0.0)
    assert out.shape == (3,)
    assert out[0] == 0.0 and out[1] == pytest.approx(DEG_KM) and np.isnan(out[2])


def test_pairwise_matrix_matches_haversine() -> None:
    lat = np.array([0.0, 0.0, 1.0])
    lon = np.array([0.0, 1.0, 0.0])
    m = geo.pairwise_km(lat, lon)
    assert m.shape == (3, 3)
    assert np.allclose(np.diag(m), 0.0) and np.allclose(m, m.T)
    assert m[0, 1] == pytest.approx(DEG_KM) and m[0, 2] == pytest.approx(DEG_KM)
    assert m[1, 2] == pytest.approx(geo.haversine_km(0.0, 1.0, 1.0, 0.0))
    rect = geo.pairwise_km(lat, lon, np.array([0.0, 2.0]), np.array([0.0, 0.0]))
    assert rect.shape == (3, 2)
    assert rect[2, 1] == pytest.approx(DEG_KM)


# -- coordinates, box, centroid -----------------------------------------------------------
def test_has_coords_rule() -> None:
    df = pd.DataFrame({
        LAT: [40.7, np.nan, 91.0, 0.0, 10.0, 0.0, -33.9],
        LON: [-74.0, 2.0, 0.0, 0.0, np.inf, 5.0, 151.2],
    })
    assert geo.has_coords(df).tolist() == [True, False, False, False, False, True, True]
    assert not geo.has_coords(pd.DataFrame({USER: ["a"]})).any()
    assert len(geo.with_coords(df)) == 3
    with pytest.raises(ValueError, match="coordinates"):
        geo.require_coords(df.iloc[1:5], "testing")


def test_has_coords_sql_agrees() -> None:
    df = pd.DataFrame({LAT: [40.7, None, 91.0, 0.0, 0.0, -33.9],
                       LON: [-74.0, 2.0, 0.0, 0.0, 5.0, 181.0]})
    con = duckdb.connect()
    con.register("t", df)
    got = con.execute(f"SELECT {geo.has_coords_sql()} FROM t").fetchall()
    assert [bool(r[0]) for r in got] == geo.has_coords(df).tolist()


def test_bbox_and_centroid() -> None:
    df = pd.DataFrame({LAT: [1.0, -2.0, 3.0, np.nan], LON: [10.0, 20.0, -5.0, 50.0]})
    assert geo.bbox(df) == (-2.0, 3.0, -5.0, 20.0)
    assert geo.bbox(df.iloc[3:]) is None
    assert geo.centroid([0.0, 0.0], [-10.0, 10.0]) == pytest.approx((0.0, 0.0), abs=1e-12)
    lat, lon = geo.centroid([0.0, 0.0], [179.0, -179.0])  # across the antimeridian
    assert lat == pytest.approx(0.0, abs=1e-9) and abs(lon) == pytest.approx(180.0)
    # weights: 3 visits at the pole side of a meridian pair pull the centroid that way
    w_lat, _ = geo.centroid([0.0, 10.0], [0.0, 0.0], weights=[1.0, 3.0])
    assert 5.0 < w_lat < 10.0
    assert geo.centroid([], []) != geo.centroid([], [])  # (nan, nan)


def test_group_centroids_equal_single_centroids() -> None:
    df = pd.DataFrame({USER: ["a", "a", "b", "b", "b"],
                       LAT: [0.0, 0.0, 10.0, 12.0, 11.0], LON: [-1.0, 1.0, 5.0, 5.0, 7.0]})
    out = geo.group_centroids(df, USER)
    assert out[USER].tolist() == ["a", "b"]
    for _, row in out.iterrows():
        part = df[df[USER] == row[USER]]
        assert (row[LAT], row[LON]) == pytest.approx(geo.centroid(part[LAT], part[LON]))


def test_step_km_per_user() -> None:
    df = pd.DataFrame({USER: ["a", "a", "a", "b"], LAT: [0.0, 1.0, 1.0, 5.0],
                       LON: [0.0, 0.0, 0.0, 5.0]})
    steps = geo.step_km(df)
    assert np.isnan(steps[0]) and np.isnan(steps[3])
    assert steps[1] == pytest.approx(DEG_KM) and steps[2] == 0.0


def test_local_projection_round_trip() -> None:
    x, y = geo.to_local_m([40.76, 40.75], [-73.98, -73.99], 40.75, -73.99)
    assert x[1] == 0.0 and y[1] == 0.0
    assert y[0] == pytest.approx(0.01 * geo.M_PER_DEG)
    assert math.hypot(x[0], y[0]) / 1000 == pytest.approx(
        geo.haversine_km(40.76, -73.98, 40.75, -73.99), rel=1e-3)
    lat, lon = geo.from_local_m(x, y, 40.75, -73.99)
    assert np.allclose(lat, [40.76, 40.75]) and np.allclose(lon, [-73.98, -73.99])


# -- windows and local time ---------------------------------------------------------------
TIMES = pd.Series(pd.to_datetime([
    "2012-04-07 17:42", "2012-04-09 00:00", "2012-12-31 23:59", "2013-01-01 00:00",
    "1969-12-31 22:30",
]).astype("datetime64[us]"))


def test_calendar_windows_by_hand() -> None:
    week = spacetime.window_start(TIMES, "week")
    # 2012-04-07 is a Saturday -> week of Monday 04-02; 04-09 is a Monday -> itself
    assert [str(t.date()) for t in week] == [
        "2012-04-02", "2012-04-09", "2012-12-31", "2012-12-31", "1969-12-29"]
    month = spacetime.window_start(TIMES, "month")
    assert [str(t.date()) for t in month] == [
        "2012-04-01", "2012-04-01", "2012-12-01", "2013-01-01", "1969-12-01"]
    quarter = spacetime.window_start(TIMES, "quarter")
    assert [str(t.date()) for t in quarter][:4] == [
        "2012-04-01", "2012-04-01", "2012-10-01", "2013-01-01"]
    fixed = spacetime.window_start(TIMES, "6h")
    assert str(fixed[0]) == "2012-04-07 12:00:00" and str(fixed[4]) == "1969-12-31 18:00:00"


def test_custom_edges_leave_outside_events_out() -> None:
    edges = ["2012-04-01", "2012-06-01", "2013-01-01"]
    w = spacetime.window_start(TIMES, edges)
    assert str(w[0].date()) == "2012-04-01" and str(w[2].date()) == "2012-06-01"
    assert pd.isna(w[3]) and pd.isna(w[4])  # 2013-01-01 is the closing edge; 1969 is before
    assert list(spacetime.all_windows(TIMES[0], TIMES[2], edges).strftime("%m")) == ["04", "06"]
    with pytest.raises(ValueError, match="increasing"):
        spacetime.window_start(TIMES, ["2012-06-01", "2012-04-01"])
    with pytest.raises(ValueError, match="unknown time window"):
        spacetime.window_start(TIMES, "fortnightly-ish")


@pytest.mark.parametrize("window", ["hour", "day", "week", "month", "quarter", "year", "6h",
                                    "90min", ["2012-01-01", "2012-04-08", "2013-06-01"]])
def test_window_sql_matches_pandas(window) -> None:
    con = duckdb.connect()
    con.register("t", pd.DataFrame({TS: TIMES}))
    expr, cond = spacetime.window_sql(window)
    got = con.execute(f"SELECT CASE WHEN {cond} THEN {expr} END FROM t").df().iloc[:, 0]
    want = spacetime.window_start(TIMES, window)
    assert [None if pd.isna(v) else pd.Timestamp(v) for v in got] == \
        [None if pd.isna(v) else pd.Timestamp(v) for v in want]


def test_all_windows_fills_the_range() -> None:
    starts = spacetime.all_windows(pd.Timestamp("2012-04-07"), pd.Timestamp("2012-07-02"),
                                   "month")
    assert [t.month for t in starts] == [4, 5, 6, 7]
    weeks = spacetime.all_windows(pd.Timestamp("2012-04-07"), pd.Timestamp("2012-04-20"), "week")
    assert [str(t.date()) for t in weeks] == ["2012-04-02", "2012-04-09", "2012-04-16"]


def test_local_time_offset_then_longitude_fallback() -> None:
    df = pd.DataFrame({
        TS: pd.to_datetime(["2012-04-07 03:00"] * 3).astype("datetime64[us]"),
        TZ_OFFSET: pd.array([-240, None, None], dtype="Int32"),
        LON: [-74.0, -74.0, np.nan],
    })
    local = spacetime.local_time(df)
    assert local.dt.hour.tolist() == [23, 22, 3]  # -4h known, round(-74/15) = -5h, UTC
    assert spacetime.local_time(df, fallback="utc").dt.hour.tolist() == [23, 3, 3]


def test_solar_offset_is_one_rule_for_scalars_and_arrays() -> None:
    """round(lon / 15) hours, halves to even, the same for a scalar and an array."""
    lons = [-74.0, -7.5, 7.5, 22.5, 0.0, 179.9]
    assert [spacetime.solar_offset_min(x) for x in lons] == [-300, 0, 0, 120, 0, 720]
    got = spacetime.solar_offset_min(np.array(lons + [np.nan]))
    assert got[:-1].tolist() == [-300, 0, 0, 120, 0, 720] and np.isnan(got[-1])
    sql = duckdb.execute("SELECT " + ", ".join(
        spacetime.solar_offset_sql(f"CAST({x} AS DOUBLE)") for x in lons) + ", "
        + spacetime.solar_offset_sql("CAST(NULL AS DOUBLE)")).fetchone()
    assert list(sql[:-1]) == [-300, 0, 0, 120, 0, 720] and sql[-1] is None  # same in DuckDB


def test_clock_text_says_which_clock() -> None:
    """Datasets imported before the local-time step (no ``local_time`` in the report) keep
    the old rule; newer ones name the basis of most events and the share of the others."""
    assert spacetime.clock_text(None, 10, -74.0) == (
        None, "local time (from the events' time-zone offsets)")
    fb, text = spacetime.clock_text({}, 0, -74.0)
    assert fb == -300 and "longitude" in text and "UTC-5" in text
    assert spacetime.clock_text({"variant": ""}, 0, None)[0] is None
    zone = {"local_time": {"basis": spacetime.BASIS_ZONE, "zones": ["Asia/Tokyo"],
                           "events": {spacetime.BASIS_ZONE: 990, spacetime.BASIS_UTC: 10}}}
    fb, text = spacetime.clock_text(zone, 990, 139.7)
    assert fb is None  # every event with coordinates has its offset; the rest are UTC
    assert text.startswith("local time from each event's time zone (looked up from its "
                           "coordinates, with daylight saving): Asia/Tokyo")
    assert text.endswith("1% of events: UTC, having neither an offset nor coordinates")
    file = {"local_time": {"basis": spacetime.BASIS_FILE,
                           "events": {spacetime.BASIS_FILE: 5}}}
    assert spacetime.clock_text(file, 5, None) == (
        None, "local time from the time-zone offsets given in the file")
    utc = {"local_time": {"basis": spacetime.BASIS_UTC, "events": {spacetime.BASIS_UTC: 3}}}
    assert spacetime.clock_text(utc, 0, None)[1].startswith("UTC")

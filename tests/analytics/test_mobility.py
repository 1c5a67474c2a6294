"""analytics.mobility and analytics.flows: paths, radius of gyration, home/work, OD flows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import geo
from trailscope.analytics.schema import ITEM, LAT, LON, TS, TZ_OFFSET, USER
from trailscope.analytics.spatial import flows, mobility, zones

from tests.analytics.geodata import NYC_BOX, geolife_events
from tests.conftest import GEOLIFE

DEG_KM = geo.EARTH_RADIUS_KM * math.pi / 180.0


def _ev(rows: list[tuple], tz: list | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=[USER, ITEM, TS, LAT, LON])
    df = df.astype({USER: "string", ITEM: "string"})
    df[TS] = pd.to_datetime(df[TS]).astype("datetime64[us]")
    if tz is not None:
        df[TZ_OFFSET] = pd.array(tz, dtype="Int32")
    return df


# -- radius of gyration, travel, places -----------------------------------------------------
def test_radius_of_gyration_by_hand() -> None:
    # (0, 0) is "no coordinates" (null island), so the hand-made points sit around (10, 20)
    ev = _ev([
        # u1: (9, 20), (11, 20) once, (10, 20) twice -> centre (10, 20) by symmetry;
        #     d = 1 deg, 1 deg, 0, 0 -> r_g = sqrt((2 * 111.195^2) / 4) = 111.195 / sqrt(2)
        ("u1", "s", "2012-01-01 10:00", 9.0, 20.0), ("u1", "n", "2012-01-01 11:00", 11.0, 20.0),
        ("u1", "c", "2012-01-01 12:00", 10.0, 20.0), ("u1", "c", "2012-01-01 13:00", 10.0, 20.0),
        # u2: two points 2 deg apart on the equator -> centre halfway, r_g = 1 deg
        ("u2", "w", "2012-01-01 10:00", 0.0, 10.0), ("u2", "e", "2012-01-02 10:00", 0.0, 12.0),
        # u3: one place, visited three times -> 0
        ("u3", "h", "2012-01-01 10:00", 5.0, 5.0), ("u3", "h", "2012-01-03 10:00", 5.0, 5.0),
    ])
    rg = mobility.radius_of_gyration(ev).set_index(USER)[mobility.RG]
    assert rg["u1"] == pytest.approx(DEG_KM / math.sqrt(2), rel=1e-9)
    assert rg["u2"] == pytest.approx(DEG_KM, rel=1e-9)
    assert rg["u3"] == pytest.approx(0.0, abs=1e-9)
    m = mobility.user_mobility(ev).set_index(USER)
    assert m[mobility.PLACES].to_dict() == {"u1": 3, "u2": 2, "u3": 1}
    assert m[mobility.EVENTS].to_dict() == {"u1": 4, "u2": 2, "u3": 2}
    # u1 travels S -> N -> C -> C: 2 deg + 1 deg + 0
    assert m.loc["u1", mobility.TRAVEL] == pytest.approx(3 * DEG_KM)


def test_travel_uses_time_order_and_windows() -> None:
    ev = _ev([
        ("u", "b", "2012-01-01 11:00", 0.0, 11.0),
        ("u", "a", "2012-01-01 10:00", 0.0, 10.0),  # first in time, listed second
        ("u", "a", "2012-01-01 12:00", 0.0, 10.0),
        ("u", "c", "2012-02-01 09:00", 0.0, 13.0),  # next month: its own window
    ])
    assert mobility.travel_distance(ev)[mobility.TRAVEL].iloc[0] == pytest.approx(5 * DEG_KM)
    per_month = mobility.user_mobility(ev, window="month")
    assert per_month[mobility.TRAVEL].tolist() == pytest.approx([2 * DEG_KM, 0.0])
    assert per_month[mobility.RG].tolist() == pytest.approx([
        mobility.radius_of_gyration(ev.iloc[:3])[mobility.RG].iloc[0], 0.0])


# -- home / work ----------------------------------------------------------------------------
def _week(tz: int | None, lon: float = -75.0) -> pd.DataFrame:
    """A constructed week (Mon 2012-04-02 .. Sun 04-08) of one user at local UTC-5."""
    rows = []
    def at(day: int, hour: int, item: str) -> None:  # local time -> UTC (+5 h)
        t = pd.Timestamp("2012-04-02") + pd.Timedelta(days=day, hours=hour + 5)
        rows.append(("u", item, t, 40.0, lon))
    for d in range(5):            # weeknights at home, weekday mornings at work
        at(d, 23, "home")
        at(d, 10, "office")
        at(d, 14, "office")
    for d in (5, 6):              # the weekend: daytime at the park (more visits than office)
        for h in (9, 10, 11, 12, 13, 14, 15, 16):
            at(d, h, "park")
    at(2, 2, "bar")               # one late night out
    at(3, 1, "bar")
    return _ev(rows, tz=[tz] * len(rows))


def test_home_and_work_on_a_constructed_week() -> None:
    hw = mobility.home_work(_week(tz=-300)).iloc[0]
    assert (hw["home_item"], hw["home_visits"]) == ("home", 5)
    assert (hw["work_item"], hw["work_visits"]) == ("office", 10)
    # same week without tz offsets: longitude -75 gives UTC-5 as well
    hw = mobility.home_work(_week(tz=None)).iloc[0]
    assert (hw["home_item"], hw["work_item"]) == ("home", "office")
    # read as UTC the nights (04:00 UTC) and mornings shift: weekend park hours 14-21 UTC
    # and the office at 15/19 UTC fall out of 09-17, home at 04 UTC is still "night"
    utc = mobility.home_work(_week(tz=None), tz_fallback="utc").iloc[0]
    assert utc["work_item"] == "office" and utc["work_visits"] == 5
    assert utc["home_item"] == "home" and utc["home_visits"] == 5
    # a user with no night events has no home
    day_only = _week(tz=-300)
    day_only = day_only[day_only[ITEM] == "office"]
    hw = mobility.home_work(day_only).iloc[0]
    assert pd.isna(hw["home_item"]) and hw["work_item"] == "office"


# -- paths ----------------------------------------------------------------------------------
def test_paths_split_on_idle_gap_and_jumps() -> None:
    t0 = pd.Timestamp("2012-05-01 08:00")
    rows = [("a", "x", t0 + pd.Timedelta(seconds=s), 40.0 + i * 0.001, -74.0)
            for i, s in enumerate([0, 60, 120])]
    rows += [("a", "x", t0 + pd.Timedelta(hours=2, seconds=s), 40.01 + i * 0.001, -74.0)
             for i, s in enumerate([0, 60])]
    # a teleport: 50 km in one minute and it stays there -> a new trip
    rows += [("a", "x", t0 + pd.Timedelta(hours=2, seconds=120 + s), 40.5 + i * 0.001, -74.0)
             for i, s in enumerate([0, 60])]
    rows += [("b", "x", t0 + pd.Timedelta(minutes=5), 41.0, -73.0)]   # single fix: dropped
    p = mobility.user_paths(_ev(rows), idle_gap="30min")
    assert p[USER].tolist() == ["a", "a", "a"] and p[mobility.TRIP].tolist() == [0, 1, 2]
    assert p["n_points"].tolist() == [3, 2, 2]
    assert p[mobility.PATH].iloc[0] == [[-74.0, 40.0], [-74.0, 40.001], [-74.0, 40.002]]
    assert p[mobility.TIMESTAMPS].iloc[0] == [0.0, 60.0, 120.0]
    assert p[mobility.TIMESTAMPS].iloc[1] == [7200.0, 7260.0]
    assert p.attrs["reference"] == t0
    assert p["length_km"].iloc[0] == pytest.approx(0.002 * DEG_KM, rel=1e-6)
    assert p["duration_s"].tolist() == [120.0, 60.0, 60.0]
    one = mobility.user_paths(_ev(rows), idle_gap=None, max_speed_kmh=None)
    assert one["n_points"].tolist() == [7]


def test_gps_spike_is_dropped_not_split() -> None:
    t0 = pd.Timestamp("2012-05-01 08:00")
    lats = [40.0, 40.0001, 40.0002, 40.3, 40.0004, 40.0005]   # fix 3 jumps 33 km and back
    rows = [("a", "x", t0 + pd.Timedelta(seconds=5 * i), la, -74.0) for i, la in enumerate(lats)]
    p = mobility.user_paths(_ev(rows))
    assert len(p) == 1 and p["n_points"].iloc[0] == 5
    assert p[mobility.PATH].iloc[0][3] == [-74.0, 40.0004]


def test_thinning_keeps_ends_and_length() -> None:
    t0 = pd.Timestamp("2012-05-01 08:00")
    rows = [("a", "x", t0 + pd.Timedelta(seconds=10 * i), 40.0 + 0.0001 * i,
             -74.0 + 0.0001 * (i % 3)) for i in range(101)]
    full = mobility.user_paths(_ev(rows))
    thin = mobility.user_paths(_ev(rows), max_points=11)
    assert thin["n_points"].iloc[0] == 11
    assert thin[mobility.PATH].iloc[0][0] == full[mobility.PATH].iloc[0][0]
    assert thin[mobility.PATH].iloc[0][-1] == full[mobility.PATH].iloc[0][-1]
    assert thin[mobility.TIMESTAMPS].iloc[0][-1] == 1000.0
    assert thin["length_km"].iloc[0] == pytest.approx(full["length_km"].iloc[0])


def test_geolife_paths_are_continuous() -> None:
    ev = geolife_events()
    p = mobility.user_paths(ev, idle_gap="10min", max_speed_kmh=300, min_jump_km=0.5)
    assert p["n_points"].sum() >= 0.995 * len(ev)       # glitches dropped, not whole days
    assert len(p) >= 50 and set(p[USER]) == {"001", "005"}
    for path, stamps in zip(p[mobility.PATH], p[mobility.TIMESTAMPS], strict=True):
        xy = np.asarray(path)
        t = np.asarray(stamps)
        dt = np.diff(t)
        d = geo.haversine_km(xy[:-1, 1], xy[:-1, 0], xy[1:, 1], xy[1:, 0])
        assert (dt > 0).all() and (dt <= 600).all()
        fast = d / (dt / 3600) > 300
        assert not (fast & (d > 0.5)).any()
    # no spike survives: every point stays in eastern China (Beijing .. Shenzhen)
    xy = np.concatenate([np.asarray(q) for q in p[mobility.PATH]])
    assert np.abs(xy[:, 1] - 40.0).max() < 18                   # Beijing .. Shenzhen at most


def test_geolife_stay_point_paths_are_continuous(tmp_path) -> None:
    # the importer turns GeoLife fixes into stay points (arrival time, place centroid)
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import Store

    with Store(tmp_path / "ws.duckdb") as store:
        import_file(store, GEOLIFE, name="geolife")
        ev = store.events("geolife")
    p = mobility.user_paths(ev, idle_gap="24h")
    assert p["n_points"].sum() >= 0.9 * len(ev) and len(p) >= 5
    for path, stamps in zip(p[mobility.PATH], p[mobility.TIMESTAMPS], strict=True):
        xy, dt = np.asarray(path), np.diff(stamps)
        d = geo.haversine_km(xy[:-1, 1], xy[:-1, 0], xy[1:, 1], xy[1:, 0])
        assert (dt > 0).all() and (dt <= 24 * 3600).all()
        assert (d / (dt / 3600) <= 300).all()   # arrival to arrival: never faster than a train
    hw = mobility.home_work(ev)                  # no tz offsets: longitude 116 E -> UTC+8
    assert geo.haversine_km(hw["home_lat"], hw["home_lon"], 39.91, 116.40).max() < 30


def test_geolife_mobility_is_plausible() -> None:
    m = mobility.user_mobility(geolife_events(), window="month")
    assert set(m[USER]) == {"001", "005"} and len(m) == 9
    assert (m[mobility.RG] > 0.1).all()
    # both users live in Beijing: the home cell of their busiest month is within the city
    busiest = m.sort_values(mobility.EVENTS).groupby(USER).tail(1)
    assert geo.haversine_km(busiest["home_lat"], busiest["home_lon"], 39.91, 116.40).max() < 30


# -- flows ----------------------------------------------------------------------------------
def _zones_ab() -> pd.DataFrame:
    """Zone 0: a small square around (10, 10); zone 1: the same around (11, 10)."""
    square = [[9.99, 9.99], [10.01, 9.99], [10.01, 10.01], [9.99, 10.01], [9.99, 9.99]]
    return pd.DataFrame({
        zones.ZONE: [0, 1], LAT: [10.0, 11.0], LON: [10.0, 10.0],
        zones.POLYGON: [square, [[x, y + 1.0] for x, y in square]],
    })


def test_od_counts_by_hand() -> None:
    A, B, N = (10.0, 10.0), (11.0, 10.0), (5.0, 5.0)
    ev = _ev([
        ("u1", "a", "2012-01-01 08:00", *A), ("u1", "b", "2012-01-01 09:00", *B),
        ("u1", "a", "2012-01-01 10:00", *A), ("u1", "n", "2012-01-01 11:00", *N),
        ("u1", "b", "2012-01-01 12:00", *B), ("u1", "b", "2012-01-02 12:00", *B),
        ("u2", "a", "2012-01-01 08:00", *A), ("u2", "b", "2012-01-01 20:00", *B),
    ])
    od = flows.od_flows(ev, _zones_ab())
    # A->B: u1 at 09:00 and u2 at 20:00; B->A: u1 at 10:00; A->N, N->B touch noise; B->B self
    assert od[[flows.ORIGIN, flows.DEST, flows.TRIPS, flows.USERS]].values.tolist() == [
        [0, 1, 2, 2], [1, 0, 1, 1]]
    assert od[["origin_lat", "dest_lat"]].iloc[0].tolist() == [10.0, 11.0]
    short = flows.od_flows(ev, _zones_ab(), max_gap="2h")
    assert short[flows.TRIPS].tolist() == [1, 1]          # u2's 12-hour move left out
    self_ = flows.od_flows(ev, _zones_ab(), include_self=True).set_index(
        [flows.ORIGIN, flows.DEST])[flows.TRIPS]
    assert self_[(1, 1)] == 1
    assert flows.flow_matrix(od, 2).tolist() == [[0, 2], [1, 0]]


@pytest.fixture(scope="module")
def nyc_zones(nyc_events) -> pd.DataFrame:
    return zones.find_zones(nyc_events[2], eps_m=150, min_visits=100).zones


@pytest.mark.parametrize("kw", [{}, {"max_gap": "6h"}, {"include_self": True}])
def test_od_flows_sql_equals_pandas_on_nyc(nyc_events, nyc_zones, kw) -> None:
    store, name, events = nyc_events
    z = nyc_zones
    cur = store.cursor()
    try:
        got = flows.od_flows_sql(cur, store.table(name), z, **kw)
    finally:
        cur.close()
    want = flows.od_flows(events, z, **kw)
    pd.testing.assert_frame_equal(got, want)
    assert want[flows.TRIPS].sum() > 1000


def test_nyc_mobility_in_plausible_range(nyc_events) -> None:
    _, _, events = nyc_events
    m = mobility.user_mobility(events)
    assert len(m) == events[USER].nunique()
    med = m[mobility.RG].median()
    assert 1.0 < med < 30.0, med              # city dwellers: a few km
    assert (m[mobility.RG] < 200).mean() > 0.98
    assert m["home_item"].notna().mean() > 0.8 and m["work_item"].notna().mean() > 0.8
    lo_lat, hi_lat, lo_lon, hi_lon = NYC_BOX
    homes = m.dropna(subset=["home_lat"])
    assert homes["home_lat"].between(lo_lat, hi_lat).all()
    assert homes["home_lon"].between(lo_lon, hi_lon).all()
    # travel is at least twice the radius for anyone who went out and came back
    assert (m[mobility.TRAVEL] >= m[mobility.RG] - 1e-9).mean() > 0.95

"""analytics.zones and analytics.trend: clustering places into zones, outlines, trends."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import shapely
from trailscope.analytics import geo
from trailscope.analytics.schema import ITEM, LAT, LON, TS, USER
from trailscope.analytics.spacetime import WINDOW
from trailscope.analytics.spatial import zones, zones_sql
from trailscope.analytics.temporal import trend

from tests.analytics.geodata import MIDTOWN

A = (40.0, -74.0)
B = (40.1, -74.0)      # 11 km north of A
NOISE_PLACE = (40.5, -73.5)  # ~70 km from both: noise for any method
OFFSETS = [(0, 0), (30, 0), (0, 30), (-30, 0), (0, -30)]  # metres east, north


def _place(center: tuple[float, float], dx: float, dy: float) -> tuple[float, float]:
    lat, lon = geo.from_local_m(dx, dy, *center)
    return float(lat), float(lon)


def _two_clusters() -> pd.DataFrame:
    """Zone A: 5 places, 0/2/4/6/8/10 visits in months 1-6 by u1..u3 (30 in all);
    zone B: 5 places, 4 visits a month by u4 (24); one noise place with 3 visits."""
    rows = []
    months = pd.date_range("2012-01-01", periods=6, freq="MS")
    n = 0
    for m, start in enumerate(months):
        for k in range(2 * m):
            i = n % 5
            n += 1
            rows.append((f"u{1 + k % 3}", f"a{i}", start + pd.Timedelta(hours=k),
                         *_place(A, *OFFSETS[i])))
        for k in range(4):
            i = (4 * m + k) % 5
            rows.append(("u4", f"b{i}", start + pd.Timedelta(days=1, hours=k),
                         *_place(B, *OFFSETS[i])))
    for k in range(3):
        rows.append(("u5", "noise", months[0] + pd.Timedelta(days=2, hours=k), *NOISE_PLACE))
    df = pd.DataFrame(rows, columns=[USER, ITEM, TS, LAT, LON])
    return df.astype({USER: "string", ITEM: "string", TS: "datetime64[us]"})


def test_two_separated_clusters_and_noise() -> None:
    ev = _two_clusters()
    res = zones.find_zones(ev, eps_m=100, min_visits=20)
    z = res.zones
    assert z[zones.ZONE].tolist() == [0, 1]
    assert z[zones.N_PLACES].tolist() == [5, 5]
    assert z[zones.VISITS].tolist() == [30, 24]
    assert z[zones.USERS].tolist() == [3, 1]
    assert geo.haversine_km(z.loc[0, LAT], z.loc[0, LON], *A) < 0.001   # symmetric, even visits
    assert geo.haversine_km(z.loc[1, LAT], z.loc[1, LON], *B) < 0.010
    assert z.loc[0, zones.RADIUS] == pytest.approx(0.030, rel=0.01)
    places = res.places.set_index(ITEM)[zones.ZONE]
    assert places["noise"] == -1
    assert (places[[f"a{i}" for i in range(5)]] == 0).all()
    assert (places[[f"b{i}" for i in range(5)]] == 1).all()
    # outline: hull of the 5 places (a 30 m diamond, 1800 m2) buffered by eps/2 = 50 m
    poly = shapely.Polygon(z.loc[0, zones.POLYGON])
    assert poly.is_valid and shapely.from_wkt(z.loc[0, zones.WKT]).equals_exact(poly, 1e-6)
    ring = np.asarray(z.loc[0, zones.POLYGON])
    x, y = geo.to_local_m(ring[:, 1], ring[:, 0], *A)
    area = shapely.Polygon(np.column_stack([x, y])).area
    expected = 1800 + 4 * math.hypot(30, 30) * 50 + math.pi * 50**2
    assert area == pytest.approx(expected, rel=0.05)
    assert res.activity.empty and "trend" not in z.columns


def test_assign_zones_maps_points_and_noise() -> None:
    z = zones.find_zones(_two_clusters(), eps_m=100, min_visits=20).zones
    probe = pd.DataFrame({
        LAT: [A[0], _place(B, 30, 0)[0], NOISE_PLACE[0], np.nan, A[0] + 0.0008, 10.0],
        LON: [A[1], _place(B, 30, 0)[1], NOISE_PLACE[1], -74.0, A[1], 10.0],
    }, index=[10, 11, 12, 13, 14, 15])
    got = zones.assign_zones(probe, z)
    # 0.0008 deg north of A is 89 m: outside the 30 m diamond + 50 m buffer
    assert got.to_dict() == {10: 0, 11: 1, 12: -1, 13: -1, 14: -1, 15: -1}
    assert zones.assign_zones(probe, z.iloc[:0]).eq(-1).all()


def test_min_users_and_tiny_zone() -> None:
    ev = _two_clusters()
    res = zones.find_zones(ev, eps_m=100, min_visits=20, min_users=2)
    assert res.zones[zones.N_PLACES].tolist() == [5]  # B is u4's alone
    assert (res.places.set_index(ITEM)[zones.ZONE].loc[["b0", "b4"]] == -1).all()
    # one busy venue is a zone by itself; its outline is the buffer disc
    one = ev[ev[ITEM] == "a0"]
    res = zones.find_zones(one, eps_m=60, min_visits=5, buffer_m=30)
    assert res.zones[zones.N_PLACES].tolist() == [1]
    assert res.zones.loc[0, zones.RADIUS] == pytest.approx(0.0, abs=1e-9)
    ring = np.asarray(res.zones.loc[0, zones.POLYGON])
    x, y = geo.to_local_m(ring[:, 1], ring[:, 0], *A)
    assert shapely.Polygon(np.column_stack([x, y])).area == pytest.approx(math.pi * 900, rel=0.04)


def test_hdbscan_finds_the_two_clusters() -> None:
    res = zones.find_zones(_two_clusters(), method="hdbscan", min_cluster_size=4)
    assert sorted(res.zones[zones.N_PLACES].tolist()) == [5, 5]
    assert res.places.set_index(ITEM)[zones.ZONE]["noise"] == -1
    with pytest.raises(ValueError, match="dbscan"):
        zones.find_zones(_two_clusters(), method="kmeans")


def _whole_months(ev: pd.DataFrame) -> pd.DataFrame:
    """``ev`` plus one noise visit at the first and one at the last minute of its months, so
    the data covers every month whole."""
    first = ev[TS].min().to_period("M").start_time
    last = ev[TS].max().to_period("M").end_time.floor("min")
    edges = pd.DataFrame({USER: ["u5", "u5"], ITEM: ["noise", "noise"], TS: [first, last],
                          LAT: [NOISE_PLACE[0]] * 2, LON: [NOISE_PLACE[1]] * 2})
    return pd.concat([ev, edges.astype(ev.dtypes.to_dict())], ignore_index=True)


def test_activity_is_zero_filled_and_trends_follow_the_counts() -> None:
    ev = _whole_months(_two_clusters())
    res = zones.find_zones(ev, eps_m=100, min_visits=20, window="month", relative=False)
    act = res.activity
    assert len(act) == 12  # 2 zones x 6 months, including zone 0's empty January
    assert act[zones.COMPLETE].all()
    a = act[act[zones.ZONE] == 0]
    assert a[zones.VISITS].tolist() == [0, 2, 4, 6, 8, 10]
    assert a[WINDOW].dt.month.tolist() == [1, 2, 3, 4, 5, 6]
    assert act[act[zones.ZONE] == 1][zones.VISITS].tolist() == [4] * 6
    assert res.zones[trend.TREND].tolist() == [trend.EMERGING, trend.STABLE]
    # zone A's Sen line (slope 2 a month) starts at 0: no relative change, still emerging
    assert np.isnan(res.zones.loc[0, zones.CHANGE]) and res.zones.loc[1, zones.CHANGE] == 0
    # relative to all located visits (growing), B's constant 4 is a falling share
    rel = zones.find_zones(ev, eps_m=100, min_visits=20, window="month")
    assert rel.zones[trend.TREND].tolist() == [trend.EMERGING, trend.DECLINING]
    assert -1.0 <= rel.zones.loc[1, zones.CHANGE] <= -0.2
    jan = rel.activity[(rel.activity[zones.ZONE] == 1)].iloc[0]
    assert jan[zones.SHARE] == pytest.approx(4 / 8)  # 4 of B, 4 noise, 0 of A


def test_partial_first_and_last_windows_are_left_out_of_the_trend() -> None:
    # the data starts on 2 January and ends on 2 June: both months are partial
    res = zones.find_zones(_two_clusters(), eps_m=100, min_visits=20, window="month",
                           relative=False)
    act = res.activity
    done = act.groupby(WINDOW)[zones.COMPLETE].first()
    assert done.tolist() == [False, True, True, True, True, False]
    assert res.zones["n_windows"].tolist() == [4, 4]
    # A over February..May is 2, 4, 6, 8: rising, but 4 windows cannot reach p < 0.05
    mk = trend.mann_kendall([2, 4, 6, 8])
    assert res.zones.loc[0, zones.P_VALUE] == pytest.approx(mk.p_value)
    assert res.zones[trend.TREND].tolist() == [trend.STABLE, trend.STABLE]
    # Sen line 2 + 2t over 4 windows: from 2 to 8, +300%
    assert res.zones.loc[0, zones.CHANGE] == pytest.approx(3.0)


def test_sen_change_is_bounded_and_labels_follow_the_test() -> None:
    assert zones.sen_change(np.array([10.0, 8, 4, 1, 0, 0]), -2.5) == -1.0  # line hits 0
    assert zones.sen_change(np.array([4.0, 5, 6]), 1.0) == pytest.approx(0.5)
    assert zones.sen_change(np.array([0.0, 0, 3, 6]), 2.0) != zones.sen_change(
        np.array([0.0, 0, 3, 6]), 2.0)  # NaN: the line starts at 0
    for p, s, change, want in [(0.01, 5, 0.5, trend.EMERGING), (0.01, 5, 0.1, trend.STABLE),
                               (0.2, 5, 0.9, trend.STABLE), (0.01, -5, -0.4, trend.DECLINING),
                               (0.01, -5, -0.1, trend.STABLE),
                               (0.01, 5, float("nan"), trend.EMERGING)]:
        assert zones.trend_of(p, s, change, 0.05, 0.2) == want


# -- trend test by hand --------------------------------------------------------------------
def test_mann_kendall_by_hand() -> None:
    mk = trend.mann_kendall([1, 2, 3, 4, 5])
    # S = 10 (all 10 pairs rise); var = 5*4*15/18 = 16.667; z = (10 - 1)/4.082 = 2.205
    assert mk.s == 10 and mk.tau == 1.0 and mk.sen_slope == 1.0
    assert mk.z == pytest.approx(9 / math.sqrt(50 / 3))
    assert mk.p_value == pytest.approx(math.erfc(mk.z / math.sqrt(2)))
    assert mk.p_value == pytest.approx(0.0275, abs=5e-4)
    ties = trend.mann_kendall([1, 1, 2])
    # S = 0 + 1 + 1 = 2; var = (3*2*11 - 2*1*9)/18 = 8/3; z = (2 - 1)/sqrt(8/3)
    assert ties.s == 2 and ties.z == pytest.approx(1 / math.sqrt(8 / 3))
    assert trend.mann_kendall([1, 3, 5, 7]).sen_slope == 2.0
    assert trend.mann_kendall([4, np.nan, 4]).p_value == 1.0  # NaN dropped, too short


@pytest.mark.parametrize(("series", "label"), [
    ([1, 2, 3, 5, 8, 13, 21], trend.EMERGING),
    ([40, 35, 36, 30, 22, 20, 12, 9], trend.DECLINING),
    ([10, 12, 9, 11, 10, 12, 9, 11], trend.STABLE),            # noise around a level
    ([1, 2, 3], trend.STABLE),                                  # too short to be significant
    ([100, 100.5, 101, 101.5, 102, 102.5, 103, 103.5], trend.STABLE),  # significant but +3%
    ([0, 0, 0, 0, 0, 0], trend.STABLE),
])
def test_trend_labels(series, label) -> None:
    assert trend.trend_label(series) == label


# -- real data: NYC -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def nyc_zones(nyc_events):
    _, _, events = nyc_events
    return events, zones.find_zones(events, eps_m=100, min_visits=50, window="month")


def test_nyc_has_a_midtown_zone(nyc_zones) -> None:
    _, res = nyc_zones
    z = res.zones
    assert 20 <= len(z) <= 2000
    top = z.head(3)
    d = geo.haversine_km(top[LAT], top[LON], *MIDTOWN)
    assert d.min() < 2.0, top[[LAT, LON, zones.VISITS]]
    assert set(z[trend.TREND]) <= {trend.EMERGING, trend.STABLE, trend.DECLINING}
    assert (res.activity.groupby(zones.ZONE).size() == 11).all()  # Apr 2012 .. Feb 2013


def test_nyc_zone_outlines_hold_their_places(nyc_zones) -> None:
    events, res = nyc_zones
    members = res.places[res.places[zones.ZONE] >= 0]
    got = zones.assign_zones(members, res.zones)
    assert (got >= 0).all()                            # every member lies in some outline
    assert (got == members[zones.ZONE]).mean() > 0.97  # its own, unless outlines overlap
    # events at member places are all in zones; the zones' visits add up to theirs
    ev_zone = zones.assign_zones(events, res.zones)
    at_members = events[ITEM].isin(members[ITEM])
    assert (ev_zone[at_members] >= 0).all()
    assert res.zones[zones.VISITS].sum() == at_members.sum()


@pytest.mark.parametrize("kw", [
    {"window": "month"},
    {"method": "hdbscan", "min_cluster_size": 10, "min_users": 3,
     "window": ["2012-05-01", "2012-08-01", "2012-11-01"]},
])
def test_find_zones_sql_equals_pandas_on_nyc(nyc_events, kw) -> None:
    store, name, events = nyc_events
    cur = store.cursor()
    try:
        got = zones_sql.find_zones_sql(cur, store.table(name), **kw)
    finally:
        cur.close()
    want = zones.find_zones(events, **kw)
    pd.testing.assert_frame_equal(got.places, want.places, check_exact=True)
    pd.testing.assert_frame_equal(got.zones, want.zones)
    pd.testing.assert_frame_equal(got.activity, want.activity)
    assert len(want.zones) > 20 and want.activity[zones.VISITS].sum() > 15_000  # slice: 19,020+


def test_zones_sql_where_filter(nyc_events) -> None:
    store, name, events = nyc_events
    cur = store.cursor()
    try:
        got = zones_sql.find_zones_sql(cur, store.table(name), where=f"{TS} < ?",
                                       params=["2012-06-01"], window="week")
        with pytest.raises(ValueError, match="coordinates"):
            zones_sql.find_zones_sql(cur, store.table(name), where=f"{LAT} > 80")
    finally:
        cur.close()
    want = zones.find_zones(events[events[TS] < pd.Timestamp("2012-06-01")], window="week")
    pd.testing.assert_frame_equal(got.zones, want.zones)
    assert got.activity[WINDOW].max() < pd.Timestamp("2012-06-01")

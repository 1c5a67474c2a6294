"""The one partial-period rule (analytics/temporal/periods.py) on real data: the NYC
check-ins end at 2013-02-16 02:35 UTC and start at 2012-04-03 18:00, so their first and last
day (and week, and month) hold a fraction of a period's events."""

from __future__ import annotations

import pandas as pd
import pytest
from trailscope.analytics.engine import EVENTS, PERIOD, duckdb_backend, events_table
from trailscope.analytics.temporal import activity
from trailscope.analytics.temporal import periods as P

from tests.analytics.realdata import import_nyc, open_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*")


@pytest.fixture(scope="module")
def nyc(tmp_path_factory):
    """(events table, first event, last event) of the NYC slice."""
    store = open_store(tmp_path_factory.mktemp("periods"))
    name = import_nyc(store)
    t = events_table(duckdb_backend(store), name)
    k = activity.kpis(t).iloc[0]
    yield t, pd.Timestamp(k[activity.FIRST_TS]), pd.Timestamp(k[activity.LAST_TS])
    store.close()


@pytest.mark.parametrize("freq", ["day", "week", "month"])
def test_nyc_partial_edges_are_found_and_their_counts_collapse(nyc, freq):
    t, first, last = nyc
    series = activity.activity_series(t, freq, users=None)
    starts = pd.DatetimeIndex(series[PERIOD])
    keep = P.complete_mask(starts, freq, first, last)
    # the data starts and ends inside a period at every granularity: both edges are partial,
    # everything between is complete
    assert not keep[0] and not keep[-1] and keep[1:-1].all()
    parts = P.partial_periods(starts, freq, first, last)
    assert parts[PERIOD].tolist() == [starts[0], starts[-1]]
    assert parts[P.EDGE].tolist() == ["first", "last"]
    # coverage is the share of the period inside the data's span, checked by hand
    ends = P.period_ends(starts[[0, -1]], freq)
    assert parts[P.COVERAGE].iloc[0] == pytest.approx((ends[0] - first) / (ends[0] - starts[0]))
    assert parts[P.COVERAGE].iloc[1] == pytest.approx((last - starts[-1]) / (ends[1] - starts[-1]))
    # what the rule is for: a partial last period reads as a collapse next to complete ones
    complete = series.loc[keep, EVENTS]
    assert series[EVENTS].iloc[-1] < complete.median() * max(parts[P.COVERAGE].iloc[1] * 2, 0.5)
    assert last.strftime("%Y-%m-%d %H:%M") in parts[P.WHY].iloc[1]


def test_nyc_last_day_sentence(nyc):
    t, first, last = nyc
    starts = pd.DatetimeIndex(activity.activity_series(t, "day", users=None)[PERIOD])
    text = P.describe(P.partial_periods(starts, "day", first, last), "day")
    cover = (last - last.normalize()) / pd.Timedelta(days=1)
    assert f"the last day ({last:%Y-%m-%d}, {cover:.0%} covered)" in text
    assert text.startswith(f"the first day ({first:%Y-%m-%d}, ")


def test_nyc_hourly_series_interior_hours_complete(nyc):
    t, first, last = nyc
    series = activity.activity_series(t, "hour", users=None)
    starts = pd.DatetimeIndex(series[PERIOD])
    keep = P.complete_mask(starts, "hour", first, last)
    assert keep[1:-1].all()
    # an edge hour is complete only when the data misses at most a minute of it
    minute = pd.Timedelta(minutes=1)
    assert keep[0] == (first - starts[0] <= minute)
    assert keep[-1] == (starts[-1] + pd.Timedelta(hours=1) - last <= minute)


def test_tolerance_edges():
    day = pd.DatetimeIndex(["2013-02-15"])
    # missing the last hour of a day (data stamped to the hour ends at 23:00): complete
    assert P.complete_mask(day, "day", "2013-02-15 00:00", "2013-02-15 23:00").all()
    # missing 61 minutes: partial
    assert not P.complete_mask(day, "day", "2013-02-15 00:00", "2013-02-15 22:59").any()
    week = pd.DatetimeIndex(["2013-02-11"])   # a Monday
    assert P.complete_mask(week, "week", "2013-02-11 01:30", "2013-02-17 23:59").all()
    assert not P.complete_mask(week, "week", "2013-02-11", "2013-02-16 23:59").any()
    feb = pd.DatetimeIndex(["2013-02-01"])    # 28 days: 1% is 6.7 hours
    assert P.complete_mask(feb, "month", "2013-02-01 06:00", "2013-02-28 23:59").all()
    assert not P.complete_mask(feb, "month", "2013-02-01 08:00", "2013-02-28 23:59").any()
    # a period the data does not reach has coverage 0
    out = P.partial_periods(pd.DatetimeIndex(["2013-03-01"]), "day", "2013-02-01", "2013-02-02")
    assert out[P.COVERAGE].tolist() == [0.0] and out[P.EDGE].tolist() == ["outside"]
    # time-zone aware bounds are read as UTC
    assert P.complete_mask(day, "day", pd.Timestamp("2013-02-15 01:00", tz="Europe/Berlin"),
                           pd.Timestamp("2013-02-16 00:30", tz="Europe/Berlin")).all()

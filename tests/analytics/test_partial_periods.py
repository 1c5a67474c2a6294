"""The one partial-period rule (analytics/temporal/periods.py) on real data: the NYC
check-ins end at 2013-02-16 02:35 UTC and start at 2012-04-03 18:00, so their first and last
day (and week, and month) hold a fraction of a period's events."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import EVENTS, PERIOD, duckdb_backend, events_table
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.temporal import activity, trend
from trailscope.analytics.temporal import periods as P

from tests.analytics.realdata import import_nyc, open_store
from tests.conftest import TAOBAO

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


def test_nyc_category_trends_leave_partial_months_out(nyc):
    """Monthly check-ins per category of the NYC slice: the last month (2013-02) holds half a
    month, the first (2012-04) most of one. Tested with them, many categories read as
    "declining" only because the data stops mid-month; without them those are stable."""
    t, first, last = nyc
    by = activity.activity_series(t, "month", by=schema.CATEGORY, users=None)
    by = by[by[schema.CATEGORY].notna()]
    busiest = by.groupby(schema.CATEGORY)[EVENTS].sum().nlargest(40).index
    by = by[by[schema.CATEGORY].isin(busiest)]
    parts = P.partial_periods(pd.DatetimeIndex(by[PERIOD].unique()), "month", first, last)
    assert parts[PERIOD].dt.strftime("%Y-%m").tolist() == ["2012-04", "2013-02"]
    naive = trend.trend_table(by, schema.CATEGORY, EVENTS, PERIOD).set_index(schema.CATEGORY)
    fixed = trend.trend_table(by, schema.CATEGORY, EVENTS, PERIOD,
                              partial=parts[PERIOD]).set_index(schema.CATEGORY)
    assert (fixed["n_windows"] == naive["n_windows"] - 2).all()
    flipped = naive.index[(naive[trend.TREND] == trend.DECLINING)
                          & (fixed[trend.TREND] != trend.DECLINING)]
    assert len(flipped) >= 5
    # the same windows, tested by hand without the two partial months
    for cat in flipped[:3]:
        y = by[(by[schema.CATEGORY] == cat) & ~by[PERIOD].isin(parts[PERIOD])].sort_values(
            PERIOD)[EVENTS]
        assert trend.trend_label(y) == fixed.loc[cat, trend.TREND]


def test_taobao_strays_are_outside_the_span(tmp_path):
    """The Taobao slice has a few events weeks before collection starts (2017-11-24 16:00
    UTC, midnight in Beijing): the span partial periods are judged against starts after
    them, so their empty weeks are neither "complete" periods nor fitted."""
    store = open_store(tmp_path)
    import_file(store, TAOBAO, name="tb")
    t = events_table(duckdb_backend(store), "tb")
    hourly = activity.activity_series(t, "hour", users=None)
    daily = activity.activity_series(t, "day", users=None)
    store.close()
    start, end = P.bulk_hours(hourly)
    assert start == pd.Timestamp("2017-11-24 16:00") and end == pd.Timestamp("2017-12-03 15:00")
    before = hourly[hourly[PERIOD] < start][EVENTS]
    assert 0 < before.sum() < 0.001 * hourly[EVENTS].sum()     # a handful of strays
    inside = P.overlapping_rows(daily, "day", start, end + pd.Timedelta(minutes=59))
    assert inside[PERIOD].min() == pd.Timestamp("2017-11-24")
    assert len(inside) == 10 and len(daily) > 80               # 2017-09-11 .. 12-03 filled
    parts = P.partial_periods(pd.DatetimeIndex(inside[PERIOD]), "day", start,
                              end + pd.Timedelta(minutes=59))
    assert parts[P.COVERAGE].round(2).tolist() == [0.33, 0.67]  # 16:00-24:00, 00:00-16:00


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace with the NYC and Taobao slices, for the services."""
    from trailscope.app.services import workspace as services

    home = tmp_path_factory.mktemp("partial_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAILSCOPE_HOME", str(home))
        services.close_store()
        store = services.get_store()
        import_nyc(store, "nyc")
        import_file(store, TAOBAO, name="tb")
        yield store
        services.close_store()


def test_forecast_summary_is_json_and_leaves_partial_days_out(workspace):
    from trailscope.app.services import analytics as svc

    got = svc.forecast_summary("nyc", "day")
    again = json.loads(json.dumps(got, allow_nan=False))        # JSON-safe as it is
    assert again == got and got["dataset"] == "nyc" and got["freq"] == "day"
    assert got["model"] == "SARIMA(1,0,1)(0,1,1)[7]"
    partial = [p["period"][:10] for p in got["partial_periods"]]
    assert partial == ["2012-04-03", "2013-02-16"]
    assert all(0 < p["coverage"] < 0.99 and p["why"] for p in got["partial_periods"])
    flagged = [h["period"][:10] for h in got["history"] if h["partial"]]
    assert flagged == ["2013-02-16"]                           # the first is before the window
    assert got["forecast"][0]["period"][:10] == "2013-02-16"
    assert all(f["lo"] <= f["yhat"] <= f["hi"] for f in got["forecast"])
    bt = got["backtest"]
    assert bt["mase"] > 0 and 0 <= bt["smape"] <= 200 and bt["horizon"] == 14
    # the slice has near-empty days in the backtest window: no MAPE, and a note saying why
    assert bt["mape"] is None and "near zero" in bt["mape_note"]
    assert bt["baseline"]["mase"] > 0
    assert "2013-02-16" in got["partial_note"] and "left out" in got["partial_note"]


def test_forecast_summary_taobao(workspace):
    from trailscope.app.services import analytics as svc
    from trailscope.app.services.workspace import ServiceError

    span = svc.data_span("tb")
    assert span.first >= pd.Timestamp("2017-11-24 16:00") and span.strays > 0
    hourly = svc.forecast_summary("tb", "hour")
    assert hourly["history"][0]["period"] >= "2017-11-24T16:00:00"
    assert hourly["backtest"]["mase"] is not None
    assert hourly["span"]["stray_events"] == span.strays
    assert hourly["partial_periods"] == []          # collection starts and ends on the hour
    assert "stray" in hourly["partial_note"] and "2017-11-24 16:00" in hourly["partial_note"]
    # the cycles are those of the nine collected days, not of the empty weeks before them
    cycles = svc.dominant_periods("tb", "hour")
    assert cycles["lag"].tolist()[:1] == [24]
    # eight complete days cannot tell the next fourteen
    with pytest.raises(ServiceError, match="complete days"):
        svc.forecast_summary("tb", "day")

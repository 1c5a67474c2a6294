"""Cohort retention: hand-computed counts on a tiny frame, consistency on the NYC check-ins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import USERS
from trailscope.analytics.temporal import cohorts

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*")

C, K = cohorts.COHORT, cohorts.PERIODS_SINCE


@pytest.fixture()
def tiny() -> pd.DataFrame:
    """Weeks (Mondays) 1, 8, 15, 22 Jan 2024. a: weeks 1, 2, 4; b: weeks 1, 3; c: week 2;
    d: week 4."""
    return pd.DataFrame({
        schema.USER: ["a", "a", "a", "b", "b", "c", "d"],
        schema.ITEM: "x",
        schema.TS: pd.to_datetime(["2024-01-01", "2024-01-09", "2024-01-22", "2024-01-02",
                                   "2024-01-16 23:59", "2024-01-10", "2024-01-24"],
                                  format="ISO8601"),
    })


def test_weekly_cohort_counts(tiny):
    r = cohorts.cohort_retention(tiny, "week")
    got = {(str(c.date()), k): n for c, k, n in zip(r[C], r[K], r[USERS], strict=True)}
    assert got == {("2024-01-01", 0): 2, ("2024-01-01", 1): 1, ("2024-01-01", 2): 1,
                   ("2024-01-01", 3): 1, ("2024-01-08", 0): 1, ("2024-01-22", 0): 1}
    assert r[cohorts.COHORT_SIZE].tolist() == [2, 2, 2, 2, 1, 1]
    assert r[cohorts.RETENTION].tolist() == [1.0, 0.5, 0.5, 0.5, 1.0, 1.0]
    assert r.groupby(C)[cohorts.HORIZON].first().tolist() == [3, 2, 0]


def test_retention_table_fills_zeros_up_to_the_horizon(tiny):
    r = cohorts.cohort_retention(tiny, "week")
    rates = cohorts.retention_table(r)
    assert rates.shape == (3, 4)
    np.testing.assert_array_equal(rates.iloc[1].to_numpy(), [1.0, 0.0, 0.0, np.nan])
    np.testing.assert_array_equal(rates.iloc[2].to_numpy(), [1.0, np.nan, np.nan, np.nan])
    counts = cohorts.retention_table(r, USERS)
    assert counts.iloc[0].tolist() == [2.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="retention"):
        cohorts.retention_table(r, "events")


def test_month_cohorts_cross_the_year(tiny):
    extra = pd.DataFrame({schema.USER: ["e", "e"], schema.ITEM: "x",
                          schema.TS: pd.to_datetime(["2023-12-15", "2024-02-01"])})
    r = cohorts.cohort_retention(pd.concat([tiny, extra]), "month")
    dec = r[r[C] == pd.Timestamp("2023-12-01")]
    assert dec[K].tolist() == [0, 2] and dec[USERS].tolist() == [1, 1]
    jan = r[r[C] == pd.Timestamp("2024-01-01")]
    assert jan[USERS].tolist() == [4] and jan[cohorts.HORIZON].iloc[0] == 1
    assert cohorts.cohort_retention(pd.concat([tiny, extra]), "month", max_periods=1)[K].max() == 0


def test_nyc_cohorts_are_consistent(nyc_table):
    store, ev = nyc_table
    r = cohorts.cohort_retention(ev, "month")
    first = r[r[K] == 0]
    assert first[USERS].sum() == store.info("nyc").users      # every user in one cohort
    assert (first[cohorts.RETENTION] == 1.0).all()
    assert (r[cohorts.RETENTION] <= 1.0).all() and (r[USERS] > 0).all()
    assert (r[K] <= r[cohorts.HORIZON]).all()
    table = cohorts.retention_table(r)
    # the first cohort (April 2012, most users) keeps a sizeable share a month later
    assert 0.3 < table.iloc[0, 1] <= 1.0
    assert table.shape[1] == r[cohorts.HORIZON].max() + 1

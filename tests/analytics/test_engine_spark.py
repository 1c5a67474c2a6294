"""The same Ibis aggregations give the same answers on Spark (local mode) as on DuckDB.

Runs on a real slice: the first 20,000 NYC check-ins in time order. One SparkSession for the
whole test session (start-up costs seconds); skipped only where no Java is installed.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import PERIOD, duckdb_backend, events_table, spark_backend
from trailscope.analytics.temporal import activity as temporal
from trailscope.analytics.temporal import cohorts

from tests.analytics.realdata import NYC_TZ_FALLBACK_MIN, import_nyc, open_store

pytestmark = [
    pytest.mark.skipif(
        shutil.which("java") is None,
        reason="Spark needs Java 17+ and no `java` is on the PATH "
               "(install openjdk-17-jre-headless)",
    ),
    # third-party noise: Ibis/PySpark predate pandas 3 and DuckDB 2 (see analytics/engine.py)
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]

SLICE_ROWS = 20_000


@pytest.fixture(scope="module")
def nyc_slice(tmp_path_factory) -> pd.DataFrame:
    store = open_store(tmp_path_factory.mktemp("spark_ws"))
    name = import_nyc(store)
    df = store.query_df(
        f"SELECT * FROM {store.table(name)} ORDER BY {schema.TS}, {schema.USER}, {schema.ITEM} "
        f"LIMIT {SLICE_ROWS}")
    store.close()
    return df


@pytest.fixture(scope="module")
def engines(nyc_slice, tmp_path_factory):
    """(DuckDB table, Spark table) holding the same events."""
    store = open_store(tmp_path_factory.mktemp("spark_duck"))
    duck = events_table(duckdb_backend(store), nyc_slice)
    spark = events_table(spark_backend("local[2]"), nyc_slice)
    yield duck, spark
    store.close()


def _same(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> None:
    assert len(a) > 0
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    for col in a.columns:
        if pd.api.types.is_datetime64_any_dtype(a[col]):
            a[col] = a[col].astype("datetime64[us]")
            b[col] = b[col].astype("datetime64[us]")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


@pytest.mark.parametrize("freq", ["hour", "day", "week", "month"])
def test_activity_series_matches(engines, freq):
    duck, spark = engines
    a = temporal.activity_series(duck, freq)
    b = temporal.activity_series(spark, freq)
    _same(a, b, [PERIOD])
    assert a["events"].sum() == SLICE_ROWS


def test_activity_by_category_matches(engines):
    duck, spark = engines
    a = temporal.activity_series(duck, "week", by=schema.CATEGORY, fill=False)
    b = temporal.activity_series(spark, "week", by=schema.CATEGORY, fill=False)
    a[schema.CATEGORY] = a[schema.CATEGORY].fillna("<null>")
    b[schema.CATEGORY] = b[schema.CATEGORY].fillna("<null>")
    _same(a, b, [PERIOD, schema.CATEGORY])


def test_rhythm_matches(engines):
    duck, spark = engines
    for kwargs in ({"local": False}, {"tz_fallback_min": NYC_TZ_FALLBACK_MIN}):
        a = temporal.rhythm_matrix(duck, **kwargs)
        b = temporal.rhythm_matrix(spark, **kwargs)
        _same(a, b, [temporal.WEEKDAY, temporal.HOUR])
    # the fallback shifts hours: the two variants must differ, or the offset was ignored
    utc = temporal.rhythm_matrix(duck, local=False)
    local = temporal.rhythm_matrix(duck, tz_fallback_min=NYC_TZ_FALLBACK_MIN)
    assert not utc["events"].equals(local["events"])


@pytest.mark.parametrize("freq", ["day", "week"])
def test_active_new_returning_match(engines, nyc_slice, freq):
    duck, spark = engines
    a = temporal.active_users(duck, freq)
    b = temporal.active_users(spark, freq)
    _same(a, b, [PERIOD])
    assert a[temporal.NEW_USERS].sum() == nyc_slice[schema.USER].nunique()


@pytest.mark.parametrize("freq", ["week", "month"])
def test_cohorts_match(engines, freq):
    duck, spark = engines
    a = cohorts.cohort_retention(duck, freq)
    b = cohorts.cohort_retention(spark, freq)
    _same(a, b, [cohorts.COHORT, cohorts.PERIODS_SINCE])

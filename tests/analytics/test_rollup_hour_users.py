"""Distinct users per hour come from the summary table ``hour_users`` while no event was
appended, and from the raw events after an append (the table describes the build): both
equal to the raw count on the real NYC slice."""

from __future__ import annotations

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import duckdb_backend, events_table
from trailscope.analytics.rollups import build, lookup
from trailscope.analytics.rollups import temporal as r_time

from tests.analytics.realdata import import_nyc, open_store
from tests.analytics.rollup_reads import recorded
from tests.analytics.test_rollup_incremental import append

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]


def _hourly(store, name):
    """(the dashboard's answer, the raw answer, whether hour_users was read)."""
    t = events_table(duckdb_backend(store), name)
    fast, reads, _ = recorded(lambda: r_time.activity_series(t, "hour"))
    with lookup.disabled():
        raw = r_time.activity_series(t, "hour")
    return fast, raw, any("hour_users" in sql for sql in reads)


def test_hourly_users_from_the_summary_then_raw_after_an_append(tmp_path):
    store = open_store(tmp_path)
    name = import_nyc(store)
    cur = store.cursor()
    assert build.ensure(cur, name) is not None
    fast, raw, stored = _hourly(store, name)
    assert stored and len(raw) > 1000
    pd.testing.assert_frame_equal(fast, raw)

    # one known user back in an hour they were already active in, and a new user
    cols = list(schema.COLUMNS)
    some = cur.execute(f"SELECT {', '.join(cols)} FROM {store.table(name)} ORDER BY "
                       f"{schema.TS} DESC LIMIT 2").df()
    new_user = some.iloc[[1]].assign(**{schema.USER: "new-user-hour"})
    append(store, name, pd.concat([some.iloc[[0]], new_user], ignore_index=True))
    fast, raw, stored = _hourly(store, name)
    assert not stored
    pd.testing.assert_frame_equal(fast, raw)
    cur.close()
    store.close()

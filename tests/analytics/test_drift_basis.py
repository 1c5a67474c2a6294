"""Interest drift on real check-ins: the zone basis for data without categories (a SNAP-like
file: the NYC slice with its category columns dropped), the shrinkage of small windows, and
the summary layer answering the new drift exactly as the raw events do."""

from __future__ import annotations

import h3
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import EVENTS, PERIOD, duckdb_backend, events_table
from trailscope.analytics.geo import has_coords
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.rollups import build as rollup_build
from trailscope.analytics.rollups import lookup
from trailscope.analytics.rollups import users as r_users
from trailscope.analytics.users import evolution as E

from tests.analytics.realdata import import_nyc, open_store
from tests.conftest import NYC

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]

MIN_EVENTS, PRIOR, MIN_PAIRS = 5, 10.0, 2


def write_without_categories(dst) -> str:
    """The NYC slice as a check-in file with no category columns (like SNAP Gowalla)."""
    raw = pd.read_csv(NYC, dtype=str)
    raw.drop(columns=["venue_category_id", "venue_category"]).to_csv(dst, index=False)
    return str(dst)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drift_basis")
    store = open_store(tmp / "ws")
    import_nyc(store)
    import_file(store, write_without_categories(tmp / "nocat.csv"), name="nocat")
    yield store
    store.close()


def _table(store, name):
    return events_table(duckdb_backend(store), name)


def test_zone_profiles_count_every_located_event_in_its_h3_cell(ws):
    ev = ws.events("nocat")
    assert ev[schema.CATEGORY].isna().all()                 # nothing to profile by category
    assert E.interest_profiles(_table(ws, "nocat"), "month").empty
    prof = E.interest_profiles(_table(ws, "nocat"), "month", E.ZONE)
    located = ev[has_coords(ev)]
    assert prof[EVENTS].sum() == len(located) > 40_000
    assert {h3.get_resolution(c) for c in prof[E.ZONE].unique()} == {E.ZONE_RESOLUTION}
    assert prof.groupby([schema.USER, PERIOD])[E.SHARE].sum().round(12).eq(1.0).all()
    # one user's cells, recomputed point by point with h3 itself
    user = located[schema.USER].value_counts().index[0]
    mine = located[located[schema.USER] == user]
    cells = [h3.latlng_to_cell(a, b, E.ZONE_RESOLUTION)
             for a, b in zip(mine[schema.LAT], mine[schema.LON], strict=True)]
    want = pd.Series(cells).value_counts().sort_index()
    got = prof[prof[schema.USER] == user].groupby(E.ZONE)[EVENTS].sum().sort_index()
    assert got.to_dict() == want.to_dict()


def test_zone_drift_for_many_users_without_categories(ws):
    prof = E.interest_profiles(_table(ws, "nocat"), "month", E.ZONE)
    d = E.interest_drift(prof, E.ZONE, MIN_EVENTS, PRIOR)
    assert d[schema.USER].nunique() > 300                   # of the slice's 361 users
    assert d[E.JS].between(0, 1).all() and d[E.SHRUNK_JS].between(0, 1).all()
    assert d[E.SHRUNK_JS].mean() < d[E.JS].mean() / 2      # small windows pulled to the mix
    assert (d[[E.PREV_EVENTS, EVENTS]] >= MIN_EVENTS).all().all()
    top = E.top_changers(d, prof, n=10, column=E.ZONE, min_pairs=MIN_PAIRS)
    assert len(top) == 10 and top[E.GAINED].notna().all() and top[E.LOST].notna().all()
    assert set(E.zone_labels(top[E.GAINED]).values()) <= {
        f"area at {a:.3f}, {b:.3f}" for a, b in map(h3.cell_to_latlng, top[E.GAINED])}


def test_shrinkage_removes_the_small_sample_bias(ws):
    """Raw drift is mostly sample size (users with few events per window look changed);
    shrunk drift is not."""
    for name, column in (("nyc", schema.CATEGORY), ("nocat", E.ZONE)):
        prof = E.interest_profiles(_table(ws, name), "month", column)
        table = E.user_drift_table(E.interest_drift(prof, column, MIN_EVENTS, PRIOR), MIN_PAIRS)
        per_window = table[EVENTS] / table[E.WINDOWS]
        raw = table[E.RAW_MEAN_JS].corr(per_window, method="spearman")
        shrunk = table[E.MEAN_JS].corr(per_window, method="spearman")
        assert raw < -0.4 and abs(shrunk) < 0.2, (name, raw, shrunk)


def test_a_user_with_tiny_disjoint_windows_does_not_reach_the_top(ws):
    """A user with three windows of 5 events in disjoint categories: drift 1.00 raw, first
    in the unshrunk ranking; shrunk it ranks below the most-changed real users."""
    rows = [{schema.USER: "tiny", schema.ITEM: f"synthetic-{k}",
             schema.TS: pd.Timestamp(month) + pd.Timedelta(hours=j),
             schema.CATEGORY: f"synthetic {k}"}
            for k, month in enumerate(["2012-05-10", "2012-06-10", "2012-07-10"])
            for j in range(MIN_EVENTS)]
    events = pd.concat([ws.events("nyc"), pd.DataFrame(rows)], ignore_index=True)
    prof = E.interest_profiles(events, "month")
    raw = E.user_drift_table(E.interest_drift(prof, min_events=MIN_EVENTS), MIN_PAIRS)
    assert raw[schema.USER].iloc[0] == "tiny" and raw[E.MEAN_JS].iloc[0] == 1.0
    shrunk = E.top_changers(E.interest_drift(prof, min_events=MIN_EVENTS, prior=PRIOR), prof,
                            n=12, min_pairs=MIN_PAIRS)
    assert "tiny" not in set(shrunk[schema.USER]) and len(shrunk) == 12
    full = E.user_drift_table(E.interest_drift(prof, min_events=MIN_EVENTS, prior=PRIOR))
    rank = full.index[full[schema.USER] == "tiny"][0]
    assert rank > len(full) // 5, rank                    # not even in the top fifth
    # two windows of 3 events: below the minimum, so no drift at all
    few = pd.concat([events[events[schema.USER] != "tiny"],
                     pd.DataFrame(rows).groupby(schema.CATEGORY).head(3)])
    prof = E.interest_profiles(few, "month")
    assert "tiny" not in set(E.interest_drift(prof, min_events=MIN_EVENTS)[schema.USER])


def _drift_cases(t, user: str, column: str) -> dict:
    """The drift questions the Users page and the CLI ask, for basis ``column``."""
    return {
        "everyone": lambda: r_users.drift(t, "month", MIN_EVENTS, column=column, prior=PRIOR),
        "one user": lambda: r_users.drift(t, "month", MIN_EVENTS, user, column, PRIOR),
        "the page's read": lambda: r_users.user_interest(t, user, "month", MIN_EVENTS,
                                                         column, PRIOR)[1],
        "profiles": lambda: r_users.interest_profiles(t, "month", column),
    }


def test_summary_tables_answer_the_shrunk_drift_as_the_raw_events_do(ws):
    con = ws.cursor()
    try:
        for name in ("nyc", "nocat"):
            assert rollup_build.ensure(con, name) is not None
        for name, column in (("nyc", schema.CATEGORY), ("nocat", E.ZONE)):
            user = str(ws.events(name)[schema.USER].value_counts().index[0])
            for label, case in _drift_cases(_table(ws, name), user, column).items():
                stored = case()
                with lookup.disabled():
                    raw = case()
                assert len(stored) > 0, (name, label)
                pd.testing.assert_frame_equal(stored, raw, obj=f"{name}: {label}")
    finally:
        con.close()

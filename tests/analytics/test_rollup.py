"""The rollup answers every question it takes exactly as the raw events table does.

Each case runs twice on the same stored dataset: once as the dashboard does (the per-question
function of ``analytics.rollups`` finds the dataset's fresh summary tables and reads them) and
once with ``lookup.disabled()`` (it then calls the analysis on the raw table). The frames must
be equal, dtypes included. Datasets: the real NYC check-ins (no time-zone offsets, coordinates,
categories) and the built-in sample city (offsets, behaviours, drift, churn).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import duckdb_backend, events_table
from trailscope.analytics.geo import has_coords_sql
from trailscope.analytics.rollups import batches as rollup_batches
from trailscope.analytics.rollups import build as rollup_build
from trailscope.analytics.rollups import defaults, lookup
from trailscope.analytics.rollups import spatial as r_space
from trailscope.analytics.rollups import tables as rollup
from trailscope.analytics.rollups import temporal as r_time
from trailscope.analytics.rollups import users as r_users
from trailscope.analytics.sample.generate import import_sample
from trailscope.analytics.spatial import density as space
from trailscope.analytics.spatial import mobility, zones_sql
from trailscope.analytics.store import Store
from trailscope.analytics.users import churn

from tests.analytics.realdata import NYC_TZ_FALLBACK_MIN, import_nyc, open_store
from tests.analytics.rollup_reads import recorded

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]


class Data:
    """A stored dataset: its store, SQL table, Ibis table and a few parameters."""

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name
        self.con = store.cursor()
        self.table = store.table(name)
        self.t = events_table(duckdb_backend(store), name)
        last, user = self.con.execute(
            f"SELECT max({schema.TS}), arg_max({schema.USER}, n) FROM (SELECT {schema.USER}, "
            f"max({schema.TS}) AS {schema.TS}, count(*) AS n FROM {self.table} GROUP BY 1)"
        ).fetchall()[0]
        self.cut = pd.Timestamp(last) - pd.Timedelta(days=14)
        self.user = str(user)
        self.some_users = [str(u) for (u,) in self.con.execute(
            f"SELECT DISTINCT {schema.USER} FROM {self.table} ORDER BY 1 LIMIT 3").fetchall()]
        info = store.info(name)
        with lookup.disabled():
            self.zones = zones_sql.find_zones_sql(self.con, self.table, eps_m=150,
                                                  min_visits=200).zones
            n, first, last = self.con.execute(
                f"SELECT count(*), min({schema.TS}), max({schema.TS}) FROM {self.table} "
                f"WHERE {has_coords_sql()}").fetchall()[0]
            self.page = zones_sql.page_zone_params(n, first, last)   # the Map page's zones
            self.page_zones = zones_sql.find_zones_sql(self.con, self.table, **self.page).zones
        assert info.has_coordinates and len(self.page_zones) > 0


@pytest.fixture(scope="module", params=["nyc", "sample"])
def data(request, tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp(f"rollup_{request.param}"))
    if request.param == "nyc":
        name = import_nyc(store)
    else:
        name = import_sample(store, "sample", users=400, seed=3).name
    d = Data(store, name)
    assert rollup_build.ensure(d.con, name) is not None
    yield d
    d.con.close()
    store.close()


#: the drift the summary tables store (the Users page's settings)
_DRIFT = dict(freq="month", **dict(zip(("min_events", "prior"), rollup.DRIFT, strict=True)))

CASES = {
    "kpis": lambda d: r_time.kpis(d.t),
    "events per hour": lambda d: r_time.activity_series(d.t, "hour", users=None),
    "events and users per hour": lambda d: r_time.activity_series(d.t, "hour"),
    "events and users per day": lambda d: r_time.activity_series(d.t, "day"),
    "events and users per week": lambda d: r_time.activity_series(d.t, "week", fill=False),
    "events and users per month": lambda d: r_time.activity_series(d.t, "month"),
    "active/new/returning per day": lambda d: r_time.active_users(d.t, "day"),
    "active/new/returning per week": lambda d: r_time.active_users(d.t, "week"),
    "active/new/returning per month": lambda d: r_time.active_users(d.t, "month"),
    "rhythm, local": lambda d: r_time.rhythm_matrix(d.t),
    "rhythm, UTC, events only": lambda d: r_time.rhythm_matrix(d.t, local=False, users=None),
    "rhythm, New York fallback": lambda d: r_time.rhythm_matrix(
        d.t, tz_fallback_min=NYC_TZ_FALLBACK_MIN),
    "rhythm, solar fallback": lambda d: r_time.rhythm_matrix(d.t, tz_fallback_min=-300),
    "cohorts per day": lambda d: r_time.cohort_retention(d.t, "day"),
    "cohorts per week": lambda d: r_time.cohort_retention(d.t, "week"),
    "cohorts per month, 4 periods": lambda d: r_time.cohort_retention(d.t, "month", 4),
    "profiles per week": lambda d: r_users.interest_profiles(d.t, "week"),
    "profiles per month": lambda d: r_users.interest_profiles(d.t, "month"),
    "one user's profiles": lambda d: r_users.interest_profiles(d.t, "month", user=d.user),
    "profiles of a few users": lambda d: r_users.interest_profiles(
        d.t, "week", user=[d.user, "no such user", *d.some_users]),
    "drift per month (stored)": lambda d: r_users.drift(d.t, **_DRIFT),
    "drift per month, unshrunk": lambda d: r_users.drift(d.t, "month", 3),
    "one user's drift": lambda d: r_users.drift(d.t, **_DRIFT, user=d.user),
    "one user's profiles, the Users page's read": lambda d: r_users.user_interest(
        d.t, d.user, **_DRIFT)[0],
    "one user's drift, the Users page's read": lambda d: r_users.user_interest(
        d.t, d.user, **_DRIFT)[1],
    "median drift per month (stored)": lambda d: r_users.drift_reference(d.t, **_DRIFT),
    "median drift per week (computed)": lambda d: r_users.drift_reference(d.t, "week", 3),
    "most changed users' drift (stored)": lambda d: r_users.top_drift(
        d.t, _DRIFT["freq"], 5, 2, _DRIFT["min_events"], prior=_DRIFT["prior"]),
    "most changed users' drift, one pair": lambda d: r_users.top_drift(
        d.t, _DRIFT["freq"], 3, 1, _DRIFT["min_events"], prior=_DRIFT["prior"]),
    "a few users' profiles per day (from the sorted events)": lambda d: r_users.
        interest_profiles(d.t, "day", user=[d.user, "no such user", *d.some_users]),
    "one user's profiles per day (from the sorted events)": lambda d: r_users.
        interest_profiles(d.t, "day", user=d.user),
    "the Users page's churn risk (stored)": lambda d: r_users.page_churn(
        d.t, *r_time.robust_span(d.con, d.table))[0],
    "the Users page's churn backtest (stored)": lambda d: r_users.page_churn(
        d.t, *r_time.robust_span(d.con, d.table))[1],
    "one user's mobility per month (stored)": lambda d: r_users.user_mobility_sql(
        d.con, d.table, d.user, "month"),
    "another user's mobility per month": lambda d: r_users.user_mobility_sql(
        d.con, d.table, d.some_users[0], "month"),
    "one user's mobility per week (computed)": lambda d: r_users.user_mobility_sql(
        d.con, d.table, d.user, "week"),
    "interval histogram": lambda d: r_time.interval_histogram(d.t),
    "interval histogram, 2 bins/decade": lambda d: r_time.interval_histogram(d.t, 2),
    "session summary, 30 min": lambda d: r_time.session_summary(d.t, "30min"),
    "churn features and labels": lambda d: r_users.churn_features(d.t, d.cut, "14D"),
    "churn features, 7 d x 3": lambda d: r_users.churn_features(d.t, d.cut, "7D", 3, False),
    "churn risk": lambda d: r_users.churn_risk(d.t, window="14D"),
    "churn backtest": lambda d: r_users.churn_backtest(d.t, window="7D", windows=3)[0],
    "churn panel's risk": lambda d: r_users.churn_panel(d.t, "14D")[0],
    "churn panel's backtest": lambda d: r_users.churn_panel(d.t, "14D")[1],
    "grid density 500 m per week": lambda d: r_space.grid_density_sql(d.con, d.table, 500,
                                                                    window="week"),
    "grid density 300 m, polygons": lambda d: r_space.grid_density_sql(d.con, d.table, 300,
                                                                     polygons=True),
    "hex density res 8 per month": lambda d: r_space.hex_density_sql(d.con, d.table, 8,
                                                                   window="month"),
    "hex density res 7 per day": lambda d: r_space.hex_density_sql(d.con, d.table, 7,
                                                                 window="day"),
    "hex density, the map's": lambda d: r_space.hex_density_sql(
        d.con, d.table, space.auto_hex_resolution(d.store.info(d.name).bbox), polygons=True),
    "zones with weekly trend": lambda d: r_space.find_zones_sql(
        d.con, d.table, min_visits=200, window="week", min_users=3).zones,
    "zone activity per month": lambda d: r_space.find_zones_sql(
        d.con, d.table, min_visits=200, window="month").activity,
    "heat points in draw order": lambda d: r_space.sample_points_sql(d.con, d.table, 2000),
    "heat points beyond the stored": lambda d: r_space.sample_points_sql(
        d.con, d.table, rollup.HEAT_ROWS + 1),
    "the Map page's zones": lambda d: r_space.find_zones_sql(d.con, d.table, **d.page).zones,
    "the Map page's zone activity": lambda d: r_space.find_zones_sql(
        d.con, d.table, **d.page).activity,
    "the Map page's places": lambda d: r_space.find_zones_sql(d.con, d.table,
                                                                **d.page).places,
    "the Map page's flows": lambda d: r_space.od_flows_sql(d.con, d.table, d.page_zones,
                                                         max_gap=zones_sql.PAGE_FLOW_GAP),
    "flows, 12 h": lambda d: r_space.od_flows_sql(d.con, d.table, d.zones, max_gap="12h"),
    "flows, within zones too": lambda d: r_space.od_flows_sql(d.con, d.table, d.zones,
                                                            include_self=True),
}
#: Results whose row order among equal keys the raw SQL leaves open: compared sorted.
UNORDERED = {
    "paths' events": lambda d: r_space.path_events_sql(d.con, d.table, 10),
    "one user's events": lambda d: r_users.user_events_sql(d.con, d.table, d.user),
}


def _answers(d: Data, case) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(answer as the dashboard gets it, answer from the raw table, rollup reads made)."""
    fast, reads, _ = recorded(lambda: case(d))
    with lookup.disabled():
        raw = case(d)
    return fast, raw, reads


@pytest.mark.parametrize("case", list(CASES))
def test_rollup_equals_raw(data, case):
    fast, raw, reads = _answers(data, CASES[case])
    assert reads, f"{case}: the rollup was not used"
    assert len(raw) > 0
    pd.testing.assert_frame_equal(fast, raw)


@pytest.mark.parametrize("case", list(UNORDERED))
def test_rollup_equals_raw_rows(data, case):
    fast, raw, reads = _answers(data, UNORDERED[case])
    assert reads and len(raw) > 0
    cols = list(raw.columns)
    pd.testing.assert_frame_equal(fast.sort_values(cols, ignore_index=True),
                                  raw.sort_values(cols, ignore_index=True))


def test_stored_mobility_of_every_user_equals_the_raw_path(data):
    """The ``mobility`` table (built in SQL, ``mobility.mobility_sql``) holds, for every
    user, what the pandas ``user_mobility`` gives on the user's raw events for the Users
    page's window of this dataset: the same rows, anchors and counts, distances equal to
    1e-9 (the sums run in another order)."""
    got, want = _stored_and_raw_mobility(data.con, data.name, data.table)
    assert got["home_item"].notna().any() and got[mobility.RG].notna().any()
    pd.testing.assert_frame_equal(got, want, rtol=1e-9)


def test_stored_mobility_without_coordinates_equals_the_raw_path(tmp_path):
    """A dataset with no coordinates at all (the real Taobao slice) skips averaging the
    anchors' positions in the build: the rows still equal the pandas path's (home and work
    items, visits, events and places; positions, radius and travel empty)."""
    from trailscope.analytics.ingest.pipeline import import_file

    from tests.conftest import TAOBAO

    store = open_store(tmp_path)
    import_file(store, TAOBAO, name="tb")
    con = store.cursor()
    try:
        got, want = _stored_and_raw_mobility(con, "tb", store.table("tb"))
        assert got["home_item"].notna().any() and got["home_lat"].isna().all()
        pd.testing.assert_frame_equal(got, want, rtol=1e-9)
    finally:
        con.close()
        store.close()


def test_stored_mobility_with_unlocated_coordinates_equals_the_raw_path(tmp_path):
    """Events with a coordinate but no usable place (a latitude without its longitude, the
    0/0 placeholder: the importer clears both, but a table may hold them) make the build read
    every event's coordinates instead of its place's (home / work positions average them):
    the NYC check-ins with a seventh of them missing their latitude and an eleventh at 0/0
    and no offset (the solar clock reads the longitude) still give the pandas path's rows."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import drop_derived

    from tests.conftest import NYC

    store = open_store(tmp_path)
    import_file(store, NYC, name="stray")
    con = store.cursor()
    try:
        table = store.table("stray")
        con.execute(f"UPDATE {table} SET {schema.LAT} = CASE WHEN hash(rowid) % 7 = 3 THEN NULL "
                    f"WHEN hash(rowid) % 11 = 5 THEN 0 ELSE {schema.LAT} END, {schema.LON} = "
                    f"CASE WHEN hash(rowid) % 11 = 5 AND hash(rowid) % 7 <> 3 THEN 0 ELSE "
                    f"{schema.LON} END, {schema.TZ_OFFSET} = CASE WHEN hash(rowid) % 5 = 0 THEN "
                    f"NULL ELSE {schema.TZ_OFFSET} END")
        drop_derived(con, "stray")
        got, want = _stored_and_raw_mobility(con, "stray", table)
        assert got["home_lat"].notna().any() and got[mobility.RG].notna().any()
        pd.testing.assert_frame_equal(got, want, rtol=1e-9)
    finally:
        con.close()
        store.close()


def test_stored_churn_counts_its_four_cuts_in_one_scan(data, monkeypatch):
    """The build counts the churn panel's four cuts (``churn.panel_cuts``) in one scan of
    ``ev``: each cut's rows equal the one-cut query's, and the panel asks for no other (no
    one-cut query runs)."""
    ru = rollup_build.ensure(data.con, data.name)
    s = ru.summary()
    window = churn.page_windows(s["ts_p01"], s["ts_p99"])[0]
    w = int(pd.Timedelta(window).total_seconds())
    cuts = churn.panel_cuts(window, s["last_ts"])
    together = r_users._counts_at(ru, cuts, w, 4)
    for cut in cuts:
        one = r_users._sql_counts(ru, cut, w, 4).sort_values(schema.USER, ignore_index=True)
        assert len(one) > 10
        pd.testing.assert_frame_equal(
            together[cut].sort_values(schema.USER, ignore_index=True), one, obj=str(cut))
    asked = []
    monkeypatch.setattr(r_users, "_sql_counts", lambda *a: asked.append(a))
    data.con.execute("BEGIN")
    try:
        for t in ("churn_params", "churn_risk", "churn_backtest"):
            data.con.execute(f"DROP TABLE IF EXISTS {ru.t(t)}")
        r_users.build_churn(ru)
        assert ru.one(f"SELECT churn_window FROM {ru.t('churn_params')}")[0] == window
    finally:
        data.con.execute("ROLLBACK")
    assert asked == []


def _stored_and_raw_mobility(con, name: str, table: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored ``mobility`` rows of every user (user ids, not indexes) and
    ``mobility.user_mobility`` of the raw events, for the Users page's window."""
    ru = rollup_build.ensure(con, name)
    first, last = ru.one(f"SELECT ts_p01, ts_p99 FROM {ru.t('summary')}")
    freq = mobility.page_window(first, last)
    got = r_users.stored_mobility(ru, freq)
    assert got[schema.USER].nunique() == ru.one(f"SELECT count(*) FROM {ru.t('users')}")[0]
    with lookup.disabled():
        raw = con.execute(f"SELECT * FROM {table} ORDER BY {schema.USER}, {schema.TS}, "
                          f"{schema.ITEM}, {schema.LAT} NULLS LAST, "
                          f"{schema.LON} NULLS LAST").df()
    want = mobility.user_mobility(raw, window=freq)
    return got, want


def test_approx_users_come_exact_from_the_rollup(data):
    got = r_time.activity_series(data.t, "week", users="approx")
    with lookup.disabled():
        exact = r_time.activity_series(data.t, "week")
    pd.testing.assert_frame_equal(got, exact)


def test_what_the_rollup_cannot_answer_takes_the_raw_table(data):
    """Filters, other gaps and columns: no rollup read, same answer (hourly distinct users
    are stored now: tests/analytics/test_rollup_hour_users.py)."""
    first = pd.Timestamp(r_time.kpis(data.t)["first_ts"][0]) + pd.Timedelta(days=30)
    filtered = data.t.filter(data.t[schema.TS] >= first.to_pydatetime())
    assert lookup.for_events(filtered) is None
    assert lookup.for_sql(data.con, data.table, f"{schema.TS} >= '{first}'") is None
    for case in (lambda d: r_time.session_summary(d.t, "10min"),
                 lambda d: r_users.interest_profiles(d.t, "month", missing="?")):
        fast, raw, reads = _answers(data, case)
        pd.testing.assert_frame_equal(fast, raw)
        assert reads == []


def test_stale_rollup_is_rebuilt_and_dropped_with_the_dataset(tmp_path):
    """A stale set is never read (the answer comes from the raw table); ``build.ensure``,
    which the services call before answering, rebuilds it; ``Store.drop`` removes it."""
    store = open_store(tmp_path / "ws")
    con = store.cursor()
    name = import_sample(store, "s", users=60, seed=1).name
    t = events_table(duckdb_backend(store), name)
    assert rollup_build.ensure(con, name) is not None
    n1 = int(r_time.kpis(t)["events"][0])
    first = rollup.info(con, name)
    assert first is not None and first["fingerprint"] == store.fingerprint(name)
    import_sample(store, "s", users=90, seed=2, replace=True)   # new content, same name
    assert not rollup.fresh(con, name) and lookup.for_events(t) is None
    n2 = int(r_time.kpis(t)["events"][0])             # the raw table answers
    assert n2 != n1 and n2 == store.info(name).rows
    assert rollup_build.ensure(con, name) is not None            # rebuilt on use
    assert int(r_time.kpis(t)["events"][0]) == n2
    assert rollup.info(con, name)["fingerprint"] == store.fingerprint(name) != first[
        "fingerprint"]
    store.drop(name)
    left = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE "
                       "'rollup__s__%'").fetchall()[0][0]
    assert left == 0 and rollup.info(con, name) is None
    con.close()
    store.close()


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    store = open_store(tmp_path / "ws")
    con = store.cursor()
    name = import_sample(store, "s", users=40, seed=1).name
    real = rollup_build.build_sql
    bad = ("x", "SELECT no_such_column FROM datasets")
    monkeypatch.setattr(rollup_build, "build_sql", lambda n, cur, *a: real(n, cur, *a) + [bad])
    t = events_table(duckdb_backend(store), name)
    assert rollup_build.ensure(con, name) is None       # build failed: raw path
    assert lookup.for_events(t) is None
    assert int(r_time.kpis(t)["events"][0]) == store.info(name).rows
    left = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE "
                       "'rollup__s__%'").fetchall()[0][0]
    assert left == 0 and rollup.info(con, name) is None
    con.close()
    store.close()


def test_read_only_workspace_answers_from_the_raw_table(tmp_path):
    path = tmp_path / "ws"
    store = open_store(path)
    import_sample(store, "s", users=40, seed=1)
    store.close()
    ro = Store(path / "trailscope.duckdb", read_only=True)
    t = events_table(duckdb_backend(ro), "s")
    con = ro.cursor()
    assert rollup_build.ensure(con, "s") is None
    con.close()
    assert lookup.for_events(t) is None
    assert int(r_time.kpis(t)["events"][0]) == ro.info("s").rows
    ro.close()


def test_stored_page_paths_equal_a_fresh_computation(data):
    """The summary build stores the Map page's default replay paths: exactly what
    ``user_paths`` gives on the raw table's events of the sampled users."""
    ru = rollup_build.ensure(data.con, data.name)
    stored = defaults.stored_page_paths(ru)
    assert stored is not None and len(stored) > 0
    with lookup.disabled():
        first = data.con.execute(f"SELECT min({schema.TS}) FROM {data.table} WHERE "
                                 f"{has_coords_sql()}").fetchall()[0][0]
        fresh = r_space.page_paths(data.con, data.table, defaults.PAGE_PATH_USERS,
                                           defaults.PAGE_PATH_POINTS, pd.Timestamp(first))
    pd.testing.assert_frame_equal(stored, fresh, check_exact=True)
    assert stored.attrs["reference"] == fresh.attrs["reference"]


def test_mobility_arrays_sort_rows_that_come_out_of_order(data):
    """``mobility.mobility_arrays`` takes the travel steps in the sorted event table's order;
    rows that come in another order are sorted first: the same mobility either way."""
    d = data
    ru = rollup_build.ensure(d.con, d.name)

    def mob(order: str) -> dict:
        got = ru.df(f"SELECT user_idx, us, item_idx, coord_idx IS NOT NULL AS located, "
                    f"{schema.LAT}, {schema.LON}, CAST({schema.TZ_OFFSET} AS DOUBLE) AS tz "
                    f"FROM (SELECT * FROM {ru.t('ev')} {order})")
        return mobility.mobility_arrays(
            *(got[c].to_numpy() for c in ("user_idx", "us", "item_idx", "located")),
            *(got[c].to_numpy("float64", na_value=np.nan) for c in (schema.LAT, schema.LON,
                                                                    "tz")), "week")

    stored, shuffled = mob(""), mob("ORDER BY h")
    assert (stored[mobility.TRAVEL] > 0).any() and (stored["home_visits"] > 0).any()
    for k, v in stored.items():
        np.testing.assert_allclose(shuffled[k], v, rtol=1e-12, err_msg=k)


def test_drift_reference_and_ranks_are_stored_for_the_page_window(data):
    """The build stores, beside everyone's drift of the Users page's window, its median per
    window and each user's ranking numbers (what a first view of the page reads): equal to
    the aggregates of the stored drift."""
    d = data
    ru = rollup_build.ensure(d.con, d.name)
    first, last = ru.one(f"SELECT ts_p01, ts_p99 FROM {ru.t('summary')}")
    freq = mobility.page_window(first, last)
    assert ru.has(f"drift_{freq}")
    for what, query in r_users.drift_summaries_sql(ru, freq).items():
        assert ru.has(what)
        stored = ru.df(f"SELECT * FROM {ru.t(what)} ORDER BY ALL")
        assert len(stored) > 0
        pd.testing.assert_frame_equal(stored, ru.df(f"{query} ORDER BY ALL"))


def test_summed_tables_equal_counting_over_the_sorted_events(data):
    """The tables the build sums from others (weeks and months from the days, hourly from
    hour_users, the rhythm cells from ``rhythm``, sessions from the continuing rows, the heat
    rows found by hash first) hold the rows counting over ``ev`` gives."""
    d = data
    ru = rollup_build.ensure(d.con, d.name)
    ev = ru.t("ev")

    def same(stored: str, query: str, keys: list[str]) -> None:
        got = ru.df(f"SELECT * FROM {stored}").sort_values(keys, ignore_index=True)
        want = ru.df(query).sort_values(keys, ignore_index=True)
        pd.testing.assert_frame_equal(got, want)

    for f in rollup.USER_FREQS:
        same(ru.t("user_" + f), f"SELECT date_trunc('{f}', {schema.TS}) AS period, user_idx, "
             f"count(*) AS events FROM {ev} GROUP BY ALL", ["period", "user_idx"])
    same(ru.t("hourly"), f"SELECT date_trunc('hour', {schema.TS}) AS period, count(*) AS "
         f"events FROM {ev} GROUP BY ALL", ["period"])
    modes, from_rhythm = rollup_build._rhythm_modes(d.con, d.table)
    assert from_rhythm  # whole-hour offsets (or none), times after 1970
    cells = ["mode", "fallback", "weekday", "hour"]
    same(ru.t("rhythm_cells"), rollup_build._rhythm_cells(ev, modes), cells)
    prev = _previous_sql(ev)
    for g in rollup.SESSION_GAPS:
        same(f"(SELECT * FROM {ru.t('sessions')} WHERE gap_limit = {g})",
             f"SELECT {g} AS gap_limit, duration, single, count(*) AS n FROM (SELECT max(s) - "
             "min(s) AS duration, count(*) = 1 AS single FROM (SELECT s, sum(CASE WHEN gap IS "
             f"NULL OR gap > {g} THEN 1 ELSE 0 END) OVER (ORDER BY r ROWS BETWEEN UNBOUNDED "
             f"PRECEDING AND CURRENT ROW) AS sid FROM {prev}) GROUP BY sid) GROUP BY ALL",
             ["duration", "single"])
    same(ru.t("hour_users"), "SELECT date_trunc('hour', make_timestamp(us)) AS period, "
         "count(*) AS events, count(*) FILTER (WHERE prev_us IS NULL OR date_trunc('hour', "
         "make_timestamp(prev_us)) <> date_trunc('hour', make_timestamp(us))) AS users FROM "
         f"{prev} GROUP BY 1", ["period"])
    same(ru.t("gaps"), f"SELECT gap, count(*) AS n FROM {prev} WHERE gap IS NOT NULL GROUP BY 1",
         ["gap"])
    same(ru.t("rhythm"), f"SELECT user_idx, {schema.TZ_OFFSET}, (s // 3600) % 168 AS how, "
         f"count(*) AS events FROM {ev} GROUP BY ALL", ["user_idx", schema.TZ_OFFSET, "how"])
    same(ru.t("heat"), f"SELECT e.{schema.LAT}, e.{schema.LON}, e.{schema.TS}, "
         f"c.{schema.CATEGORY}, e.h FROM {ev} e LEFT JOIN {ru.t('categories')} c USING (cat_idx) "
         f"WHERE e.coord_idx IS NOT NULL ORDER BY e.h LIMIT {rollup.HEAT_ROWS}", ["h"])


def test_rhythm_cells_counted_over_the_events_unless_whole_hours_after_1970(data):
    """Half-hour offsets (or shifted times before 1970) keep the rhythm cells counted over
    ``ev``: an hour of the week then does not follow from ``rhythm``'s."""
    d = data
    cols = ", ".join(c for c in schema.COLUMNS if c != schema.TZ_OFFSET)
    half = (f"(SELECT {cols}, 330 AS {schema.TZ_OFFSET} FROM {d.table})")
    early = (f"(SELECT * REPLACE ({schema.TS} - INTERVAL 60 YEAR AS {schema.TS}) "
             f"FROM {d.table})")
    assert not rollup_build._rhythm_modes(d.con, half)[1]
    assert not rollup_build._rhythm_modes(d.con, early)[1]


def test_sorted_events_break_ties_by_coordinates_nulls_last():
    """``ev``'s order is (user, time, item, lat NULLS LAST, lon NULLS LAST), the coordinates
    compared through one rank of every distinct pair: unusable and missing ones included."""
    import duckdb

    con = duckdb.connect()
    cols = ", ".join(f"{c} {schema.DUCKDB_TYPES[c]}" for c in schema.COLUMNS)
    con.execute(f"CREATE TABLE events__ties ({cols})")
    coords = [(None, None), (40.7, None), (40.7, -74.0), (0.0, 0.0), (95.0, 200.0),
              (None, -73.9), (40.7, -73.9), (-33.9, 151.2), (40.7, -74.0)]
    rows = [("u1" if k % 3 else "u0", "i1", "2024-03-01 10:00:00", la, lo, None, None, None,
             None) for k, (la, lo) in enumerate(coords * 3)]
    con.executemany(f"INSERT INTO events__ties VALUES ({', '.join('?' * 9)})", rows)
    for what, sql in rollup_build.build_sql("ties", con):
        con.execute(sql)
        if what == "ev":
            break
    ev = rollup.part("ties", "ev")
    got = con.execute(f"SELECT user_idx, {schema.LAT}, {schema.LON}, coord_idx, CASE WHEN "
                      "lag(user_idx) OVER w = user_idx THEN lag(coord_idx) OVER w END FROM "
                      f"{ev} WINDOW w AS (ORDER BY rowid) ORDER BY rowid").fetchall()
    want = con.execute(
        f"SELECT user_idx, {schema.LAT}, {schema.LON}, coord_idx, CASE WHEN lag(user_idx) OVER "
        "() = user_idx THEN lag(coord_idx) OVER () END FROM (SELECT * FROM (SELECT "
        f"u.user_idx, e.{schema.LAT}, e.{schema.LON}, p.coord_idx FROM events__ties e JOIN "
        f"{rollup.part('ties', 'users')} u USING ({schema.USER}) LEFT JOIN "
        f"{rollup.part('ties', 'places')} p USING ({schema.LAT}, {schema.LON})) ORDER BY "
        f"user_idx, {schema.LAT} NULLS LAST, {schema.LON} NULLS LAST)").fetchall()
    assert got == want and len(got) == len(coords) * 3
    assert sum(c is not None for _, _, _, c, _ in got) == 4 * 3  # three usable places


#: each event of ``ev`` beside the user's previous one, by SQL over the row order (the
#: reference the build's numpy pass must equal)
def _previous_sql(ev: str) -> str:
    def prev(col: str) -> str:
        return f"CASE WHEN lag(user_idx) OVER w = user_idx THEN lag({col}) OVER w END"

    return (f"(SELECT rowid AS r, user_idx, s, us, coord_idx, s - {prev('s')} AS gap, "
            f"{prev('us')} AS prev_us, {prev('coord_idx')} AS prev_coord FROM {ev} WINDOW w AS "
            "(ORDER BY rowid))")


def test_gaps_sessions_and_hour_users_in_row_order_whatever_the_scan(data):
    """The pass over each event beside the user's previous one (hour users, gaps, sessions)
    puts a batch scanned out of ``ev``'s order back in it by row id: rows scanned in another
    order give the same tables."""
    d = data
    ru = rollup_build.ensure(d.con, d.name)
    tables = ("hour_users", "hourly", "gaps", "sessions")
    want = {t: ru.df(f"SELECT * FROM {ru.t(t)} ORDER BY ALL") for t in tables}
    assert all(len(w) > 3 for w in want.values())
    shuffled = f"(SELECT *, rowid AS r FROM {ru.t('ev')} ORDER BY h)"
    d.con.execute("BEGIN")
    try:
        for t in tables:
            d.con.execute(f"DROP TABLE {ru.t(t)}")
        rollup_build._build_gaps(d.con, d.name, shuffled, "r")
        for t in tables:
            pd.testing.assert_frame_equal(ru.df(f"SELECT * FROM {ru.t(t)} ORDER BY ALL"),
                                          want[t], obj=t)
    finally:
        d.con.execute("ROLLBACK")


def test_summary_row_equals_counting_over_the_events(data):
    """The summary row takes its users, items, time span and located events from ``users``
    and ``items``, its percentiles from one quantile call, its median longitude from the
    build's first scan: the same values as counting them over the raw events."""
    d = data
    ru = rollup_build.ensure(d.con, d.name)
    located = has_coords_sql()
    want = ru.df(f"SELECT count(*) AS events, count(DISTINCT {schema.USER}) AS users, "
                 f"count(DISTINCT {schema.ITEM}) AS items, min({schema.TS}) AS first_ts, "
                 f"max({schema.TS}) AS last_ts, count(*) FILTER (WHERE {located}) AS located, "
                 f"quantile_disc({schema.TS}, 0.01) AS ts_p01, quantile_disc({schema.TS}, 0.99) "
                 f"AS ts_p99, count({schema.TZ_OFFSET}) AS tz_known, median({schema.LON}) AS "
                 f"lon_median, coalesce(bool_and({schema.TZ_OFFSET} % 60 = 0), TRUE) AS "
                 f"tz_whole_hours FROM {d.table}")
    got = ru.df(f"SELECT events, users, items, first_ts, last_ts, located, ts_p01, ts_p99, "
                f"tz_known, lon_median, tz_whole_hours FROM {ru.t('summary')}")
    pd.testing.assert_frame_equal(got, want)
    assert got["users"][0] > 10 and got["located"][0] > 0


def test_stored_place_sums_equal_the_sql_over_the_raw_events(data):
    """``places_items`` comes from the densities' pass (visits and users per item, unit
    vectors summed from the visits per place): the rows ``zones_sql.places_query`` gives
    over the raw table's located events, sums equal to rounding."""
    ru = rollup_build.ensure(data.con, data.name)
    stored = ru.df(f"SELECT * FROM {ru.t('places_items')}")
    raw = data.con.execute(zones_sql.places_query(
        f"(SELECT * FROM {data.table} WHERE {has_coords_sql()})")).df()
    assert len(stored) > 50 and (stored["users"] > 1).any()
    pd.testing.assert_frame_equal(stored, raw, rtol=1e-12)


def test_batched_steps_equal_one_batch(data, monkeypatch):
    """The gaps, the drift, the mobility, the rhythm, the densities and the page's zones
    (their users, activity and flows) are computed in batches of whole users: tiny batches
    (dozens of them, two computed at once) give the rows one batch gives, in order (the
    drift's per-window summaries in any order)."""
    d = data
    ru = rollup_build.ensure(d.con, d.name)
    drift = [t.split("__")[-1] for (t,) in d.con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE ?",
        [f"rollup__{d.name}__drift_%"]).fetchall()]
    parts = {"gaps": ["hour_users", "hourly", "gaps", "sessions"], "drift": drift,
             "mobility": ["mobility"], "rhythm": ["rhythm"], "rhythm_cells": ["rhythm_cells"],
             "density": ["density", "places_items"],
             "page zones": ["zone_params", "zones", "zone_activity", "zone_places",
                            "zone_flows"]}
    assert len(drift) == 3  # drift_<window>, drift_ref_<window>, drift_rank_<window>

    def rows(p: str) -> pd.DataFrame:
        return ru.df(f"SELECT * FROM {ru.t(p)}" + (" ORDER BY ALL" if p.startswith(
            ("drift_ref", "drift_rank", "sessions")) else ""))

    want = {p: rows(p) for ps in parts.values() for p in ps}
    events = ru.one(f"SELECT count(*) FROM {ru.t('ev')}")[0]
    for name in ("GAP_BATCH", "DRIFT_BATCH", "MOBILITY_BATCH", "RHYTHM_BATCH"):
        monkeypatch.setattr(rollup_build, name, events // 40)
    monkeypatch.setattr(rollup_batches, "COUNT_BATCH", events // 40)
    assert len(rollup_batches.user_batches(ru, events // 40)) > 20
    d.con.execute("BEGIN")
    try:
        steps = dict(rollup_build.build_steps(d.con, d.name))
        for what, names in parts.items():
            for p in names:
                d.con.execute(f"DROP TABLE {ru.t(p)}")
            steps[what]()
        for p, frame in want.items():
            assert len(frame) > (0 if p.startswith(("drift_ref", "drift_rank", "sessions",
                                                    "zone")) else 100), p
            pd.testing.assert_frame_equal(rows(p), frame, obj=p)
    finally:
        d.con.execute("ROLLBACK")


@pytest.mark.parametrize("start, offsets", [
    ("1969-12-20", "CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN 60 WHEN 2 THEN -300 ELSE 60 END"),
    ("2021-03-20", "CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN 60 WHEN 2 THEN -300 ELSE 120 END"),
    ("2021-03-20", "480"), ("2021-03-20", "NULL")])
def test_rhythm_and_its_cells_count_as_duckdb_does(start, offsets):
    """``rhythm``'s hour of the week is DuckDB's ``(s // 3600) % 168`` (truncated: negative
    before 1970) per user and offset, unknown offsets a key of their own: the numpy count
    equals the SQL GROUP BY on events with mixed, missing and changing offsets, one offset
    or none. After 1970 the cells summed from it per batch of users (distinct users by a
    dense count) equal counting every mode's cells over the events."""
    import duckdb

    con = duckdb.connect()
    cols = ", ".join(f"{c} {schema.DUCKDB_TYPES[c]}" for c in schema.COLUMNS)
    con.execute(f"CREATE TABLE events__rh ({cols})")
    con.execute(f"INSERT INTO events__rh SELECT 'u' || (i % 37), 'i' || (i % 5), TIMESTAMP "
                f"'{start}' + to_seconds(i * 7919), NULL, -73.9 + (i % 3), NULL, NULL, NULL, "
                f"{offsets} FROM range(3000) t(i)")
    steps = dict(rollup_build.build_steps(con, "rh"))
    for what, step in steps.items():
        step()
        if what == "rhythm":
            break
    ev, rhythm = rollup.part("rh", "ev"), rollup.part("rh", "rhythm")
    got = con.execute(f"SELECT * FROM {rhythm} ORDER BY ALL").df()
    want = con.execute(f"SELECT user_idx, {schema.TZ_OFFSET}, (s // 3600) % 168 AS how, "
                       f"count(*) AS events FROM {ev} GROUP BY ALL ORDER BY ALL").df()
    pd.testing.assert_frame_equal(got, want)
    modes, from_rhythm = rollup_build._rhythm_modes(con, "events__rh")
    assert from_rhythm is (start > "1970") and len(modes) == 3
    assert bool((got["how"] < 0).any()) is (start < "1970")
    steps["rhythm_cells"]()
    cells = con.execute(f"SELECT * FROM {rollup.part('rh', 'rhythm_cells')} ORDER BY ALL").df()
    pd.testing.assert_frame_equal(cells, con.execute(
        rollup_build._rhythm_cells(ev, modes) + " ORDER BY ALL").df())
    assert cells["users"].max() == 37 or cells["users"].sum() > 168 * 3


def test_a_set_built_by_an_older_version_is_rebuilt_on_first_use(data):
    """Tables whose layout changed (``VERSION``) are never read as they are: a set of an
    older version is not fresh, and the next ``ensure`` rebuilds it in the current layout."""
    d = data
    ru = rollup_build.ensure(d.con, d.name)
    d.con.execute(f"ALTER TABLE {ru.t('mobility')} RENAME COLUMN home_idx TO home_item")
    d.con.execute("UPDATE rollups SET version = version - 1 WHERE name = ?", [d.name])
    assert not rollup.fresh(d.con, d.name)
    ru = rollup_build.ensure(d.con, d.name)
    assert ru is not None and rollup.info(d.con, d.name)["version"] == rollup.VERSION
    assert "home_idx" in ru.df(f"SELECT * FROM {ru.t('mobility')} LIMIT 1").columns

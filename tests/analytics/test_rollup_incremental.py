"""Appended events update the summary tables incrementally, exactly as a full rebuild would.

The real NYC slice is imported and summarised; batches made from its own events (new users,
existing users on new days and weeks, events at the place of a busy zone, events without a
location, new items and categories) are appended through the one write path; then every table
that analytics.rollups.incremental keeps exact, and the page-level answers read from them,
are compared with a full rebuild of the same events.
"""

from __future__ import annotations

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import duckdb_backend, events_table
from trailscope.analytics.rollups import build, incremental, lookup
from trailscope.analytics.rollups import spatial as r_space
from trailscope.analytics.rollups import tables as rollup
from trailscope.analytics.rollups import temporal as r_time
from trailscope.analytics.rollups import users as r_users
from trailscope.analytics.store import Store

from tests.analytics.realdata import NYC_TZ_FALLBACK_MIN, import_nyc, open_store

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]

COLS = list(schema.COLUMNS)


def append(store: Store, name: str, frame: pd.DataFrame) -> None:
    """Append ``frame`` (canonical columns) through the one write path when it exists, else
    as it does: insert, registry row, incremental.apply, one transaction."""
    try:
        from trailscope.analytics.append import append as write
    except ImportError:
        write = None
    if write is not None:
        write(store, name, frame)
        return
    cur = store.cursor()
    try:
        cur.register("_frame", frame[COLS])
        cur.execute("BEGIN TRANSACTION")
        cur.execute(f"CREATE TEMP TABLE _new AS SELECT * FROM {store.table(name)} LIMIT 0")
        cur.execute(f"INSERT INTO _new SELECT {', '.join(COLS)} FROM _frame")
        cur.execute(f"INSERT INTO {store.table(name)} SELECT * FROM _new")
        cur.execute("UPDATE datasets SET rows = rows + (SELECT count(*) FROM _new) "
                    "WHERE name = ?", [name])
        incremental.apply(cur, name, "_new")
        cur.execute("DROP TABLE _new")
        cur.execute("COMMIT")
    finally:
        cur.close()


@pytest.fixture(scope="module")
def nyc(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("incremental"))
    name = import_nyc(store)
    build.after_import(store, name)
    yield store, name
    store.close()


def _events(store: Store, sql: str) -> pd.DataFrame:
    return store.cursor().execute(sql).df()[COLS]


def _batches(store: Store, name: str) -> list[pd.DataFrame]:
    """Five batches cut from the dataset's own events."""
    t, u, ts = store.table(name), schema.USER, schema.TS
    last = store.cursor().execute(f"SELECT max({ts}) FROM {t}").fetchall()[0][0]
    # new users: the events of three existing users under new ids
    new_users = _events(store, f"SELECT * FROM {t} WHERE {u} IN (SELECT DISTINCT {u} FROM {t} "
                               f"ORDER BY {u} LIMIT 3) ORDER BY {ts} LIMIT 60")
    new_users[u] = "new-" + new_users[u].astype(str)
    # existing users on new days and weeks after the last event (new periods, new hours)
    later = _events(store, f"SELECT * FROM {t} USING SAMPLE 40 ROWS (reservoir, 7)")
    later[ts] = pd.Timestamp(last) + pd.to_timedelta(range(1, 41), unit="h") * 9
    # events at the busiest place (inside the Map page's busiest zone) by other users
    busy = _events(store, f"SELECT * FROM {t} WHERE ({schema.LAT}, {schema.LON}) = (SELECT "
                          f"({schema.LAT}, {schema.LON}) FROM {t} WHERE {schema.LAT} IS NOT NULL "
                          f"GROUP BY ALL ORDER BY count(*) DESC LIMIT 1) LIMIT 30")
    busy[u] = _events(store, f"SELECT * FROM {t} USING SAMPLE 30 ROWS (reservoir, 3)")[u].values
    # no location, new items and a new category, repeated in the batch
    bare = _events(store, f"SELECT * FROM {t} USING SAMPLE 25 ROWS (reservoir, 5)")
    bare[[schema.LAT, schema.LON]] = None
    bare.loc[::2, schema.ITEM] = "new-item-" + bare[u].astype(str)
    bare.loc[::3, schema.CATEGORY] = "New category"
    # the same events again: existing (period, user) pairs and rhythm cells counted twice
    again = later.iloc[:10].copy()
    return [new_users, later, busy, bare, again]


def _zone_visits(store: Store, name: str) -> pd.DataFrame:
    """The stored page zones' ids, names and visits, and which holds the busiest place."""
    t = store.table(name)
    return store.cursor().execute(
        f"SELECT z.zone_id, z.name, z.visits, z.zone_id = (SELECT p.zone_id FROM "
        f"{rollup.part(name, 'zone_places')} p JOIN (SELECT {schema.LAT}, {schema.LON} FROM {t} "
        f"WHERE {schema.LAT} IS NOT NULL GROUP BY ALL ORDER BY count(*) DESC LIMIT 1) b ON "
        f"abs(p.{schema.LAT} - b.{schema.LAT}) < 1e-5 AND abs(p.{schema.LON} - b.{schema.LON}) "
        f"< 1e-5 LIMIT 1) AS busy FROM {rollup.part(name, 'zones')} z ORDER BY zone_id").df()


def _by_user(store: Store, name: str, what: str, keys: list[str]) -> pd.DataFrame:
    """Summary table ``what`` with user_idx replaced by the user id, in a stable order."""
    t = rollup.part(name, what)
    df = store.cursor().execute(
        f"SELECT u.{schema.USER}, x.* EXCLUDE (user_idx) FROM {t} x JOIN "
        f"{rollup.part(name, 'users')} u USING (user_idx)").df()
    return df.sort_values([schema.USER, *keys], ignore_index=True)


def _table(store: Store, name: str, what: str, order: list[str],
           drop: tuple[str, ...] = ()) -> pd.DataFrame:
    df = store.cursor().execute(f"SELECT * EXCLUDE ({', '.join(('_none',) + drop)}) FROM "
                                f"(SELECT *, 0 AS _none FROM {rollup.part(name, what)})").df()
    return df.sort_values(order, ignore_index=True)


def _state(store: Store, name: str, user: str, window: str) -> dict[str, pd.DataFrame]:
    """Every incrementally kept table (ids instead of indexes) and the page-level answers."""
    con, table = store.cursor(), store.table(name)
    ev = events_table(duckdb_backend(store), name)
    out = {
        "users": _table(store, name, "users", [schema.USER], ("user_idx",)),
        "items": _table(store, name, "items", [schema.ITEM], ("item_idx",)),
        "places": _table(store, name, "places", [schema.LAT, schema.LON], ("coord_idx",)),
        "categories": _table(store, name, "categories", [schema.CATEGORY], ("cat_idx",)),
        "periods": _table(store, name, "periods", ["freq", "period"]),
        "hourly": _table(store, name, "hourly", ["period"]),
        "rhythm": _by_user(store, name, "rhythm", [schema.TZ_OFFSET, "how"]),
        "rhythm_cells": _table(store, name, "rhythm_cells", ["mode", "fallback", "weekday",
                                                              "hour"]),
        "values": _table(store, name, "values", ["col", "value"]),
        "summary": _table(store, name, "summary", ["events"],
                          ("ts_p01", "ts_p99", "lon_median")),
        "heat": _table(store, name, "heat", ["h"]),
        "kpis": r_time.kpis(ev),
        "trend": r_time.activity_series(ev, "day"),
        "weekly": r_time.activity_series(ev, "week"),
        "active": r_time.active_users(ev, "week"),
        "rhythm_local": r_time.rhythm_matrix(ev, True, NYC_TZ_FALLBACK_MIN),
        "rhythm_utc": r_time.rhythm_matrix(ev, False),
        "cohorts": r_time.cohort_retention(ev, "month"),
        "top": r_time.top_values(con, table, schema.CATEGORY, 20),
        "per_user": r_users.per_user(con, table, "", [], f"ORDER BY events DESC, "
                                                         f"{schema.USER} LIMIT 50"),
        "user_events": r_users.user_events_sql(con, table, user),
        "mobility": r_users.user_mobility_sql(con, table, user, window),
        "heat_points": r_space.sample_points_sql(con, table, 5000),
        "located_span": pd.DataFrame([r_space.located_span(con, table)]),
    }
    for f in rollup.USER_FREQS:
        out["user_" + f] = _by_user(store, name, "user_" + f, ["period"])
    return out


def test_appended_batches_equal_a_full_rebuild(nyc):
    store, name = nyc
    con = store.cursor()
    assert rollup.fresh(con, name)
    before = con.execute(f"SELECT events FROM {rollup.part(name, 'summary')}").fetchall()[0][0]
    batches = _batches(store, name)
    window = "week"
    zones_before = _zone_visits(store, name)
    params = con.execute(f"SELECT params FROM {rollup.part(name, 'zone_params')}").fetchall()
    for frame in batches:
        append(store, name, frame)
        assert rollup.fresh(con, name), "the set stays fresh after an append"
    n = sum(len(b) for b in batches)
    assert con.execute(f"SELECT events FROM {rollup.part(name, 'summary')}"
                       ).fetchall()[0][0] == before + n
    assert incremental.behind_rows(con, name) == n
    # the stored zones count the visits at their places (the busy batch lands in one)
    zones_after = _zone_visits(store, name)
    busy = batches[2]
    zone = zones_after.loc[zones_after["busy"], schema_zone := "zone_id"]
    assert len(zone) == 1, "the busiest place lies in one zone"
    grown = zones_after.set_index(schema_zone)["visits"] - zones_before.set_index(
        schema_zone)["visits"]
    assert grown[zone.iloc[0]] >= len(busy) and grown.drop(zone.iloc[0]).ge(0).all()
    assert int(grown.sum()) <= sum(b[schema.LAT].notna().sum() for b in batches)
    assert con.execute(f"SELECT params FROM {rollup.part(name, 'zone_params')}").fetchall() \
        == params, "the zones' parameters stay those of the build"
    user = str(batches[0][schema.USER].iloc[0])           # a new user
    old_user = str(batches[1][schema.USER].iloc[0])      # an existing one with new events
    got = _state(store, name, user, window)
    got_old = r_users.user_mobility_sql(con, store.table(name), old_user, window)
    with lookup.disabled():                               # the raw answers, as a third check
        raw_kpis = r_time.kpis(events_table(duckdb_backend(store), name))
    build.rebuild(con, name)
    assert rollup.fresh(con, name) and incremental.behind_rows(con, name) == 0
    want = _state(store, name, user, window)
    rebuilt = _zone_visits(store, name)
    busy_zone = rebuilt.loc[rebuilt["busy"], "name"]
    assert list(busy_zone) == list(zones_after.loc[zones_after["busy"], "name"])
    assert rebuilt.loc[rebuilt["busy"], "visits"].iloc[0] == \
        zones_after.loc[zones_after["busy"], "visits"].iloc[0]
    pd.testing.assert_frame_equal(got["kpis"], raw_kpis)
    for key in want:
        pd.testing.assert_frame_equal(got[key], want[key], check_dtype=False, obj=key)
    pd.testing.assert_frame_equal(
        got_old, r_users.user_mobility_sql(con, store.table(name), old_user, window))
    assert len(got["user_events"]) == (batches[0][schema.USER] == user).sum()


def test_needs_rebuild_after_enough_appended_events(nyc, monkeypatch):
    store, name = nyc
    con = store.cursor()
    build.ensure(con, name)
    assert not incremental.needs_rebuild(con, name)
    frame = _events(store, f"SELECT * FROM {store.table(name)} LIMIT 7")
    monkeypatch.setattr(incremental, "REBUILD_ROWS", 10)
    append(store, name, frame)
    assert incremental.behind_rows(con, name) == 7 and not incremental.needs_rebuild(con, name)
    append(store, name, frame)
    assert incremental.needs_rebuild(con, name)


def test_no_fresh_set_apply_does_nothing(tmp_path):
    store = open_store(tmp_path)
    name = import_nyc(store)          # no summary tables built
    con = store.cursor()
    frame = _events(store, f"SELECT * FROM {store.table(name)} LIMIT 5")
    append(store, name, frame)
    assert not rollup.fresh(con, name)
    assert incremental.behind_rows(con, name) == 0
    assert con.execute("SELECT rows FROM datasets WHERE name = ?", [name]).fetchall()[0][0] \
        == con.execute(f"SELECT count(*) FROM {store.table(name)}").fetchall()[0][0]
    store.close()

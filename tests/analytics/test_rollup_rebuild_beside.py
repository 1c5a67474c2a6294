"""The background summary rebuild runs beside the appends (app/services/live.rebuild_if_needed:
the fold lock only, build.rebuild on one DuckDB snapshot): on the real NYC slice, appends made
from its own events commit while the rebuild runs, folds wait for it, and after it and one
fold every incrementally kept table and page answer equals a rebuild from scratch; the events
appended during the rebuild are counted once, neither lost nor doubled.
"""

from __future__ import annotations

import threading
import time
from functools import partial

import pandas as pd
import pytest
from trailscope.analytics import append as ap
from trailscope.analytics import schema
from trailscope.analytics.rollups import build, incremental
from trailscope.analytics.rollups import tables as rollup

from tests.analytics.realdata import import_nyc, open_store
from tests.analytics.test_rollup_incremental import _batches, _state

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]

COLS = list(schema.COLUMNS)


@pytest.fixture()
def nyc(tmp_path):
    store = open_store(tmp_path)
    name = import_nyc(store)
    build.after_import(store, name)
    yield store, name
    store.close()


def _rows(store, name: str) -> int:
    return store.info(name).rows


def _recount(store, name: str) -> int:
    return int(store.query_df(f"SELECT count(*) AS n FROM {store.table(name)}")["n"].iloc[0])


def test_appends_commit_during_the_rebuild_and_nothing_is_lost_or_doubled(nyc):
    store, name = nyc
    con = store.cursor()
    for frame in _batches(store, name):               # the BEHIND tables fall behind
        ap.append(store, name, frame)
    # a pool of real events for the appends beside the rebuild: later each time
    pool = store.cursor().execute(f"SELECT * FROM {store.table(name)} USING SAMPLE 400 ROWS "
                                  "(reservoir, 11)").df()[COLS]
    last = pd.Timestamp(store.info(name).time_max)
    base = _rows(store, name)
    stop, done, errors, folds = threading.Event(), [], [], []

    def appender() -> None:
        k = 0
        while not stop.is_set():
            frame = pool.iloc[(k * 10) % 400:(k * 10) % 400 + 10].copy()
            frame[schema.TS] = last + pd.Timedelta(hours=k + 1)
            began = time.perf_counter()
            try:
                got = ap.append(store, name, frame, fold=False)
            except Exception as exc:  # noqa: BLE001 - reported by the assert below
                errors.append(exc)
                return
            done.append((began, time.perf_counter(), got.stored))
            k += 1

    def folder() -> None:
        while not stop.is_set():
            try:
                n = ap.fold_summaries(store, name)
                folds.append((time.perf_counter(), n))
            except Exception as exc:  # noqa: BLE001 - reported by the assert below
                errors.append(exc)
            stop.wait(0.05)

    threads = [threading.Thread(target=appender), threading.Thread(target=folder)]
    for t in threads:
        t.start()
    try:
        while len(done) < 3 and not errors:          # appends are flowing
            time.sleep(0.01)
        with ap.fold_lock:                           # as app/services/live.rebuild_if_needed
            snap_before = _rows(store, name)
            t0 = time.perf_counter()
            build.rebuild(con, name)
            t1 = time.perf_counter()
            assert incremental.settle(con, name)
            # the events of the rebuild's snapshot (a fold moves this on later)
            snap = con.execute("SELECT rows FROM rollups WHERE name = ?",
                               [name]).fetchall()[0][0]
        while sum(1 for b, _, _ in done if b > t1) < 3 and not errors:  # and go on after it
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    # appends that began and ended inside the rebuild committed while it ran
    during = [n for b, e, n in done if t0 < b and e < t1]
    assert during and sum(during) > 0, "an append committed while the rebuild ran"
    assert not [n for t, n in folds if t0 < t < t1], "folds wait for the rebuild"

    ap.fold_summaries(store, name)
    rows = _rows(store, name)
    assert rows == _recount(store, name) == base + sum(n for _, _, n in done)
    assert base <= snap_before <= snap < rows, "events appended after the snapshot"
    assert incremental.staged_rows(con, name) == 0 and rollup.fresh(con, name)
    ru = rollup.Rollup(con, name)
    assert ru.summary()["events"] == rows, "every event counted once in the summary"
    # the rebuilt (BEHIND) tables hold the snapshot's events; those after it are pending
    assert ru.one(f"SELECT count(*) FROM {ru.t('ev')}")[0] == snap
    assert incremental.behind_rows(con, name) == rows - snap

    user = str(pool[schema.USER].iloc[0])
    got = _state(store, name, user, "week")
    build.rebuild(con, name)                          # from scratch: a new fingerprint
    assert incremental.behind_rows(con, name) == 0
    assert rollup.Rollup(con, name).summary()["events"] == rows
    want = _state(store, name, user, "week")
    for key in want:
        pd.testing.assert_frame_equal(got[key], want[key], check_dtype=False, obj=key)


def test_settle_drops_a_set_missing_unstaged_events(nyc, monkeypatch):
    """An append the stage missed (the set it saw was stale) leaves the rebuilt set short:
    settle says so and removes its registry row, so it is rebuilt rather than read."""
    store, name = nyc
    con = store.cursor()
    assert incremental.settle(con, name) and rollup.fresh(con, name)
    frame = _batches(store, name)[0]
    monkeypatch.setattr(incremental, "stage", lambda cur, name, batch, **kw: False)
    ap.append(store, name, frame, fold=False)
    assert rollup.fresh(con, name)                   # fresh() alone cannot tell
    assert not incremental.settle(con, name) and not rollup.fresh(con, name)


def test_a_cancelled_rebuild_stops_at_once_and_keeps_the_tables_it_had(nyc, monkeypatch):
    """A set ``cancel`` interrupts the query a rebuild runs (a step of minutes at 100M events)
    and rolls it back: the registry row, the tables and their answers stay as they were."""
    store, name = nyc
    con = store.cursor()
    ap.append(store, name, _batches(store, name)[0])   # now a rebuild would change the set
    before = rollup.info(con, name)
    events = rollup.Rollup(con, name).summary()["events"]
    real = build.build_steps
    slow = "SELECT sum(a.i * b.j) FROM range(200000) a(i), range(200000) b(j)"  # hours
    monkeypatch.setattr(build, "build_steps", lambda cur, n: [
        *real(cur, n)[:2], ("slow", partial(cur.execute, slow)), *real(cur, n)[2:]])
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(build.Cancelled, match="cancelled"):
        build.rebuild(con, name, cancel=cancel)
    assert time.monotonic() - t0 < 20          # interrupted, not run to the end
    assert rollup.info(con, name) == before and rollup.fresh(con, name)
    assert rollup.Rollup(con, name).summary()["events"] == events
    # set before it starts: no step runs
    with pytest.raises(build.Cancelled, match="before"):
        build.rebuild(con, name, cancel=cancel)
    assert rollup.info(con, name) == before
    monkeypatch.undo()
    build.rebuild(con, name)                   # and a later rebuild runs as ever
    assert rollup.Rollup(con, name).summary()["events"] == _rows(store, name)
    assert [t.name for t in threading.enumerate() if t.name == "trailscope-build-cancel"] == []

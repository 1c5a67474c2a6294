"""The server's one write path (app/services/writer.py) on the NYC slice imported into a
temporary workspace: concurrent appends end with exact counts, bad batches never reach the
queue, drops queue behind appends, a full or stuck writer says so and stores nothing, the
services' caches see appended rows, and a model trained before an append still loads and
follows the user's new events."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.append import EVENT_ID
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.store import DatasetNotFound, Store, events_table
from trailscope.app.services import cache, writer
from trailscope.app.services import workspace as services
from trailscope.models import api

from tests.conftest import NYC

U, IT, T, LA, LO = schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON
QUIET = {"log": lambda _m: None}


@pytest.fixture()
def nyc(workspace):
    import_file(workspace, NYC, name="nyc")
    return workspace


def after_end(store, name: str, days: int = 1):
    return pd.Timestamp(store.info(name).time_max).to_pydatetime() + timedelta(days=days)


def batch(user: str, items: list[str], start, prefix: str) -> list[dict]:
    return [{U: user, IT: item, T: (start + timedelta(seconds=k)).isoformat() + "Z",
             LA: 40.74, LO: -73.99, EVENT_ID: f"{prefix}-{k}"} for k, item in enumerate(items)]


def wait_for(cond, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def in_threads(work, count: int) -> None:
    """Run ``work(t)`` for t in range(count) in as many threads; fail with the first error
    any of them raised."""
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            work(t)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(count)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(120)
    assert not errors and not any(th.is_alive() for th in pool), errors[:1]


def post_singles(tag: str, callers: int, posts: int, start) -> None:
    """``callers`` threads each post ``posts`` single events to ``nyc`` through the writer,
    one after another (user ``<tag>-<t>``, a new item each, a minute apart)."""
    def work(t: int) -> None:
        for k in range(posts):
            writer.append("nyc", batch(f"{tag}-{t}", [f"{tag}{t}-{k}"],
                                       start + timedelta(minutes=t * posts + k),
                                       f"{tag}-{t}-{k}"))

    in_threads(work, callers)


def test_concurrent_appends_end_with_exact_counts(nyc):
    before, start = nyc.info("nyc"), after_end(nyc, "nyc")
    stats0 = writer.stats()
    threads, per_thread, size = 4, 10, 100
    results: dict[int, list] = {t: [] for t in range(threads)}

    def work(t: int) -> None:
        for b in range(per_thread):
            items = [f"t{t}-item{k % 7}" for k in range(size)]
            recs = batch(f"thread-{t}", items, start + timedelta(hours=t, minutes=b),
                         f"{t}-{b}")
            if b % 3 == 0:  # a resent batch: stored once
                results[t].append(writer.append("nyc", recs))
            results[t].append(writer.append("nyc", recs))

    in_threads(work, threads)
    total = threads * per_thread * size
    got = [r for rs in results.values() for r in rs]
    assert sum(r.stored for r in got) == total
    assert sum(r.duplicates for r in got) == threads * 4 * size  # batches 0, 3, 6, 9 resent
    info = nyc.info("nyc")
    assert info.rows == before.rows + total
    assert (info.users, info.items) == (before.users + threads, before.items + threads * 7)
    n, users = nyc.query_df(f"SELECT count(*) AS n, count(DISTINCT {U}) AS u "
                            f"FROM {events_table('nyc')}").iloc[0]
    assert (n, users) == (info.rows, info.users)
    stats = writer.stats()
    assert stats["requests"] - stats0["requests"] == len(got)
    assert stats["events"] - stats0["events"] == len(got) * size
    assert stats["groups"] - stats0["groups"] <= len(got)  # some were committed together
    assert stats["queued"] == 0 and stats["commit_ms_max"] > 0


def test_concurrent_single_event_posts_share_commits(nyc, monkeypatch):
    """Sixteen callers posting one event at a time: every event stored once, and the writer
    lets a group wait a moment for the callers it just answered, so most of them share a
    commit (far fewer commits than posts, and groups larger than half of the callers).

    Each commit takes at least 30 ms here, as on a loaded server: the wait is a share of the
    last commit's time, and with this slice's 3-5 ms commits it was about 1 ms, less than a
    busy 2-core machine takes to wake the answered callers (the groups then alternated in
    halves of 8, 24 commits, in 1 run of 4 run alone)."""
    real = writer.store_append

    def slow(*args, **kwargs):
        time.sleep(0.03)
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "store_append", slow)
    before, start = nyc.info("nyc").rows, after_end(nyc, "nyc")
    stats0 = writer.stats()
    callers, posts = 16, 12

    post_singles("single", callers, posts, start)
    assert nyc.info("nyc").rows == before + callers * posts
    stats = writer.stats()
    groups = stats["groups"] - stats0["groups"]
    assert stats["requests"] - stats0["requests"] == callers * posts
    assert groups * (callers / 2) < callers * posts, f"{groups} commits for {callers * posts}"


def test_a_group_stops_waiting_once_the_answered_callers_are_back(nyc, monkeypatch):
    """With a long linger (slow commits, a large share), a group still goes as soon as the
    callers the last commit answered have sent again: eight callers posting four single
    events each share commits and take nowhere near one linger per commit."""
    real = writer.store_append

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "store_append", slow)
    monkeypatch.setattr(writer, "LINGER_SHARE", 20.0)   # linger = LINGER_MAX_S
    monkeypatch.setattr(writer, "LINGER_MAX_S", 3.0)
    before, start = nyc.info("nyc").rows, after_end(nyc, "nyc")
    stats0, t0 = writer.stats(), time.monotonic()
    callers, posts = 8, 4

    post_singles("back", callers, posts, start)
    elapsed = time.monotonic() - t0
    assert nyc.info("nyc").rows == before + callers * posts
    groups = writer.stats()["groups"] - stats0["groups"]
    assert groups <= 2 * posts, f"{groups} commits for {callers * posts} posts"
    assert elapsed < 2 * writer.LINGER_MAX_S, f"{elapsed:.1f} s"


def test_bad_batch_never_enters_the_queue(nyc):
    start, stats0, rows0 = after_end(nyc, "nyc"), writer.stats(), nyc.info("nyc").rows
    recs = batch("u1", ["a", "b", "c"], start, "bad")
    recs[1][T] = "not a time"
    recs[2]["colour"] = "red"
    with pytest.raises(writer.AppendError) as err:
        writer.append("nyc", recs)
    assert [(p.index, p.field) for p in err.value.problems] == [(1, T), (2, "colour")]
    assert writer.stats()["requests"] == stats0["requests"]
    assert nyc.info("nyc").rows == rows0
    with pytest.raises(DatasetNotFound):
        writer.append("nope", batch("u1", ["a"], start, "x"))
    with pytest.raises(services.ServiceError, match="invalid dataset name"):
        writer.append("no such/name", [])


def test_an_append_changes_the_cache_stamp_and_the_answers(nyc):
    stamp, info = cache.dataset_stamp(nyc, "nyc"), services.dataset_info("nyc")
    res = writer.append("nyc", batch("stamp-user", ["x", "y"], after_end(nyc, "nyc"), "st"))
    assert res.stored == 2
    assert cache.dataset_stamp(nyc, "nyc") != stamp
    assert services.dataset_info("nyc").rows == info.rows + 2
    again = writer.append("nyc", batch("stamp-user", ["x", "y"], after_end(nyc, "nyc"), "st"))
    assert (again.stored, again.duplicates, again.rows) == (0, 2, info.rows + 2)


@pytest.fixture()
def held(monkeypatch):
    """The writer's commits wait for ``gate`` (set it to let them through); ``entered`` is
    set once the writer is inside one."""
    gate, entered = threading.Event(), threading.Event()
    real = writer.store_append

    def slow(store, name, frame, **kw):
        entered.set()
        gate.wait(30)
        return real(store, name, frame, **kw)

    monkeypatch.setattr(writer, "store_append", slow)
    yield gate, entered
    gate.set()


def test_drop_waits_behind_queued_appends(nyc, held):
    """Appends queued before a drop are committed first; appends after it find no dataset."""
    gate, entered = held
    start = after_end(nyc, "nyc")
    out: dict[str, object] = {}

    def run(key: str, fn) -> threading.Thread:
        def target() -> None:
            try:
                out[key] = fn()
            except Exception as exc:  # noqa: BLE001 - checked below
                out[key] = exc
        th = threading.Thread(target=target)
        th.start()
        return th

    first = run("first", lambda: writer.append("nyc", batch("d", ["a"], start, "d1")))
    assert entered.wait(20)  # the writer is inside the first commit
    second = run("second", lambda: writer.append("nyc", batch("d", ["b"], start, "d2")))
    wait_for(lambda: writer.stats()["queued"] >= 2)
    dropper = run("drop", lambda: writer.drop("NYC"))
    wait_for(lambda: writer.stats()["queued"] >= 3)
    third = run("third", lambda: writer.append("nyc", batch("d", ["c"], start, "d3")))
    wait_for(lambda: writer.stats()["queued"] >= 4)
    gate.set()
    for th in (first, second, dropper, third):
        th.join(60)
    assert out["first"].stored == 1 and out["second"].stored == 1
    assert out["drop"] == "nyc" and not nyc.exists("nyc")
    assert isinstance(out["third"], DatasetNotFound)


def test_full_queue_and_timeout_store_nothing(nyc, held, monkeypatch):
    gate, entered = held
    start, rows0 = after_end(nyc, "nyc"), nyc.info("nyc").rows
    holder = threading.Thread(target=writer.append,
                              args=("nyc", batch("q", ["a"], start, "q0")))
    holder.start()
    assert entered.wait(20)
    with pytest.raises(writer.WriterBusy, match="did not reach the batch within 0.2 s"):
        writer.append("nyc", batch("q", ["b"], start, "q1"), timeout=0.2)
    monkeypatch.setattr(writer, "MAX_QUEUED", 1)
    with pytest.raises(writer.WriterBusy, match="nothing was stored"):
        writer.append("nyc", batch("q", ["c"], start, "q2"))
    gate.set()
    holder.join(60)
    wait_for(lambda: writer.stats()["queued"] == 0)
    assert nyc.info("nyc").rows == rows0 + 1  # only the first; q1 was abandoned, q2 refused
    ids = nyc.query_df(f'SELECT {EVENT_ID} FROM "live__nyc__events"')[EVENT_ID].tolist()
    assert ids == ["q0-0"]


def test_a_model_trained_before_an_append_follows_the_new_events(nyc):
    res = api.train(nyc, "nyc", model="repeat", **QUIET)
    ev = nyc.events("nyc")
    user = ev[U].value_counts().index[0]
    top = [r["item_id"] for r in api.recommend(nyc, "nyc", user, k=10)["items"]]
    # an item the model knows (the most visited overall) that is not among the user's ten
    item = next(i for i in ev[IT].value_counts().index if i not in top)
    start = after_end(nyc, "nyc")
    stored = writer.append("nyc", batch(user, [item] * 8, start, "m"))
    assert stored.stored == 8
    models = api.list_models(nyc, "nyc")
    assert [(m["model_id"], m["stale"]) for m in models] == [(res.model_id, False)]
    api.load(nyc, "nyc", res.model_id)  # loads: the fingerprint is the import's
    now = [r["item_id"] for r in api.recommend(nyc, "nyc", user, k=10,
                                                 model_id=res.model_id)["items"]]
    assert now != top and item in now


def test_the_writer_folds_what_it_staged_into_the_summaries(nyc):
    """Appends through the writer only stage their events for the summaries; the writer folds
    them once its queue is idle, so the pages' counts include every posted event."""
    from trailscope.analytics.rollups import build, incremental, tables

    cur = nyc.cursor()
    build.rebuild(cur, "nyc")
    start = after_end(nyc, "nyc")
    before = nyc.info("nyc").rows
    done = [writer.append("nyc", batch(f"f{k}", ["a", "b"], start, f"f{k}"))
            for k in range(5)]
    assert sum(r.stored for r in done) == 10
    wait_for(lambda: incremental.staged_rows(cur, "nyc") == 0
             and writer.stats()["folded"] >= 10)
    assert tables.fresh(cur, "nyc")
    assert tables.Rollup(cur, "nyc").summary()["events"] == before + 10 == nyc.info("nyc").rows


def test_slow_folds_run_less_often_but_within_the_visibility_goal():
    """Under a stream a dataset is folded every incremental.FOLD_S seconds, every
    FOLD_SPACING times its last fold's duration when that is longer, at most FOLD_MAX_S
    (a posted event shows within 2 s)."""
    from trailscope.analytics.rollups import incremental

    w = writer.Writer()
    assert w._fold_every("new") == incremental.FOLD_S
    w._fold_s["quick"], w._fold_s["slow"], w._fold_s["slower"] = 0.05, 0.36, 3.0
    assert w._fold_every("quick") == incremental.FOLD_S
    assert w._fold_every("slow") == pytest.approx(writer.FOLD_SPACING * 0.36)
    assert w._fold_every("slower") == writer.FOLD_MAX_S
    assert writer.FOLD_MAX_S + writer.FOLD_IDLE_S < 2.0


def test_a_stream_of_slow_commits_is_folded_on_schedule_not_after_each(nyc, monkeypatch):
    """Commits slower than FOLD_IDLE_S under a steady stream: the writer is not quiet between
    them (its callers send again moments after each answer), so the folds come about every
    incremental.FOLD_S seconds, not after every commit; every event is stored and folded."""
    from trailscope.analytics.rollups import build, incremental, tables

    cur = nyc.cursor()
    build.rebuild(cur, "nyc")
    real = writer.store_append

    def slow(*args, **kwargs):
        time.sleep(3 * writer.FOLD_IDLE_S)
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "store_append", slow)
    before, start = nyc.info("nyc").rows, after_end(nyc, "nyc")
    stats0, t0 = writer.stats(), time.monotonic()
    callers, posts = 6, 12

    post_singles("stream", callers, posts, start)
    elapsed = time.monotonic() - t0
    stats = writer.stats()
    groups, folds = stats["groups"] - stats0["groups"], stats["folds"] - stats0["folds"]
    assert groups >= posts  # (each caller's posts commit one after another)
    assert folds <= elapsed / incremental.FOLD_S + 1, f"{folds} folds for {groups} commits"
    wait_for(lambda: incremental.staged_rows(cur, "nyc") == 0)
    assert tables.Rollup(cur, "nyc").summary()["events"] == before + callers * posts \
        == nyc.info("nyc").rows


EXIT_SCRIPT = """
import os, sys, threading, time
os.environ["TRAILSCOPE_HOME"] = sys.argv[1]
from trailscope.app.services import writer
def post(k):
    for j in range(20):
        writer.append("nyc", [{"user_id": f"x{k}", "item_id": f"i{j}", "lat": 40.74,
                               "lon": -73.99, "ts": f"2030-01-01T10:{j:02d}:00Z",
                               "event_id": f"x{k}-{j}"}])
threads = [threading.Thread(target=post, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
time.sleep(float(sys.argv[2]))  # the folder starts its fold FOLD_IDLE_S after the last commit
"""


@pytest.mark.parametrize("pause", [0.06, 0.1])
def test_a_program_that_appended_in_process_exits_cleanly_after_its_fold(tmp_path, pause):
    """A program (a bench, a notebook, a test) that appends through the writer and exits while
    the folder thread folds: before the exit hook it died with SIGABRT ("FATAL: exception not
    rethrown", exit status 134, 6 runs of 6 with these pauses); now it exits 0 after the fold,
    so the summaries hold every appended event."""
    from trailscope.analytics.rollups import build, incremental, tables

    with Store(tmp_path / "trailscope.duckdb") as store:
        import_file(store, NYC, name="nyc")
        build.after_import(store, "nyc")
        before = store.info("nyc").rows
    got = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(tmp_path), str(pause)],
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    assert "FATAL" not in got.stderr
    with Store(tmp_path / "trailscope.duckdb") as store:
        cur = store.cursor()
        assert store.info("nyc").rows == before + 160
        assert incremental.staged_rows(cur, "nyc") == 0
        assert tables.fresh(cur, "nyc")
        assert tables.Rollup(cur, "nyc").summary()["events"] == before + 160

"""Append benchmark (issue #14): the storage side of live ingest, in process, no HTTP.

    python -m bench.append_bench [--events 1000000] [--batches 200] [--threads 8]
                                 [--seconds 20] [--summaries] [--workdir DIR]

1. builds a dataset of about ``--events`` events from the committed NYC slice (its users
   copied with a suffix, times shifted a minute per copy: real places, items and habits);
   with ``--summaries`` also its dashboard summary tables, so every append pays for
   ``analytics.rollups.incremental.apply`` too;
2. ``validate``: CPU milliseconds per batch of 100 events (ISO times with ``Z``, located);
3. ``append``: the first append (builds the live id tables: one scan), then ``--batches``
   batches of 100 new events, one transaction each: median and p95 milliseconds;
4. new users and items: the live id tables' primary keys (what append does) against an
   anti-join of the batch's ids with the events table (the scan it avoids);
5. the writer (app/services/writer.py): ``--threads`` threads post batches of 100 through
   ``writer.append`` for ``--seconds``: events/s sustained, groups committed, events per
   group, commit milliseconds (mean, max).

Goals: >= 10,000 events/s through the writer in batches of 100; < 20 ms per 100-event
append on a 1M-event dataset. The load average is printed: other work on the machine slows
every number.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd


def say(line: str = "") -> None:
    print(line, flush=True)


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def build(store, n: int) -> str:
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import events_table

    from tests.conftest import NYC

    import_file(store, NYC, name="slice")
    base = store.info("slice").rows
    copies = max(1, -(-n // base))
    cols = ("CASE WHEN c = 0 THEN user_id ELSE user_id || '-' || c END, item_id, "
            "ts + to_minutes(c), lat, lon, behavior, category, value, tz_offset_min")
    store.save_dataset("big", f"SELECT {cols} FROM {events_table('slice')}, range({copies}) "
                       f"r(c) LIMIT {n}", source="bench", fmt="tsmc", report={})
    store.drop("slice")
    return "big"


def records(places: pd.DataFrame, start, k: int, users: list[str]) -> list[dict]:
    """100 new events: real places, existing users (every 10th batch a new one), ISO times
    10 ms apart (a live stream's: the same few minutes)."""
    out = []
    for j in range(100):
        p = places.iloc[(k * 100 + j) % len(places)]
        user = f"new-{k}" if j == 0 and k % 10 == 0 else users[(k * 7 + j) % len(users)]
        out.append({"user_id": user, "item_id": p["item_id"], "lat": float(p["lat"]),
                    "lon": float(p["lon"]),
                    "ts": (start + timedelta(milliseconds=10 * (k * 100 + j))).isoformat()
                    + "Z",
                    "event_id": f"b{k}-{j}"})
    return out


def main(argv: list[str] | None = None) -> int:
    ap_ = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap_.add_argument("--events", type=int, default=1_000_000)
    ap_.add_argument("--batches", type=int, default=200)
    ap_.add_argument("--threads", type=int, default=8)
    ap_.add_argument("--seconds", type=float, default=20.0)
    ap_.add_argument("--summaries", action="store_true")
    ap_.add_argument("--workdir", type=Path, default=None)
    args = ap_.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="append-bench-"))
    os.environ["TRAILSCOPE_HOME"] = str(work)
    from trailscope.analytics import append as ap
    from trailscope.analytics.store import events_table
    from trailscope.app.services import jobs, workspace, writer

    store = workspace.get_store()
    t0 = time.perf_counter()
    name = build(store, args.events)
    info = store.info(name)
    say(f"dataset: {info.rows:,} events, {info.users:,} users, {info.items:,} items "
        f"({time.perf_counter() - t0:.1f} s); load {load()}")
    if args.summaries:
        from trailscope.analytics.rollups import build as rollup_build

        s = rollup_build.after_import(store, name)
        say(f"summaries built in {s:.1f} s")
    places = store.query_df(f"SELECT item_id, lat, lon FROM {events_table(name)} "
                            "USING SAMPLE 5000 ROWS (reservoir, 1)")
    users = store.query_df(f"SELECT DISTINCT user_id FROM {events_table(name)} "
                           "LIMIT 2000")["user_id"].tolist()
    start = pd.Timestamp(info.time_max).to_pydatetime() + timedelta(days=1)

    # validate
    batches = [records(places, start, k, users) for k in range(args.batches + 1)]
    ap.validate(batches[0])
    c = time.process_time()
    frames = [ap.validate(b) for b in batches]
    say(f"validate: {(time.process_time() - c) / len(batches) * 1000:.2f} ms CPU per 100 "
        f"events; load {load()}")

    # append, one transaction per batch
    t = time.perf_counter()
    ap.append(store, name, frames[0])
    say(f"first append (builds the id tables): {(time.perf_counter() - t) * 1000:.0f} ms")
    ms = []
    c = time.process_time()
    for f in frames[1:]:
        t = time.perf_counter()
        ap.append(store, name, f)
        ms.append((time.perf_counter() - t) * 1000)
    cpu = (time.process_time() - c) / len(ms) * 1000
    q = statistics.quantiles(ms, n=20)
    say(f"append 100 events: median {statistics.median(ms):.1f} ms, p95 {q[18]:.1f} ms over "
        f"{len(ms)} batches ({cpu:.1f} ms CPU each); load {load()}")

    # new users/items: primary-key lookups (append) vs an anti-join with the events table
    cur = store.cursor()
    cur.register("b", frames[-1])
    for label, sql in (
            ("the id table's key (INSERT OR IGNORE, rolled back)",
             f"INSERT OR IGNORE INTO \"live__{name}__ids\" SELECT DISTINCT 'u', user_id "
             "FROM b"),
            ("anti-join with the events table",
             f"SELECT count(*) FROM (SELECT DISTINCT user_id FROM b) x WHERE NOT EXISTS "
             f"(SELECT 1 FROM {events_table(name)} e WHERE e.user_id = x.user_id)")):
        runs = []
        for _ in range(20):
            cur.execute("BEGIN")
            t = time.perf_counter()
            cur.execute(sql).fetchall()
            runs.append((time.perf_counter() - t) * 1000)
            cur.execute("ROLLBACK")
        say(f"new users, {label}: median {statistics.median(runs):.1f} ms")
    cur.close()

    # the writer: threads posting batches of 100 as fast as they can
    stop = time.monotonic() + args.seconds
    sent = [0] * args.threads
    errors: list[str] = []
    stats0 = writer.stats()

    def post(i: int) -> None:
        k = 10_000 + i * 1_000_000
        while time.monotonic() < stop:
            try:
                writer.append(name, records(places, start, k, users))
                sent[i] += 100
            except Exception as exc:  # noqa: BLE001 - counted and shown
                errors.append(f"{type(exc).__name__}: {exc}")
            k += 1

    rows0 = store.info(name).rows
    t, c = time.perf_counter(), time.process_time()
    pool = [threading.Thread(target=post, args=(i,)) for i in range(args.threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    s = writer.stats()
    groups = s["groups"] - stats0["groups"]
    stored = store.info(name).rows - rows0
    commit_ms = (s["commit_ms_total"] - stats0["commit_ms_total"]) / max(groups, 1)
    say(f"writer, {args.threads} threads x batches of 100 for {dt:.1f} s: "
        f"{sum(sent) / dt:,.0f} events/s ({sum(sent):,} sent, {stored:,} stored, "
        f"{len(errors)} errors); {groups} groups of {sum(sent) / max(groups, 1):.0f} events "
        f"on average, commit {commit_ms:.0f} ms mean, {s['commit_ms_max']:.0f} ms max; "
        f"{cpu / max(sum(sent), 1) * 1e6:.0f} us CPU per event (validate + commit); "
        f"load {load()}")
    if errors:
        say(f"first error: {errors[0]}")
    # the folder may still fold, and may have started a summary rebuild: the store closes
    # after them (closing it under them failed the run)
    writer.wait_idle(120)
    for job in jobs.jobs(active_only=True):
        jobs.wait(job["id"], 300)
    workspace.close_store()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

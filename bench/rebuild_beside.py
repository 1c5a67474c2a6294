"""Appends beside one background summary rebuild, with the old locking and the new.

On a sample city (``trailscope sample``, about 107k events) a thread appends batches of 100
real events (new times) through ``analytics.append.append`` while one summary rebuild runs
the way ``app/services/live.rebuild_if_needed`` runs it: under ``append.write_lock`` (both
locks: before #14's rebuild beside appends) or ``append.fold_lock`` (now). Reported per mode:
the rebuild's seconds, the appends that began and committed inside it, the worst append
latency, and whether the summary counts every stored event after one fold.

    .venv/bin/python -m bench.rebuild_beside [--users 556]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
from trailscope.analytics import append as ap
from trailscope.analytics import schema
from trailscope.analytics.rollups import build, incremental, tables
from trailscope.analytics.store import Store

from .stream_bench import cli

NAME = "live"
BATCH = 100
POOL = 2000


def run(users: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rebuild-beside-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        _run(home, users)


def _run(home: Path, users: int) -> None:
    cli(home, "sample", "--users", str(users), "--name", NAME, "--json")
    store = Store(next(home.rglob("*.duckdb")))
    con = store.cursor()
    build.rebuild(con, NAME)
    pool = con.execute(f"SELECT * FROM {store.table(NAME)} USING SAMPLE {POOL} ROWS "
                       "(reservoir, 3)").df()[list(schema.COLUMNS)]
    made = [0]

    def batch() -> pd.DataFrame:
        k = made[0]
        made[0] += 1
        start = (k * BATCH) % POOL
        frame = pool.iloc[start:start + BATCH].copy()
        frame[schema.TS] = pd.Timestamp("2030-01-01") + pd.Timedelta(minutes=k)
        return frame

    for mode, lock in (("old: append.write_lock", ap.write_lock()),
                       ("new: append.fold_lock", ap.fold_lock)):
        for _ in range(60):  # some events behind, as when the writer starts a rebuild
            ap.append(store, NAME, batch(), fold=False)
        ap.fold_summaries(store, NAME)
        stop, done = threading.Event(), []

        def appender(stop: threading.Event, done: list[tuple[float, float, int]]) -> None:
            while not stop.is_set():
                began = time.perf_counter()
                got = ap.append(store, NAME, batch(), fold=False)
                done.append((began, time.perf_counter(), got.stored))

        thread = threading.Thread(target=appender, args=(stop, done))
        thread.start()
        time.sleep(0.5)
        with lock:
            t0 = time.perf_counter()
            build.rebuild(con, NAME)
            t1 = time.perf_counter()
            incremental.settle(con, NAME)
        time.sleep(0.5)
        stop.set()
        thread.join()
        ap.fold_summaries(store, NAME)
        inside = [n for b, e, n in done if t0 < b and e < t1]
        rows = store.info(NAME).rows
        exact = tables.Rollup(con, NAME).summary()["events"] == rows
        print(f"{mode}: rebuild {t1 - t0:.2f} s at {rows:,} events; appends begun and "
              f"committed inside it: {len(inside)} ({sum(inside):,} events, "
              f"{sum(inside) / (t1 - t0):,.0f} ev/s); worst append latency "
              f"{max(e - b for b, e, _ in done):.2f} s; summary equals the registry after a "
              f"fold: {exact}; load average {os.getloadavg()[0]:.1f}", flush=True)
    store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=556, help="residents of the sample city")
    run(p.parse_args().users)


if __name__ == "__main__":
    main()

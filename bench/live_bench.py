"""Post-to-visible time of a live event, in headless chromium, on a sample dataset.

    python -m bench.live_bench --events 1000000 [10000000] [--repeat 3]
    python -m bench.live_bench --events 10000000 --apply 20 [--size 100]

For each size it reuses (or makes) bench.browser_bench's sample workspace, copies it to
bench/out/live_bench_<n>/ (the posts change it), brings its summaries up to date, serves it
and, ``repeat`` times: posts one event through ``POST /api/v1/datasets/bench/events``
(timed: the append with the incremental summary update), then opens the Overview and waits
until its headline event count shows the new total (post to visible), then waits until the
Live page's feed (open in a second tab, refreshing every 3 s) shows the event. ``--apply N``
times N in-process appends instead (the write path and its incremental summary update).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

from bench.analytics_bench import OUT_DIR
from bench.browser_bench import workspace

DATASET = "bench"
KPI_JS = """label => { for (const k of document.querySelectorAll('.kpi')) {
    if (k.querySelector('.kpi-label').textContent.trim() === label)
        return k.querySelector('.kpi-value').textContent.trim(); } return null; }"""


def live_home(n_events: int, seed: int) -> Path:
    """A copy of the browser bench's workspace with up-to-date summaries."""
    from trailscope.analytics.rollups import build
    from trailscope.analytics.store import DB_FILENAME, Store

    home = OUT_DIR / f"live_bench_{n_events}_{seed}"
    if not (home / DB_FILENAME).is_file():
        src = workspace(n_events, seed, OUT_DIR)
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / DB_FILENAME, home / DB_FILENAME)
    store = Store(home / DB_FILENAME)
    try:
        cur = store.cursor()
        t0 = time.perf_counter()
        build.ensure(cur, DATASET)
        print(f"  summaries ready in {time.perf_counter() - t0:.1f} s", flush=True)
        cur.close()
    finally:
        store.close()
    return home


def post(url: str, event: dict) -> dict:
    req = urllib.request.Request(f"{url}/api/v1/datasets/{DATASET}/events",
                                 data=json.dumps([event]).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def run(n_events: int, repeat: int, seed: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve

    home = live_home(n_events, seed)
    rows = []
    with serve(home, {"TRAILSCOPE_BASEMAP": "blank"}) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            overview, live = context.new_page(), context.new_page()
            overview.set_default_timeout(300_000)
            live.set_default_timeout(300_000)
            overview.goto(f"{url}/overview?dataset={DATASET}")
            overview.wait_for_function(f"() => ({KPI_JS})('Events') !== null")
            live.goto(f"{url}/live?dataset={DATASET}")
            live.wait_for_selector("#live-feed")
            for k in range(repeat + 1):   # the first round warms the server's caches
                user = f"live-bench-{k}-{time.time_ns()}"
                t0 = time.perf_counter()
                got = post(url, {"user_id": user, "item_id": "live-bench-item",
                                 "ts": "2024-03-01T12:00:00Z", "lat": 52.52, "lon": 13.40,
                                 "category": "Cafe"})
                t_post = time.perf_counter() - t0
                want = f"{got['rows']:,}"
                overview.goto(f"{url}/overview?dataset={DATASET}")
                overview.wait_for_function(f"w => ({KPI_JS})('Events') === w", arg=want)
                t_overview = time.perf_counter() - t0
                live.wait_for_function("u => document.getElementById('live-feed')"
                                       "?.textContent.includes(u)", arg=user)
                t_live = time.perf_counter() - t0
                overview.wait_for_load_state("networkidle")  # its charts done before the next
                if k:
                    rows.append({"events": n_events, "post_s": t_post,
                                 "overview_s": t_overview, "live_s": t_live,
                                 "load": os.getloadavg()[0]})
                    print(f"  {n_events:,}: post {t_post * 1000:.0f} ms, Overview shows it "
                          f"after {t_overview:.2f} s, Live feed after {t_live:.2f} s "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
            context.close()
        finally:
            browser.close()
    return rows


def time_apply(n_events: int, seed: int, batches: int, size: int) -> None:
    """Append ``batches`` batches of ``size`` events in process (analytics.append.append, as
    the server's writer does) and time the whole append and its incremental.apply."""
    from trailscope.analytics import append
    from trailscope.analytics.rollups import incremental
    from trailscope.analytics.store import DB_FILENAME, Store

    home = live_home(n_events, seed)
    store = Store(home / DB_FILENAME)
    inner, spent, cpu = incremental.apply, [], []

    def timed(cur, name, batch):
        t0, c0 = time.perf_counter(), time.process_time()
        done = inner(cur, name, batch)   # False: the set was not fresh (the fold drops it)
        spent.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)   # all threads: what the work costs, load aside
        return done

    incremental.apply = timed
    totals = []
    try:
        for k in range(batches + 1):   # the first append builds the live id tables
            frame = append.validate([
                {"user_id": f"apply-bench-{k}-{i % 37}" if i % 2 else f"u{i * 7919 % 5000}",
                 "item_id": f"i{i}", "ts": f"2024-03-01T12:{k % 60:02d}:{i % 60:02d}Z",
                 "lat": 52.45 + i / 1000, "lon": 13.35 + i / 1000, "category": "Cafe"}
                for i in range(size)])
            t0 = time.perf_counter()
            append.append(store, DATASET, frame)
            if k:
                totals.append(time.perf_counter() - t0)
    finally:
        incremental.apply = inner
        store.close()
    ms = sorted(x * 1000 for x in spent[1:])
    cpu_ms = sorted(x * 1000 for x in cpu[1:])
    tot = sorted(x * 1000 for x in totals)
    print(f"{n_events:,} events, {batches} batches of {size}: incremental.apply median "
          f"{ms[len(ms) // 2]:.1f} ms wall (min {ms[0]:.1f}, max {ms[-1]:.1f}), "
          f"{cpu_ms[len(cpu_ms) // 2]:.1f} ms CPU (min {cpu_ms[0]:.1f}); whole append median "
          f"{tot[len(tot) // 2]:.1f} ms; load {os.getloadavg()[0]:.1f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--apply", type=int, default=0, metavar="BATCHES",
                    help="only time BATCHES in-process appends of --size events each")
    ap.add_argument("--size", type=int, default=100)
    args = ap.parse_args(argv)
    if args.apply:
        for n in args.events:
            time_apply(n, args.seed, args.apply, args.size)
        return 0
    for n in args.events:
        rows = run(n, args.repeat, args.seed)
        med = sorted(r["overview_s"] for r in rows)[len(rows) // 2]
        print(f"{n:,} events: median post to Overview {med:.2f} s, post "
              f"{sorted(r['post_s'] for r in rows)[len(rows) // 2] * 1000:.0f} ms, "
              f"Live feed {sorted(r['live_s'] for r in rows)[len(rows) // 2]:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Browser bench: how long the dashboard's pages take to draw in headless Chromium, beside the
time the server spent answering them, on generated datasets of a given size.

    python -m bench.browser_bench --events 1000000 10000000 --pages map [--repeat 3]

For each size it generates sample events and loads them into a fresh workspace under
bench/out/ (``bench.analytics_bench.load``, then the summary tables an import builds; a
workspace already there for that size and seed is reused), starts the real server on it
(``tests.browser.conftest.serve``, blank basemap: no network) and opens each page in
Chromium (/usr/bin/chromium, the browser tests' flags). One cold visit fills the server's
caches; then ``--repeat`` warm visits, the best of which is printed:

* browser s: navigation start to the page's content drawn (for the Map page, the map's
  ``data-drawn`` mark: the first frame in which every layer of the map has loaded);
* server s: the longest Dash callback answered before the page was drawn, request sent to
  first byte back (what the page waited for; the Map page's zones come after its map);
* sent KB: bytes of those callback responses (what the browser parsed to draw).

Adding a page: write ``time_<page>(page, url) -> Visit`` and add it to ``PAGES``.

``--layer-cost``: what each deck.gl layer type of the Map page costs the browser's main
thread. Every visit is a fresh browser context (no shader cache); the map spec is cut on its
way to the page (all layers; without one type; none), and a PerformanceObserver collects the
long tasks (> 50 ms): when the last one ends and their sum after the first second, beside the
map's ``data-drawn``. In a browser without a GPU the sums are deck.gl's software WebGL
compiling each layer type's shaders.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analytics_bench import OUT_DIR, load

DATASET = "bench"  # the name analytics_bench.load stores the events under
GOAL_S = 2.0       # issue #13: each page drawn within 2 s, warm


@dataclass
class Visit:
    """One page visit: browser time to drawn, the server's longest callback, bytes sent."""

    browser_s: float
    server_s: float
    sent_bytes: int
    note: str = ""


class CallbackLog:
    """Dash callback responses of a page: server time (request sent to first byte) and size."""

    def __init__(self, page: Any) -> None:
        self.calls: list[tuple[float, float, int]] = []
        page.on("requestfinished", self._finished)

    def _finished(self, request: Any) -> None:
        if "_dash-update-component" not in request.url:
            return
        t = request.timing
        if t.get("responseStart", -1) < 0 or t.get("requestStart", -1) < 0:
            return
        try:
            size = request.sizes()["responseBodySize"]
        except Exception:  # noqa: BLE001 - a size Chromium did not report counts as 0
            size = 0
        # (epoch ms when the answer was in, server ms: request sent to first byte, bytes)
        self.calls.append((t["startTime"] + t["responseEnd"],
                           t["responseStart"] - t["requestStart"], size))

    def clear(self) -> None:
        self.calls = []

    def before(self, epoch_ms: float) -> tuple[float, int]:
        """(longest server time in s, bytes) of the callbacks answered by ``epoch_ms``."""
        done = [c for c in self.calls if c[0] <= epoch_ms]
        return max((c[1] for c in done), default=0.0) / 1000, sum(c[2] for c in done)


# -- pages -------------------------------------------------------------------------------------
MAP_CANVAS = '[id=\'{"id":"map-deck","type":"trailscope-deck-canvas"}\']'


def time_map(page: Any, url: str, log: CallbackLog, timeout_ms: int = 300_000) -> Visit:
    """The Map page: navigation start to the map's layers drawn (``data-drawn``)."""
    log.clear()
    page.goto(f"{url}/map?dataset={DATASET}", wait_until="commit")
    page.wait_for_selector(f"{MAP_CANVAS}[data-drawn]", state="attached", timeout=timeout_ms)
    drawn_ms = float(page.get_attribute(MAP_CANVAS, "data-drawn"))
    origin = page.evaluate("performance.timeOrigin")
    layers = page.evaluate("k => (window.trailscopeDeck.maps[k] || {base: []}).base.length",
                           '{"id":"map-deck","type":"trailscope-deck-canvas"}')
    page.wait_for_load_state("networkidle", timeout=timeout_ms)
    server_s, sent = log.before(origin + drawn_ms)
    return Visit(drawn_ms / 1000, server_s, sent, f"{layers} layers")


#: page name -> timing function; each takes (page, base url, callback log).
PAGES: dict[str, Callable[[Any, str, CallbackLog], Visit]] = {"map": time_map}


# -- data --------------------------------------------------------------------------------------
def workspace(n_events: int, seed: int, workdir: Path) -> Path:
    """A TRAILSCOPE_HOME holding ``n_events`` sample events as dataset ``bench`` with its summary
    tables (reused when a previous run left one)."""
    from trailscope.analytics.rollups import build
    from trailscope.analytics.store import DB_FILENAME

    home = workdir / f"browser_bench_{n_events}_{seed}"
    db = home / DB_FILENAME
    if (home / "ready").is_file() and db.is_file():
        refresh_summaries(db)
        return home
    shutil.rmtree(home, ignore_errors=True)
    store, ctx, load_s = load(n_events, seed, workdir)
    t0 = time.perf_counter()
    try:
        build.ensure(ctx.con, DATASET)
    finally:
        ctx.con.close()
        store.close()
    print(f"  generated {n_events:,} events: load {load_s:.1f} s, summary tables "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    home.mkdir(parents=True)
    made = workdir / f"analytics_bench_{n_events}_{seed}.duckdb"
    made.rename(db)
    made.with_suffix(".duckdb.wal").unlink(missing_ok=True)
    (home / "ready").write_text(f"{n_events} {seed}\n")
    return home


def refresh_summaries(db: Path) -> None:
    """Rebuild the summary tables of dataset ``bench`` in ``db`` when the code's summary
    set is newer than the stored one (a kept workspace would else have its pages computed
    from the raw events, as a fresh import never does)."""
    import duckdb
    from trailscope.analytics.rollups import build, tables

    con = duckdb.connect(str(db))
    try:
        if not tables.fresh(con, DATASET):
            t0 = time.perf_counter()
            build.ensure(con, DATASET)
            print(f"  summary tables of {db.parent.name} rebuilt (they were stale) in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        con.close()


# -- running -----------------------------------------------------------------------------------
def run(n_events: int, pages: list[str], repeat: int, seed: int,
        workdir: Path) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve

    home = workspace(n_events, seed, workdir)
    rows = []
    with serve(home, {"TRAILSCOPE_BASEMAP": "blank"}) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            for name in pages:
                context = browser.new_context(viewport={"width": 1360, "height": 900})
                page = context.new_page()
                log = CallbackLog(page)
                cold = PAGES[name](page, url, log)
                warm = [PAGES[name](page, url, log) for _ in range(repeat)]
                best = min(warm, key=lambda v: v.browser_s)
                rows.append({"events": n_events, "page": name, "cold": cold, "warm": best,
                             "load": os.getloadavg()[0]})
                context.close()
        finally:
            browser.close()
    return rows


def edit_callbacks(page: Any, edit: Callable[[Any], Any] | None, marker: bytes = b"") -> None:
    """Route ``page``'s Dash callback responses through the bench: those holding ``marker``
    are parsed, given to ``edit`` (which returns the JSON to send instead) and sent on;
    ``edit=None`` sends them unchanged, through the same route (a baseline timed alike)."""
    import json

    def handle(route: Any, request: Any = None) -> None:
        resp = route.fetch()
        body = resp.body()
        if edit is not None and marker in body:
            body = json.dumps(edit(json.loads(body))).encode()
        route.fulfill(response=resp, body=body)

    page.route(lambda u: "/_dash-update-component" in u, handle)


LONG_TASKS = ("window.__longTasks = []; new PerformanceObserver(list => { for (const e of "
              "list.getEntries()) window.__longTasks.push([e.startTime, e.duration]); })"
              ".observe({type: 'longtask', buffered: true});")


def _cut_layers(node: Any, drop: set[str], seen: set[str]) -> None:
    """Remove the layers of the types ``drop`` from every map spec inside ``node`` (a Dash
    response); the types met go into ``seen``."""
    if isinstance(node, dict):
        if isinstance(node.get("layers"), list) and "initialViewState" in node:
            seen.update(str(layer.get("@@type")) for layer in node["layers"])
            node["layers"] = [x for x in node["layers"] if x.get("@@type") not in drop]
        for value in node.values():
            _cut_layers(value, drop, seen)
    elif isinstance(node, list):
        for value in node:
            _cut_layers(value, drop, seen)


def layer_cost(n_events: int, seed: int, workdir: Path, rounds: int,
               settle_s: float = 4.0) -> None:
    """The ``--layer-cost`` mode (see the module doc); prints one line per visit."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, serve

    home = workspace(n_events, seed, workdir)
    with serve(home, {"TRAILSCOPE_BASEMAP": "blank"}) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)

        def visit(drop: set[str]) -> tuple[float, float, float, set[str]]:
            seen: set[str] = set()

            def cut(data: Any) -> Any:
                _cut_layers(data, drop, seen)
                return data

            context = browser.new_context(viewport={"width": 1360, "height": 900})
            page = context.new_page()
            page.add_init_script(LONG_TASKS)
            edit_callbacks(page, cut, b"initialViewState")
            page.goto(f"{url}/map?dataset={DATASET}", wait_until="commit")
            page.wait_for_selector(f"{MAP_CANVAS}[data-drawn]", state="attached",
                                   timeout=300_000)
            time.sleep(settle_s)   # long tasks still running when it was drawn
            drawn = float(page.get_attribute(MAP_CANVAS, "data-drawn")) / 1000
            tasks = page.evaluate("window.__longTasks")
            context.close()
            end = max((t + d for t, d in tasks), default=0.0) / 1000
            late = sum(d for t, d in tasks if t > 1000) / 1000
            return drawn, end, late, seen

        try:
            _, _, _, types = visit(set())   # a first visit: the layer types, caches warm
            variants = {"all layers": set(), **{f"without {t}": {t} for t in sorted(types)},
                        "no layers": set(types)}
            print(f"# Map page layer types: {', '.join(sorted(types))}; {rounds} round(s), "
                  f"{settle_s:g} s after data-drawn", flush=True)
            print("| variant | data-drawn s | long tasks end s | long tasks after 1 s, "
                  "sum s | load avg |")
            print("|---|---:|---:|---:|---:|")
            for _ in range(rounds):
                for name, drop in variants.items():
                    drawn, end, late, _ = visit(drop)
                    print(f"| {name} | {drawn:.2f} | {end:.2f} | {late:.2f} | "
                          f"{os.getloadavg()[0]:.1f} |", flush=True)
        finally:
            browser.close()


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"| events | page | browser s warm (goal < {GOAL_S:g}) | server s warm | sent KB warm "
          "| browser s cold | server s cold | load avg | note |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        w, c = r["warm"], r["cold"]
        print(f"| {r['events']:,} | {r['page']} | {w.browser_s:.2f} | {w.server_s:.2f} "
              f"| {w.sent_bytes / 1024:,.0f} | {c.browser_s:.2f} | {c.server_s:.2f} "
              f"| {r['load']:.1f} | {w.note} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--pages", nargs="+", default=list(PAGES), choices=list(PAGES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=OUT_DIR)
    ap.add_argument("--layer-cost", action="store_true",
                    help="the Map page's main-thread cost of each layer type (module doc)")
    args = ap.parse_args(argv)
    if args.layer_cost:
        for n in args.events:
            layer_cost(n, args.seed, args.workdir, args.repeat)
        return 0
    print(f"# browser bench: python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, headless chromium "
          f"(software WebGL), best of {args.repeat} warm visits after one cold", flush=True)
    rows = []
    for n in args.events:
        got = run(n, args.pages, args.repeat, args.seed, args.workdir)
        for r in got:
            print(f"  {n:,} events, {r['page']}: {r['warm'].browser_s:.2f} s in the browser, "
                  f"{r['warm'].server_s:.2f} s on the server (warm)", flush=True)
        rows += got
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Browser timings of the Overview, Users, Data and Models pages: navigation to the last graph
drawn, in headless Chromium, next to the time the server spent answering.

    python -m bench.browser_pages --events 1000000 [10000000] --pages overview,users,data,models
                                  [--repeat 3] [--seed 7] [--train] [--out FILE]

For each size the events come from ``bench.analytics_bench.load`` (the analytics bench's
generated city; its DuckDB file under bench/out/ is reused when it is already there), are
copied into a fresh workspace, get their summary tables (as an import builds them) and, with
``--train``, a markov and a pop model (for the Models page's table and inspection cards). Then
the real server (``python -m trailscope.app.main``, as the browser tests run it) serves that
workspace and Chromium opens each page:

* **cold**: the first visit after the server started (the service cache is empty);
* **warm**: the best of ``--repeat`` later visits, each in a fresh tab of the same browser (the
  assets are cached, the server's memoised answers too): the figure the issue's goal is about
  (every page < 2 s warm).

A page counts as drawn when Dash has booted, no component is loading, and every plotly graph
has its SVG with real data (not the "Loading…" placeholder); the time is ``performance.now()``
at that moment (milliseconds since navigation started). "server s" is how long at least one
request to the server was in flight before that moment; "browser s" is the rest (parsing,
rendering, drawing, and waiting for a CPU on a loaded machine); "main-thread CPU s" is the CPU
time the page's main thread used (CDP ThreadTime), which a busy machine inflates far less than
wall time; "KB" is what the page's callbacks sent. The browser tests
(tests/browser/test_page_times.py) use :func:`time_page` too.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GOAL_S = 2.0
DATASET = "bench"
TRAIN_MAX = 2_000_000  # --train trains on sizes up to this (10M would take an hour here)


@dataclass(frozen=True)
class PageSpec:
    path: str
    graphs: int          # plotly graphs the page draws with data
    ready: str = ""      # a selector that must be present as well (pages without graphs)
    maps: int = 0        # maps (DeckMap) the page draws with data


PAGES: dict[str, PageSpec] = {
    "overview": PageSpec("/overview", 4, ".kpi-row"),
    "users": PageSpec("/users", 3, "#users-changers table, #users-changers p.hint", maps=1),
    "data": PageSpec("/data", 0, "#data-datasets-table table"),
    "models": PageSpec("/models", 0, "#models-recs tbody tr, #models-table .empty-state"),
}

#: True once the page is drawn: Dash booted, nothing loading, ``n`` graphs drawn with data,
#: ``sel`` present, ``m`` maps drawn and none waiting for its first frame of a new spec
#: (assets/deckmap.js marks them); returns ``performance.now()`` then (a function: the CSP
#: forbids eval).
DRAWN_JS = """([n, sel, m]) => {
  if (!document.getElementById('shell-navbar') || document.querySelector('._dash-loading'))
    return false;
  if (document.querySelector('[data-dash-is-loading="true"], .dash-spinner, .dash-loading'))
    return false;
  if (sel && !document.querySelector(sel)) return false;
  if (document.querySelectorAll('.trailscope-deckmap[data-drawn]').length < m ||
      document.querySelector('.trailscope-deckmap[data-pending]')) return false;
  const g = [...document.querySelectorAll('.js-plotly-plot')].filter(e => e.offsetParent);
  const drawn = g.every(e => e.querySelector('.main-svg') && !e.textContent.includes('Loading…'));
  return g.length >= n && drawn ? performance.now() : false;
}"""


@dataclass
class Timing:
    page: str
    drawn_s: float
    server_s: float
    kb: float
    task_s: float = 0.0      # renderer main-thread busy time (CDP TaskDuration)
    script_s: float = 0.0    # of which running JavaScript (CDP ScriptDuration)
    cpu_s: float = 0.0       # main-thread CPU time (CDP ThreadTime): steadier under load
    errors: list[str] = field(default_factory=list)

    @property
    def browser_s(self) -> float:
        return max(self.drawn_s - self.server_s, 0.0)


def _in_flight(spans: list[tuple[float, float]], until: float) -> float:
    """Length of the union of ``spans`` (start, end in ms) cut at ``until``."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        a, b = max(a, end), min(b, until)
        if b > a:
            total += b - a
        end = max(end, b)
    return total


def time_page(page: Any, url: str, key: str, timeout_ms: int = 120_000) -> Timing:
    """Open ``url`` (a ``PAGES[key]`` page) in the Playwright ``page`` and time it until drawn.

    Console errors and uncaught page errors land in ``Timing.errors``."""
    spec = PAGES[key]
    spans: list[tuple[float, float]] = []
    sizes: list[int] = []
    errors: list[str] = []

    def finished(req: Any) -> None:
        t = req.timing
        if t["startTime"] > 0 and t["responseEnd"] >= 0:
            spans.append((t["startTime"], t["startTime"] + t["responseEnd"]))
        if "_dash-update-component" in req.url:
            sizes.append(req.sizes()["responseBodySize"])

    def console(m: Any) -> None:
        if m.type == "error":
            errors.append(f"console: {m.text}")

    page.on("requestfinished", finished)
    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    page.goto(url)
    drawn_ms = page.wait_for_function(DRAWN_JS, arg=[spec.graphs, spec.ready, spec.maps],
                                      polling="raf",
                                      timeout=timeout_ms).json_value()
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    origin = page.evaluate("() => performance.timeOrigin")
    page.wait_for_load_state("networkidle")
    page.remove_listener("requestfinished", finished)
    server = _in_flight([(a - origin, b - origin) for a, b in spans], drawn_ms)
    cdp.detach()
    return Timing(key, drawn_ms / 1000, server / 1000, sum(sizes) / 1024,
                  metrics.get("TaskDuration", 0.0), metrics.get("ScriptDuration", 0.0),
                  metrics.get("ThreadTime", 0.0), errors)


# -- workspace and server ------------------------------------------------------------------
def prepare_home(n_events: int, seed: int, home: Path, train: bool) -> float:
    """A workspace at ``home`` holding ``n_events`` generated events as dataset ``bench``
    with its summary tables (and a markov and a pop model with ``train``); returns seconds.

    The events and summary tables are the Map bench's (``bench.browser_bench.workspace``:
    ``bench.analytics_bench.load`` then the summary build, kept under bench/out/); the models
    are trained on a copy kept under bench/out/ too, so a second run copies both."""
    from trailscope.analytics.store import DB_FILENAME, Store

    from bench import analytics_bench, browser_bench

    t0 = time.perf_counter()
    prepared = analytics_bench.OUT_DIR / f"browser_pages_{n_events}_{seed}_models"
    if not train:
        prepared = browser_bench.workspace(n_events, seed, analytics_bench.OUT_DIR)
    elif _has_dataset(prepared / DB_FILENAME):
        browser_bench.refresh_summaries(prepared / DB_FILENAME)
    else:
        events = browser_bench.workspace(n_events, seed, analytics_bench.OUT_DIR)
        shutil.rmtree(prepared, ignore_errors=True)
        prepared.mkdir(parents=True)
        shutil.copyfile(events / DB_FILENAME, prepared / DB_FILENAME)
        with Store(prepared / DB_FILENAME) as store:
            from trailscope.models import api
            for model in ("pop", "markov"):
                api.train(store, DATASET, model=model, log=lambda _m: None)
    shutil.copytree(prepared, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("ready"))
    return time.perf_counter() - t0


def _has_dataset(db: Path) -> bool:
    from trailscope.analytics.store import Store, StoreError

    if not db.exists():
        return False
    try:
        with Store(db) as store:
            return store.exists(DATASET)
    except (StoreError, OSError):
        return False


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian chromium with the browser tests' flags."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def measure(browser: Any, base: str, pages: list[str], repeat: int,
            dataset: str = DATASET, width: int = 1440,
            timeout_ms: int = 180_000) -> list[dict[str, Any]]:
    """Cold and warm timings of ``pages`` on a running server at ``base``; a visit not
    drawn within ``timeout_ms`` counts as infinitely slow, with an error saying so."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    context = browser.new_context(viewport={"width": width, "height": 900})
    rows = []
    try:
        for key in pages:
            url = f"{base}{PAGES[key].path}?dataset={dataset}"
            runs = []
            for _ in range(repeat + 1):
                tab = context.new_page()
                try:
                    runs.append(time_page(tab, url, key, timeout_ms))
                except PlaywrightTimeout:
                    runs.append(Timing(key, float("inf"), 0.0, 0.0, errors=[
                        f"not drawn in {timeout_ms / 1000:.0f} s"]))
                tab.close()
            cold, warm = runs[0], min(runs[1:], key=lambda t: t.drawn_s)
            rows.append({"page": key, "cold": cold, "warm": warm,
                         "errors": sorted({e for t in runs for e in t.errors})})
    finally:
        context.close()
    return rows


def print_rows(n_events: int, rows: list[dict[str, Any]], out: Any) -> None:
    print(f"\n## {n_events:,} events\n", file=out)
    print(f"| page | cold drawn s | warm drawn s | warm server s | warm browser s "
          f"| warm renderer busy s (JS) | warm main-thread CPU s | warm KB "
          f"| goal warm < {GOAL_S:g} s | console errors |", file=out)
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|", file=out)
    for r in rows:
        c, w = r["cold"], r["warm"]
        verdict = "met" if w.drawn_s < GOAL_S else "NOT met"
        print(f"| {r['page']} | {c.drawn_s:.2f} | {w.drawn_s:.2f} | {w.server_s:.2f} "
              f"| {w.browser_s:.2f} | {w.task_s:.2f} ({w.script_s:.2f}) | {w.cpu_s:.2f} "
              f"| {w.kb:,.0f} "
              f"| {verdict} | {len(r['errors'])} |", file=out)
    for r in rows:
        for e in r["errors"]:
            print(f"- {r['page']}: {e[:300]}", file=out)


class _Tee:
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, s: str) -> None:
        for st in self.streams:
            st.write(s)
            st.flush()


def main(argv: list[str] | None = None) -> int:
    from tests.browser.conftest import serve

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--pages", default=",".join(PAGES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--train", action="store_true",
                    help="train a markov and a pop model first (the Models page's cards), "
                         f"on sizes up to {TRAIN_MAX:,} events")
    ap.add_argument("--out", type=Path,
                    default=RESULTS / f"browser-pages-{date.today().isoformat()}.txt")
    args = ap.parse_args(argv)
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = sorted(set(pages) - set(PAGES))
    if unknown:
        ap.error(f"unknown page(s) {', '.join(unknown)}; pages: {', '.join(PAGES)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        out = _Tee(sys.stdout, fh)
        print(f"# browser pages bench: python {platform.python_version()}, "
              f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f} at the start, headless chromium at 1440x900, "
              f"warm = best of {args.repeat}", file=out)
        for n in args.events:
            with tempfile.TemporaryDirectory(prefix="browser_pages_") as tmp:
                home = Path(tmp)
                train = args.train and n <= TRAIN_MAX
                prep_s = prepare_home(n, args.seed, home, train)
                print(f"\nworkspace ready in {prep_s:.1f} s (summary tables"
                      f"{', markov and pop models' if train else '; no trained model'})",
                      file=out)
                with serve(home, {"TRAILSCOPE_BASEMAP": "blank"}) as base, chromium() as browser:
                    rows = measure(browser, base, pages, args.repeat)
                print_rows(n, rows, out)
                print(f"load average {os.getloadavg()[0]:.1f} after this size", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Analytics benchmark: the dashboard pages' queries (DuckDB, our analytics) against plain pandas.

    python -m bench.analytics_bench --events 1000000 [10000000] [--repeat 3] [--seed 7]

For each size it generates sample events (analytics.sample.iter_event_chunks), loads them
once into a fresh DuckDB workspace under bench/out/, reads the same events into one pandas
DataFrame, then times every entry of ``QUERIES`` both ways in the same process:

* engine: the analytics function on the stored dataset (an Ibis table, or the SQL table name
  for the spatial functions), exactly what the dashboard runs; it answers from the dataset's
  rollup (analytics/rollups/) where it can, results back as pandas DataFrames;
* baseline: the same computation written in plain pandas on the in-memory DataFrame (the
  load into memory is not timed, which favours the baseline).

The rollup is built right after the load, as an import does (``trailscope import``, the
Data page), and its build time printed on its own line. The engine's first call is timed on
its own as the *cold* time: every first call reads tables DuckDB has not cached yet.
Then each side runs ``--repeat`` more times and the best
is the *warm* time. Ratios and goals use warm times; cold times are shown next to them. The
results are compared (``check``) so a fast but wrong query shows up as MISMATCH. Printed:
one row per query (ratio = engine / baseline wall time, goal <= 0.25; CPU seconds of all
threads, steadier than wall time on a shared machine), then the totals per dashboard page
(goal: < 1 s at 10M events for Overview, Map and Users; Time and Evolution are groups of
analytics no page calls as such).

Adding queries: append ``BenchQuery(name, page, engine, baseline, check)`` to ``QUERIES``;
``engine`` and ``baseline`` take the ``Context``; ``check`` takes both results and returns
True when they agree. The Map page's entries come from ``bench.geo_bench.entries()``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from trailscope.analytics import schema

from bench.analytics_pandas import (
    SESSION_GAP,
    pd_active_users,
    pd_churn_features,
    pd_cohorts,
    pd_daily,
    pd_interval_hist,
    pd_kpis,
    pd_profiles,
    pd_rhythm,
    pd_session_summary,
)

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
RATIO_GOAL = 0.25
PAGE_GOALS_S = {"Overview": 1.0, "Map": 1.0, "Users": 1.0}


@dataclass
class Context:
    """What the queries run on: the Ibis events table, the same events in pandas, extras."""

    events: Any                 # Ibis table of the stored dataset (DuckDB)
    df: pd.DataFrame            # the same events in memory
    con: Any = None             # a DuckDB cursor on the workspace (spatial SQL functions)
    table: str = ""             # the dataset's quoted table name
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchQuery:
    name: str
    page: str
    engine: Callable[[Context], Any]
    baseline: Callable[[Context], Any]
    check: Callable[[Any, Any], bool]
    note: str = ""




def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                      check_dtype=False)
    except AssertionError:
        return False
    return True


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same rows in any order of ties (sorted by every column first)."""
    cols = list(a.columns)
    return len(a) == len(b) and _frames_equal(a.sort_values(cols), b[cols].sort_values(cols))


def _map_queries() -> list[BenchQuery]:
    from trailscope.analytics.geo import with_coords
    from trailscope.analytics.rollups import spatial as r_space

    from bench import geo_bench

    return [
        BenchQuery("heat points (25,000 drawn)", "Map",
                   lambda c: r_space.sample_points_sql(c.con, c.table, 25_000),
                   lambda c: with_coords(c.df)[[schema.LAT, schema.LON, schema.TS,
                                                schema.CATEGORY]].sample(25_000, random_state=0),
                   lambda a, b: len(a) == len(b) == 25_000,
                   note="a hash order in DuckDB, a seeded sample in pandas: not the same rows"),
        *(BenchQuery(name + (", stored at import" if name.startswith("paths") else ""), "Map",
                     lambda c, f=duck: f(c.con, c.table, c.df, c.extra),
                     lambda c, f=base: f(c.con, c.table, c.df, c.extra), _frames_equal,
                     note="DuckDB side: one read of the Map page's default paths, computed by "
                          "the summary build; pandas: user_paths on the sampled users' events"
                     if name.startswith("paths") else "")
          for name, duck, base in geo_bench.entries()),
    ]


# -- the queries ---------------------------------------------------------------------------
def _eq_sum(col_a: str, col_b: str | None = None) -> Callable[[Any, Any], bool]:
    return lambda a, b: len(a) == len(b) and int(a[col_a].sum()) == int(b[col_b or col_a].sum())


def _approx_users(a: pd.DataFrame, b: pd.DataFrame, tolerance: float = 0.08) -> bool:
    """Same events per row, HyperLogLog users within ``tolerance`` of the exact count."""
    exact = b["users"].to_numpy(dtype=float)
    err = np.abs(a["users"].to_numpy(dtype=float) - exact) / np.maximum(exact, 1)
    return a["events"].tolist() == b["events"].tolist() and bool((err <= tolerance).all())


def _queries() -> list[BenchQuery]:
    from trailscope.analytics.rollups import temporal as r_time
    from trailscope.analytics.rollups import users as r_users

    from bench import users_bench

    def churn_cut(c: Context) -> tuple[pd.Timestamp, pd.Timedelta]:
        return c.extra["last_ts"] - pd.Timedelta(days=14), pd.Timedelta(days=14)

    return [
        BenchQuery("kpis", "Overview", lambda c: r_time.kpis(c.events),
                   lambda c: pd_kpis(c.df),
                   lambda a, b: int(a["users"][0]) == int(b["users"][0])
                   and int(a["items"][0]) == int(b["items"][0])),
        BenchQuery("trend (daily events, users)", "Overview",
                   lambda c: r_time.activity_series(c.events, "day", users="approx"),
                   lambda c: pd_daily(c.df), _approx_users,
                   note="users='approx': exact from the rollup, HyperLogLog on raw tables"),
        BenchQuery("rhythm 7x24 (local time, events)", "Overview",
                   lambda c: r_time.rhythm_matrix(c.events, users=None),
                   lambda c: pd_rhythm(c.df, users=False),
                   lambda a, b: a["events"].tolist() == b["events"].tolist()),
        BenchQuery("cohorts weekly", "Overview",
                   lambda c: r_time.cohort_retention(c.events, "week"),
                   lambda c: pd_cohorts(c.df), _eq_sum("users")),
        BenchQuery("trend, exact users", "Time",
                   lambda c: r_time.activity_series(c.events, "day"),
                   lambda c: pd_daily(c.df), _eq_sum("users")),
        BenchQuery("rhythm 7x24, exact users", "Time",
                   lambda c: r_time.rhythm_matrix(c.events),
                   lambda c: pd_rhythm(c.df),
                   lambda a, b: a["events"].tolist() == b["events"].tolist()
                   and a["users"].tolist() == b["users"].tolist()),
        BenchQuery("active/new/returning weekly", "Time",
                   lambda c: r_time.active_users(c.events, "week", fill=False),
                   lambda c: pd_active_users(c.df), _eq_sum("new_users", "new")),
        BenchQuery("session summary (30 min gap)", "Time",
                   lambda c: r_time.session_summary(c.events, SESSION_GAP),
                   lambda c: pd_session_summary(c.df),
                   lambda a, b: int(a["sessions"][0]) == int(b["sessions"][0])
                   and a["median_duration_s"][0] == b["median_duration_s"][0]),
        BenchQuery("interval histogram (log)", "Time",
                   lambda c: r_time.interval_histogram(c.events),
                   lambda c: pd_interval_hist(c.df), _eq_sum("count")),
        BenchQuery("interest profiles monthly", "Evolution",
                   lambda c: r_users.interest_profiles(c.events, "month"),
                   lambda c: pd_profiles(c.df), _eq_sum("events")),
        BenchQuery("churn features + labels", "Evolution",
                   lambda c: r_users.churn_features(c.events, *churn_cut(c)),
                   lambda c: pd_churn_features(c.df, *churn_cut(c)),
                   lambda a, b: len(a) == len(b)
                   and int(a["churned"].sum()) == int(b["churned"].sum())),
        *_map_queries(),
        *users_bench.queries(),
    ]


QUERIES: list[BenchQuery] = []  # filled on first use (keeps `import bench...` light)


# -- running -------------------------------------------------------------------------------
def load(n_events: int, seed: int, workdir: Path) -> tuple[Any, Context, float]:
    """Generate ``n_events`` sample events into a fresh workspace; returns (store, ctx, s)."""
    from trailscope.analytics.engine import duckdb_backend, events_table
    from trailscope.analytics.sample.generate import iter_event_chunks
    from trailscope.analytics.store import Store

    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"analytics_bench_{n_events}_{seed}.duckdb"
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = Store(db)
    cur = store.cursor()
    cur.execute(schema.create_table_sql("staging").replace("CREATE TABLE",
                                                           "CREATE TEMP TABLE"))
    cols = ", ".join(schema.COLUMNS)
    for chunk in iter_event_chunks(n_events, seed, 1_000_000):
        cur.register("chunk", chunk[list(schema.COLUMNS)])
        cur.execute(f"INSERT INTO staging SELECT {cols} FROM chunk")
        cur.unregister("chunk")
    name = "bench"
    store.save_dataset(name, f"SELECT {cols} FROM staging", source="trailscope.analytics.sample",
                       fmt="sample", report={"rows": n_events}, con=cur)
    cur.close()
    load_s = time.perf_counter() - t0
    df = store.query_df(f"SELECT * FROM {store.table(name)}")
    ctx = Context(events=events_table(duckdb_backend(store), name), df=df,
                  con=store.cursor(), table=store.table(name))
    _extras(ctx)
    return store, ctx, load_s


def _extras(ctx: Context) -> None:
    """Inputs some queries take (not timed), computed on the raw table (before the rollup
    is built)."""
    from trailscope.analytics.geo import has_coords
    from trailscope.analytics.rollups import lookup
    from trailscope.analytics.spatial import zones_sql

    from bench import geo_bench

    df = ctx.df
    located = df[has_coords(df)]
    with lookup.disabled():
        # the Map page's parameters (app/services/maps.py: zones, flows between them, paths)
        ctx.extra["zone_params"] = zones_sql.page_zone_params(
            len(located), located[schema.TS].min(), located[schema.TS].max())
        ctx.extra["flow_gap"] = zones_sql.PAGE_FLOW_GAP
        ctx.extra["path_users"] = geo_bench.path_users(ctx.con, ctx.table)
        ctx.extra["zones"] = zones_sql.find_zones_sql(ctx.con, ctx.table,
                                                      **ctx.extra["zone_params"]).zones
    ctx.extra["located_first"] = pd.Timestamp(located[schema.TS].min())  # paths' reference
    ctx.extra["last_ts"] = pd.Timestamp(df[schema.TS].max())
    ctx.extra["user"] = str(df[schema.USER].value_counts().sort_index().idxmax())


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, all threads; result) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(best wall seconds, best CPU seconds; first result) of ``repeat`` calls after one
    warm-up call (whose result is returned)."""
    result = fn()
    runs = [timed(fn) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), result


def run(n_events: int, repeat: int, seed: int, workdir: Path) -> list[dict[str, Any]]:
    from trailscope.analytics.rollups import build

    if not QUERIES:
        QUERIES.extend(_queries())
    store, ctx, load_s = load(n_events, seed, workdir)
    print(f"\n## {n_events:,} events (load into DuckDB: {load_s:.1f} s; "
          f"{ctx.df[schema.USER].nunique():,} users)")
    rows = []
    try:
        t0 = time.perf_counter()  # what an import does after loading (app/cli.py, services)
        built = build.ensure(ctx.con, "bench") is not None
        build_s = time.perf_counter() - t0
        for q in QUERIES:
            cold_s, _, eng = timed(lambda q=q: q.engine(ctx))
            runs = [timed(lambda q=q: q.engine(ctx)) for _ in range(repeat)]
            base_s, base_cpu, base = best_of(lambda q=q: q.baseline(ctx), repeat)
            eng_s = min(r[0] for r in runs)
            rows.append({"events": n_events, "query": q.name, "page": q.page,
                         "cold_s": cold_s, "duckdb_s": eng_s, "pandas_s": base_s,
                         "ratio": eng_s / base_s, "ratio_cold": cold_s / base_s,
                         "duckdb_cpu_s": min(r[1] for r in runs), "pandas_cpu_s": base_cpu,
                         "check": "ok" if q.check(eng, base) else "MISMATCH", "note": q.note})
    finally:
        ctx.con.close()
        store.close()
    print(f"rollup build: {build_s:.2f} s (right after the load, as an import does; in no "
          "query's time)" if built else "rollup build: none (no rollup was built)")
    print_table(rows)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"| query | page | duckdb cold s | duckdb warm s | pandas s | ratio warm (goal <= "
          f"{RATIO_GOAL}) | ratio cold | duckdb CPU s | pandas CPU s | check |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        note = f" ({r['note']})" if r["note"] else ""
        print(f"| {r['query']}{note} | {r['page']} | {r['cold_s']:.3f} | {r['duckdb_s']:.3f} "
              f"| {r['pandas_s']:.3f} | {r['ratio']:.2f} | {r['ratio_cold']:.2f} "
              f"| {r['duckdb_cpu_s']:.3f} | {r['pandas_cpu_s']:.3f} | {r['check']} |")
    met = sum(r["ratio"] <= RATIO_GOAL for r in rows)
    print(f"\nratio goal (warm <= {RATIO_GOAL} x pandas): met by {met} of {len(rows)} queries; "
          f"cold: {sum(r['ratio_cold'] <= RATIO_GOAL for r in rows)} of {len(rows)}")
    totals = pd.DataFrame(rows).groupby("page", sort=False)[
        ["cold_s", "duckdb_s", "pandas_s"]].sum()
    print("\n| page total | duckdb cold s | duckdb warm s | pandas s | ratio warm | goal (warm) |")
    print("|---|---:|---:|---:|---:|---|")
    for page, t in totals.iterrows():
        goal = PAGE_GOALS_S.get(str(page))
        verdict = "(no page)" if goal is None else (
            f"< {goal:g} s: {'met' if t['duckdb_s'] < goal else 'NOT met'}")
        print(f"| {page} | {t['cold_s']:.3f} | {t['duckdb_s']:.3f} | {t['pandas_s']:.3f} "
              f"| {t['duckdb_s'] / t['pandas_s']:.2f} | {verdict} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    import duckdb

    print(f"# analytics bench: python {platform.python_version()}, duckdb {duckdb.__version__}, "
          f"pandas {pd.__version__}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, best of {args.repeat}")
    for n in args.events:
        run(n, args.repeat, args.seed, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

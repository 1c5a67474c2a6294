"""Analytics benchmark: TrailScope's engine queries (DuckDB via Ibis) against plain pandas.

    python -m bench.analytics_bench --events 1000000 [10000000] [--repeat 3] [--seed 7]

For each size it generates sample events (analytics.sample.iter_event_chunks), loads them
once into a DuckDB workspace under bench/out/, reads the same events into one pandas
DataFrame, then times every entry of ``QUERIES`` both ways in the same process:

* engine: the analytics function on an Ibis table of the stored dataset (what the dashboard
  runs), results back as a pandas DataFrame;
* baseline: the same computation written in plain pandas on the in-memory DataFrame (the
  load into memory is not timed, which favours the baseline).

Each is run ``--repeat`` times after one warm-up; the best time counts. The two results are
compared (``check``) so a fast but wrong query shows up as MISMATCH. Printed: one row per
query with ratio = engine / baseline wall time (goal <= 0.25) and each side's CPU seconds
(all threads; steadier than wall time on a shared machine), then the total per dashboard
page (goal for Overview: < 1 s at 10M events).

Adding queries: append ``BenchQuery(name, page, engine, baseline, check)`` to ``QUERIES``
(the spatial analytics add theirs the same way). ``engine`` and ``baseline`` take the
``Context``; ``check`` takes both results and returns True when they agree.
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

from analytics import schema

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "bench" / "out"
RATIO_GOAL = 0.25
PAGE_GOALS_S = {"Overview": 1.0}
FORECAST_HORIZON = 14
SESSION_GAP = pd.Timedelta("30min")


@dataclass
class Context:
    """What the queries run on: the Ibis events table, the same events in pandas, extras."""

    events: Any                 # Ibis table of the stored dataset (DuckDB)
    df: pd.DataFrame            # the same events in memory
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchQuery:
    name: str
    page: str
    engine: Callable[[Context], Any]
    baseline: Callable[[Context], Any]
    check: Callable[[Any, Any], bool]
    note: str = ""


# -- plain-pandas baselines ----------------------------------------------------------------
def _week_start(ts: pd.Series) -> pd.Series:
    day = ts.dt.floor("D")
    return day - pd.to_timedelta(day.dt.day_of_week, unit="D")


def pd_kpis(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"events": len(df), "users": df[schema.USER].nunique(),
                          "items": df[schema.ITEM].nunique(), "first_ts": df[schema.TS].min(),
                          "last_ts": df[schema.TS].max()}])


def pd_daily(df: pd.DataFrame) -> pd.DataFrame:
    out = df.groupby(df[schema.TS].dt.floor("D")).agg(
        events=(schema.USER, "size"), users=(schema.USER, "nunique"))
    full = pd.date_range(out.index.min(), out.index.max(), freq="D")
    return out.reindex(full, fill_value=0).rename_axis("period").reset_index()


def pd_rhythm(df: pd.DataFrame, users: bool = True) -> pd.DataFrame:
    offset = pd.to_timedelta(df[schema.TZ_OFFSET].fillna(0).astype("int64"), unit="m")
    local = df[schema.TS] + offset
    keys = [local.dt.day_of_week.rename("weekday"), local.dt.hour.rename("hour")]
    aggs = {"events": (schema.USER, "size")}
    if users:
        aggs["users"] = (schema.USER, "nunique")
    out = df.groupby(keys).agg(**aggs)
    grid = pd.MultiIndex.from_product([range(7), range(24)], names=["weekday", "hour"])
    return out.reindex(grid, fill_value=0).reset_index()


def pd_cohorts(df: pd.DataFrame) -> pd.DataFrame:
    ua = pd.DataFrame({"u": df[schema.USER], "p": _week_start(df[schema.TS])}).drop_duplicates()
    ua["cohort"] = ua.groupby("u")["p"].transform("min")
    ua["since"] = (ua["p"] - ua["cohort"]).dt.days // 7
    out = ua.groupby(["cohort", "since"]).size().rename("users").reset_index()
    size = out[out["since"] == 0].set_index("cohort")["users"]
    out["retention"] = out["users"] / out["cohort"].map(size)
    return out


def pd_active_users(df: pd.DataFrame) -> pd.DataFrame:
    ua = pd.DataFrame({"u": df[schema.USER], "p": _week_start(df[schema.TS])}).drop_duplicates()
    first = ua.groupby("u")["p"].transform("min")
    out = ua.assign(new=(ua["p"] == first)).groupby("p").agg(
        active=("u", "size"), new=("new", "sum"))
    out["returning"] = out["active"] - out["new"]
    return out.reset_index()


def _pd_gaps(df: pd.DataFrame) -> pd.DataFrame:
    s = df[[schema.USER, schema.ITEM, schema.TS]].sort_values([schema.USER, schema.TS])
    return s.assign(gap=s.groupby(schema.USER)[schema.TS].diff().dt.total_seconds())


def pd_sessions(df: pd.DataFrame) -> pd.DataFrame:
    s = _pd_gaps(df)
    new = s["gap"].isna() | (s["gap"] > SESSION_GAP.total_seconds())
    s = s.assign(session=new.astype("int64").groupby(s[schema.USER]).cumsum())
    return s.groupby([schema.USER, "session"]).agg(
        start=(schema.TS, "min"), end=(schema.TS, "max"), events=(schema.TS, "size"),
        items=(schema.ITEM, "nunique")).reset_index()


def pd_session_summary(df: pd.DataFrame) -> pd.DataFrame:
    per = pd_sessions(df)
    duration = (per["end"] - per["start"]).dt.total_seconds()
    n, users = len(per), per[schema.USER].nunique()
    return pd.DataFrame([{"sessions": n, "users": users, "sessions_per_user": n / users,
                          "events_per_session": per["events"].sum() / n,
                          "median_duration_s": float(duration.median()),
                          "single_event_share": float((per["events"] == 1).mean())}])


def pd_interval_hist(df: pd.DataFrame) -> pd.DataFrame:
    gap = _pd_gaps(df)["gap"].dropna()
    k = np.where(gap < 1, -1, np.floor(np.log10(gap.clip(lower=1)) * 4)).astype("int64")
    return pd.Series(k).value_counts().sort_index().rename("count").reset_index()


def pd_profiles(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df[schema.CATEGORY].notna()]
    month = d[schema.TS].dt.to_period("M").dt.start_time
    out = d.groupby([d[schema.USER], month.rename("period"), d[schema.CATEGORY]]).size() \
        .rename("events").reset_index()
    out["share"] = out["events"] / out.groupby([schema.USER, "period"])["events"].transform("sum")
    return out


def pd_churn_features(df: pd.DataFrame, cut: pd.Timestamp, window: pd.Timedelta,
                      windows: int = 4) -> pd.DataFrame:
    before = df[df[schema.TS] < cut]
    g = before.groupby(schema.USER)[schema.TS]
    out = pd.DataFrame({"last": g.max(), "first": g.min(), "n": g.size()})
    for i in range(1, windows + 1):
        ts = before[schema.TS]
        in_w = (ts >= cut - i * window) & (ts < cut - (i - 1) * window)
        out[f"freq_{i}"] = in_w.groupby(before[schema.USER]).sum()
    after = df[(df[schema.TS] >= cut) & (df[schema.TS] < cut + window)][schema.USER].unique()
    out["churned"] = ~out.index.isin(after)
    return out.reset_index()


# -- the queries ---------------------------------------------------------------------------
def _eq_sum(col_a: str, col_b: str | None = None) -> Callable[[Any, Any], bool]:
    return lambda a, b: len(a) == len(b) and int(a[col_a].sum()) == int(b[col_b or col_a].sum())


def _approx_users(a: pd.DataFrame, b: pd.DataFrame, tolerance: float = 0.08) -> bool:
    """Same events per row, HyperLogLog users within ``tolerance`` of the exact count."""
    exact = b["users"].to_numpy(dtype=float)
    err = np.abs(a["users"].to_numpy(dtype=float) - exact) / np.maximum(exact, 1)
    return a["events"].tolist() == b["events"].tolist() and bool((err <= tolerance).all())


def _queries() -> list[BenchQuery]:
    from analytics import churn, cohorts, evolution, forecast, sessions, temporal

    def churn_cut(c: Context) -> tuple[pd.Timestamp, pd.Timedelta]:
        return c.extra["last_ts"] - pd.Timedelta(days=14), pd.Timedelta(days=14)

    return [
        BenchQuery("kpis", "Overview", lambda c: temporal.kpis(c.events),
                   lambda c: pd_kpis(c.df),
                   lambda a, b: int(a["users"][0]) == int(b["users"][0])
                   and int(a["items"][0]) == int(b["items"][0])),
        BenchQuery("trend (daily events, users)", "Overview",
                   lambda c: temporal.activity_series(c.events, "day", users="approx"),
                   lambda c: pd_daily(c.df), _approx_users,
                   note="HyperLogLog users vs pandas' exact nunique"),
        BenchQuery("rhythm 7x24 (local time, events)", "Overview",
                   lambda c: temporal.rhythm_matrix(c.events, users=None),
                   lambda c: pd_rhythm(c.df, users=False),
                   lambda a, b: a["events"].tolist() == b["events"].tolist()),
        BenchQuery(f"forecast SARIMA {FORECAST_HORIZON}d", "Overview",
                   lambda c: forecast.forecast(c.extra["daily"], FORECAST_HORIZON),
                   lambda c: forecast.forecast(c.extra["daily"], FORECAST_HORIZON),
                   lambda a, b: np.allclose(a["forecast"], b["forecast"]),
                   note="same statsmodels fit both ways, on the daily series"),
        BenchQuery("cohorts weekly", "Overview",
                   lambda c: cohorts.cohort_retention(c.events, "week"),
                   lambda c: pd_cohorts(c.df), _eq_sum("users")),
        BenchQuery("trend, exact users", "Time",
                   lambda c: temporal.activity_series(c.events, "day"),
                   lambda c: pd_daily(c.df), _eq_sum("users")),
        BenchQuery("rhythm 7x24, exact users", "Time",
                   lambda c: temporal.rhythm_matrix(c.events),
                   lambda c: pd_rhythm(c.df),
                   lambda a, b: a["events"].tolist() == b["events"].tolist()
                   and a["users"].tolist() == b["users"].tolist()),
        BenchQuery("active/new/returning weekly", "Time",
                   lambda c: temporal.active_users(c.events, "week", fill=False),
                   lambda c: pd_active_users(c.df), _eq_sum("new_users", "new")),
        BenchQuery("session summary (30 min gap)", "Time",
                   lambda c: sessions.session_summary(c.events, SESSION_GAP),
                   lambda c: pd_session_summary(c.df),
                   lambda a, b: int(a["sessions"][0]) == int(b["sessions"][0])
                   and a["median_duration_s"][0] == b["median_duration_s"][0]),
        BenchQuery("interval histogram (log)", "Time",
                   lambda c: sessions.interval_histogram(c.events),
                   lambda c: pd_interval_hist(c.df), _eq_sum("count")),
        BenchQuery("interest profiles monthly", "Evolution",
                   lambda c: evolution.interest_profiles(c.events, "month"),
                   lambda c: pd_profiles(c.df), _eq_sum("events")),
        BenchQuery("churn features + labels", "Evolution",
                   lambda c: churn.churn_features(c.events, *churn_cut(c)),
                   lambda c: pd_churn_features(c.df, *churn_cut(c)),
                   lambda a, b: len(a) == len(b)
                   and int(a["churned"].sum()) == int(b["churned"].sum())),
    ]


QUERIES: list[BenchQuery] = []  # filled on first use (keeps `import bench...` light)


# -- running -------------------------------------------------------------------------------
def load(n_events: int, seed: int, workdir: Path) -> tuple[Any, Context, float]:
    """Generate ``n_events`` sample events into a fresh workspace; returns (store, ctx, s)."""
    from analytics.engine import duckdb_backend, events_table
    from analytics.store import Store

    try:
        from analytics.sample import iter_event_chunks
    except ImportError:  # the sample generator is another module; keep the bench usable
        iter_event_chunks = _numpy_chunks
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
    store.save_dataset(name, f"SELECT {cols} FROM staging", source="analytics.sample",
                       fmt="sample", report={"rows": n_events}, con=cur)
    cur.close()
    load_s = time.perf_counter() - t0
    df = store.query_df(f"SELECT * FROM {store.table(name)}")
    ctx = Context(events=events_table(duckdb_backend(store), name), df=df)
    from analytics import temporal

    ctx.extra["daily"] = temporal.activity_series(ctx.events, "day")
    ctx.extra["last_ts"] = pd.Timestamp(df[schema.TS].max())
    return store, ctx, load_s


def _numpy_chunks(n_events: int, seed: int, chunk_rows: int):
    """Fallback generator: uniform users/items over 180 days (no rhythm to speak of)."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "s")
    for lo in range(0, n_events, chunk_rows):
        n = min(chunk_rows, n_events - lo)
        yield pd.DataFrame({
            schema.USER: pd.array(rng.integers(0, max(1, n_events // 300), n).astype(str),
                                  dtype="string"),
            schema.ITEM: pd.array(rng.integers(0, 5000, n).astype(str), dtype="string"),
            schema.TS: start + rng.integers(0, 180 * 86400, n).astype("timedelta64[s]"),
            schema.LAT: rng.uniform(52.3, 52.7, n), schema.LON: rng.uniform(13.1, 13.7, n),
            schema.BEHAVIOR: pd.array(["visit"] * n, dtype="string"),
            schema.CATEGORY: pd.array(rng.choice(["a", "b", "c"], n), dtype="string"),
            schema.VALUE: rng.uniform(0, 60, n),
            schema.TZ_OFFSET: pd.array(np.full(n, 60), dtype="Int32"),
        })


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(best wall seconds, best CPU seconds of this process, all threads; first result)."""
    result = fn()  # warm-up (and the result to check)
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu), result


def run(n_events: int, repeat: int, seed: int, workdir: Path) -> list[dict[str, Any]]:
    if not QUERIES:
        QUERIES.extend(_queries())
    store, ctx, load_s = load(n_events, seed, workdir)
    print(f"\n## {n_events:,} events (load into DuckDB: {load_s:.1f} s; "
          f"{ctx.df[schema.USER].nunique():,} users)")
    rows = []
    try:
        for q in QUERIES:
            eng_s, eng_cpu, eng = best_of(lambda q=q: q.engine(ctx), repeat)
            base_s, base_cpu, base = best_of(lambda q=q: q.baseline(ctx), repeat)
            rows.append({"events": n_events, "query": q.name, "page": q.page,
                         "duckdb_s": eng_s, "pandas_s": base_s, "ratio": eng_s / base_s,
                         "duckdb_cpu_s": eng_cpu, "pandas_cpu_s": base_cpu,
                         "check": "ok" if q.check(eng, base) else "MISMATCH", "note": q.note})
    finally:
        store.close()
    print_table(rows)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"| query | page | duckdb s | pandas s | ratio (goal <= {RATIO_GOAL}) "
          "| duckdb CPU s | pandas CPU s | check |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        note = f" ({r['note']})" if r["note"] else ""
        print(f"| {r['query']}{note} | {r['page']} | {r['duckdb_s']:.3f} | {r['pandas_s']:.3f} "
              f"| {r['ratio']:.2f} | {r['duckdb_cpu_s']:.3f} | {r['pandas_cpu_s']:.3f} "
              f"| {r['check']} |")
    totals = pd.DataFrame(rows).groupby("page", sort=False)[["duckdb_s", "pandas_s"]].sum()
    print("\n| page total | duckdb s | pandas s | ratio | goal |")
    print("|---|---:|---:|---:|---|")
    for page, t in totals.iterrows():
        goal = PAGE_GOALS_S.get(str(page))
        verdict = "" if goal is None else (
            f"< {goal:g} s: {'met' if t['duckdb_s'] < goal else 'NOT met'}")
        print(f"| {page} | {t['duckdb_s']:.3f} | {t['pandas_s']:.3f} "
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

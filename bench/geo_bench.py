"""Spatial analytics benchmark: DuckDB versions against their plain-pandas baselines.

    python -m bench.geo_bench [--copies 10] [--repeat 3]

Data: the NYC check-ins (../shared/data) imported into a temporary workspace, then copied
``--copies`` times inside DuckDB with renamed users and times shifted by the copy number in
minutes, so density, zones and flows keep NYC's shape at ``copies x 147k`` events.

Each entry times the function that runs the group-by inside DuckDB on the stored table
against the pandas function on the same events already in memory (the baseline a notebook
would use), checks both return the same rows, and prints seconds (best of ``--repeat``), the
speed ratio baseline / DuckDB, and the same ratio when the baseline also pays for loading
the table into pandas (what a page holding only a store table would pay). ``entries()`` is
importable, for bench/analytics_bench.py to run alongside its own entries.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from bench.datasets import NYC

ROOT = Path(__file__).resolve().parents[1]

Fn = Callable[[Any, str, pd.DataFrame, dict], Any]


def _zones_for(ctx: dict, events: pd.DataFrame) -> pd.DataFrame:
    from trailscope.analytics.spatial import zones

    if "zones" not in ctx:  # flows need zones; built once, outside the timed calls
        ctx["zones"] = zones.find_zones(events, **ctx["zone_params"]).zones
    return ctx["zones"]


def _pd_path_events(events: pd.DataFrame, users: list[str]) -> pd.DataFrame:
    """The located events of ``users`` among those with >= 3 located events (pandas)."""
    from trailscope.analytics.geo import has_coords
    from trailscope.analytics.schema import LAT, LON, TS, USER

    located = events[has_coords(events)]
    n = located.groupby(USER).size()
    keep = [u for u in users if n.get(u, 0) >= 3]
    out = located.loc[located[USER].isin(keep), [USER, TS, LAT, LON]]
    return out.sort_values([USER, TS, LAT, LON], kind="mergesort")  # the SQL's order


def entries() -> list[tuple[str, Fn, Fn]]:
    """(name, DuckDB function, pandas baseline); each takes (connection, table, events, ctx).

    ``ctx`` holds ``zone_params`` (``find_zones`` keyword arguments), ``zones`` (optional:
    the zones flows run between, else found with ``zone_params``), ``flow_gap`` and
    ``path_users`` (the user ids whose paths are replayed; the DuckDB side picks them, as the
    Map page does, by a hash of the id) and optionally ``located_first`` (the first located
    event: the paths' time reference on the Map page).
    """
    from trailscope.analytics.rollups import defaults, lookup
    from trailscope.analytics.rollups import spatial as r_space
    from trailscope.analytics.spatial import density as space
    from trailscope.analytics.spatial import flows, mobility, zones

    def paths(con: Any, t: str, ev: pd.DataFrame, c: dict) -> pd.DataFrame:
        # a stored dataset's summary tables hold the Map page's default paths (the summary
        # build computes them); a plain table computes them here
        got = defaults.stored_page_paths(lookup.for_sql(con, t))
        return got if got is not None else r_space.page_paths(
            con, t, len(c["path_users"]), 120, c.get("located_first"), stored=False)

    return [
        ("grid density 500 m / week",
         lambda con, t, ev, c: r_space.grid_density_sql(con, t, 500, window="week"),
         lambda con, t, ev, c: space.grid_density(ev, 500, window="week")),
        ("hex density res 8 / month",
         lambda con, t, ev, c: r_space.hex_density_sql(con, t, 8, window="month"),
         lambda con, t, ev, c: space.hex_density(ev, 8, window="month")),
        ("zones dbscan + trend",
         lambda con, t, ev, c: r_space.find_zones_sql(con, t, **c["zone_params"]).zones,
         lambda con, t, ev, c: zones.find_zones(ev, **c["zone_params"]).zones),
        ("zone-to-zone flows",
         lambda con, t, ev, c: r_space.od_flows_sql(con, t, _zones_for(c, ev),
                                                    max_gap=c["flow_gap"]),
         lambda con, t, ev, c: flows.od_flows(ev, _zones_for(c, ev), max_gap=c["flow_gap"])),
        ("paths for replay (25 users)", paths,
         lambda con, t, ev, c: mobility.user_paths(_pd_path_events(ev, c["path_users"]),
                                                   idle_gap="12h", max_points=120,
                                                   reference=c.get("located_first"))),
    ]


def path_users(con: Any, table: str, n: int = 25) -> list[str]:
    """The ``n`` users the Map page replays (hash order among users with >= 3 located
    events), picked once so both sides draw the same people."""
    from trailscope.analytics.spatial import mobility

    return sorted(mobility.path_events_sql(con, table, n)["user_id"].unique().tolist())


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(copies: int = 10, repeat: int = 3) -> pd.DataFrame:
    """Time every entry on ``copies`` x NYC; one row per entry."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import Store

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        import_file(store, NYC, name="nyc")
        con = store.cursor()
        con.execute(
            "CREATE TABLE big AS SELECT user_id || '_' || CAST(r AS VARCHAR) AS user_id, "
            "item_id, ts + to_minutes(CAST(r AS BIGINT)) AS ts, lat, lon, behavior, category, "
            f"value, tz_offset_min FROM {store.table('nyc')}, range({copies}) t(r)")
        events = con.execute("SELECT * FROM big").df()
        ctx: dict[str, Any] = {"zone_params": {"min_visits": 50 * copies, "window": "month"},
                               "flow_gap": "6h", "path_users": path_users(con, "big")}
        rows = []
        t_load, _ = _best(lambda: con.execute("SELECT * FROM big").df(), repeat)
        for name, duck, base in entries():
            t_duck, got = _best(lambda d=duck: d(con, "big", events, ctx), repeat)
            t_base, want = _best(lambda b=base: b(con, "big", events, ctx), repeat)
            pd.testing.assert_frame_equal(got, want)
            rows.append({"entry": name, "events": len(events), "duckdb_s": round(t_duck, 3),
                         "pandas_s": round(t_base, 3), "ratio": round(t_base / t_duck, 2),
                         "ratio_with_load": round((t_base + t_load) / t_duck, 2)})
        con.close()
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=10, help="NYC copies (147k events each)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()
    print(run(args.copies, args.repeat).to_string(index=False))


if __name__ == "__main__":
    main()

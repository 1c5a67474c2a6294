"""Zone size distribution on NYC: plain DBSCAN (the old zones) against split, local zones.

    python -m bench.zones_bench [--repeat 3] [--data PATH]

Data: the complete NYC check-ins (../shared/data, 147k events, 5,135 places) imported into a
temporary workspace. Each row finds zones on the stored table (``zones_sql.find_zones_sql``,
what the summary build and an unfiltered page run) at the Map page's settings
(``zones_sql.page_zone_params``: DBSCAN 100 m, ``min_visits`` from the event count, 3 users,
monthly trend) and prints the zone count, events per zone (percentiles and max), the
outline's extent across in km (percentiles and max), the coverage (share of located events
in zones), the largest share of one zone, how many zones break the goal (wider than 1.5 km
across; over 5% of the events without being one venue) and the time (best of ``--repeat``).

Rows: ``baseline`` is plain DBSCAN (``max_extent_km=None, max_share=None``), ``local`` the
default (split to 1.5 km and 5%); each at the page's ``min_visits`` and at 15 (what the old
page used for a filter of under 15k events, where chaining is worst). The last block is the
category filter: the old page re-clustered the filtered events with their own
``min_visits`` (more zones than the whole data), the new one recounts the whole data's zones.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.datasets import NYC

LIMIT_KM = 1.5
LIMIT_SHARE = 0.05


def _best(fn: Any, repeat: int) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _row(label: str, z: pd.DataFrame, located: int, seconds: float) -> str:
    ev = z["visits"].to_numpy("float64") if len(z) else np.zeros(1)
    ext = z["extent_km"].to_numpy("float64") if len(z) else np.zeros(1)
    share = ev / located
    wide = int((ext > LIMIT_KM).sum())
    busy = int(((share > LIMIT_SHARE) & (z["n_places"].to_numpy() > 1)).sum()) if len(z) else 0
    p = np.percentile
    return (f"{label:<28} {len(z):>5} {p(ev, 50):>7.0f} {p(ev, 90):>7.0f} {p(ev, 99):>7.0f} "
            f"{ev.max():>7.0f} {p(ext, 50):>6.2f} {p(ext, 90):>6.2f} {ext.max():>6.2f} "
            f"{z['visits'].sum() / located:>6.1%} {share.max():>6.1%} {wide:>5} {busy:>5} "
            f"{seconds:>7.3f}")


HEADER = (f"{'setting':<28} {'zones':>5} {'ev p50':>7} {'ev p90':>7} {'ev p99':>7} "
          f"{'ev max':>7} {'km p50':>6} {'km p90':>6} {'km max':>6} {'cover':>6} "
          f"{'share':>6} {'>1.5':>5} {'>5%':>5} {'time s':>7}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=NYC)
    args = ap.parse_args(argv)

    from trailscope.analytics.geo import has_coords_sql
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.schema import CATEGORY, TS
    from trailscope.analytics.spatial import zones_sql
    from trailscope.analytics.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        try:
            import_file(store, args.data, name="nyc")
            con, table = store.cursor(), store.table("nyc")
            n, first, last = con.execute(f"SELECT count(*), min({TS}), max({TS}) FROM {table} "
                                         f"WHERE {has_coords_sql()}").fetchone()
            page = zones_sql.page_zone_params(n, first, last)
            plain = {"max_extent_km": None, "max_share": None}
            print(f"NYC: {n:,} located events, {first} .. {last}; page settings: "
                  f"eps {page['eps_m']:.0f} m, min_visits {page['min_visits']}, "
                  f"min_users {page['min_users']}, window {page['window']}; "
                  f"best of {args.repeat}")
            print(HEADER)
            found = {}
            for mv in (page["min_visits"], 15):
                for name, extra in (("baseline", plain), ("local", {})):
                    spec = {**page, "min_visits": mv, **extra}
                    res, s = _best(lambda spec=spec: zones_sql.find_zones_sql(con, table, **spec),
                                   args.repeat)
                    found[(name, mv)] = res
                    print(_row(f"{name} min_visits={mv}", res.zones, n, s))
            cat = con.execute(f"SELECT {CATEGORY} FROM {table} WHERE {CATEGORY} IS NOT NULL "
                              "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
            where, params = f"{CATEGORY} = ?", [cat]
            n_cat, f_cat, l_cat = con.execute(
                f"SELECT count(*), min({TS}), max({TS}) FROM {table} WHERE {has_coords_sql()} "
                f"AND {where}", params).fetchone()
            old_spec = {**zones_sql.page_zone_params(n_cat, f_cat, l_cat), **plain}
            print(f"\ncategory filter {cat!r} ({n_cat:,} located events); whole data: "
                  f"{len(found[('local', page['min_visits'])].zones)} zones")
            print(HEADER)
            old, s_old = _best(lambda: zones_sql.find_zones_sql(con, table, **old_spec,
                                                                where=where, params=params),
                               args.repeat)
            print(_row(f"old: re-cluster mv={old_spec['min_visits']}", old.zones, n_cat, s_old))
            whole = found[("local", page["min_visits"])]
            src = zones_sql.LocatedEvents(con, table, where, params)
            new, s_new = _best(lambda: zones_sql.zones_for_subset_in(
                src, whole, page["window"]), args.repeat)
            print(_row("new: recount whole zones", new.zones, n_cat, s_new))
            con.close()
        finally:
            store.close()


if __name__ == "__main__":
    main()

"""The Map page's default replay paths, stored with a dataset's summary tables.

The Map page replays the movement paths (``mobility.user_paths``) of a fixed sample of users
(``mobility.path_events_sql``: the first 25 by a hash of the id among those with 3 located
events), 12 h idle gap, 120 points per trip, timestamps counted from the first located event.
Unfiltered, that answer depends on the dataset alone, so the summary build computes it once
(``rollup__<name>__paths``, one row per trip; the point lists as JSON text, which gives the
floats back exactly) and ``app/map_service.paths`` reads it for that request.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ..schema import USER

#: The stored request: users sampled, most points per trip, idle gap splitting trips.
PAGE_PATH_USERS = 25
PAGE_PATH_POINTS = 120
PAGE_IDLE_GAP = "12h"


def page_paths(con: Any, table: str, users: int, max_points: int,
               reference: pd.Timestamp | None) -> pd.DataFrame | None:
    """The paths the Map page shows unfiltered (None: no user has 3 located events)."""
    from ..spatial import mobility

    ev = mobility.path_events_sql(con, table, users)
    if ev.empty:
        return None
    return mobility.user_paths(ev, idle_gap=PAGE_IDLE_GAP, max_points=max_points,
                               reference=reference)


def build_page_paths(ru: Any) -> None:
    """Create ``paths``: ``page_paths`` of the stored request, one row per trip."""
    from ..spatial import mobility
    from ..store import events_table

    table = ru.t("paths")
    ru.con.execute(f"CREATE TABLE {table} ({USER} VARCHAR, {mobility.TRIP} BIGINT, start "
                   f"TIMESTAMP, \"end\" TIMESTAMP, n_points BIGINT, length_km DOUBLE, "
                   f"duration_s DOUBLE, {mobility.PATH} VARCHAR, {mobility.TIMESTAMPS} VARCHAR, "
                   "reference TIMESTAMP)")
    first = ru.summary()["located_first"]
    if first is None:
        return
    got = page_paths(ru.con, events_table(ru.name), PAGE_PATH_USERS, PAGE_PATH_POINTS,
                     pd.Timestamp(first))
    if got is None or got.empty:
        return
    rows = got.assign(**{c: [json.dumps(v) for v in got[c]]
                         for c in (mobility.PATH, mobility.TIMESTAMPS)},
                      reference=pd.Timestamp(first))
    ru.con.register("_path_rows", rows)
    try:
        ru.con.execute(f"INSERT INTO {table} SELECT * FROM _path_rows")
    finally:
        ru.con.unregister("_path_rows")


def stored_page_paths(ru: Any) -> pd.DataFrame | None:
    """The stored paths as ``page_paths`` returns them, or None when there are none."""
    import duckdb

    from ..spatial import mobility

    if ru is None:
        return None
    try:
        out = ru.df(f"SELECT * FROM {ru.t('paths')} ORDER BY rowid")
    except duckdb.CatalogException:  # a rollup from before the paths were stored
        return None
    if out.empty:
        return None
    ref = pd.Timestamp(out.pop("reference").iloc[0])
    for c in (mobility.PATH, mobility.TIMESTAMPS):  # one parse: 4x faster than one per row
        out[c] = json.loads("[" + ",".join(out[c].tolist()) + "]")
    out = out.astype({"start": "datetime64[us]", "end": "datetime64[us]"})
    out.attrs["reference"] = ref
    return out

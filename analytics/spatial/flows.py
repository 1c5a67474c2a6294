"""Zone-to-zone flows: origin-destination counts between consecutive events of a user.

Each event is mapped to a zone (:func:`analytics.zones.assign_zones`; -1 = none); each pair
of consecutive events of the same user (ordered by time, then item, lat, lon so ties are
deterministic) is one move from the first event's zone to the second's. Moves touching
noise are dropped, moves inside one zone only with ``include_self=True``, and moves whose
events are more than ``max_gap`` apart with a ``max_gap``.

Result columns: ``origin``, ``destination``, ``trips`` (moves), ``users`` (distinct users),
``origin_lat``/``origin_lon``/``dest_lat``/``dest_lon`` (zone centroids, for arcs),
``origin_name``/``dest_name`` (the zones' names, when the zones have them), sorted by trips
descending. :func:`od_flows` works on a DataFrame, :func:`od_flows_sql` runs the
ordering and the group-by inside DuckDB on a stored table; they return the same rows.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from ..geo import has_coords_sql
from ..schema import ITEM, LAT, LON, TS, USER
from ..spacetime import utc_naive
from .sql import registered, zone_lookup
from .zones import NAME, NOISE, ZONE, assign_zones

ORIGIN = "origin"
DEST = "destination"
TRIPS = "trips"
USERS = "users"
_ORDER = [USER, TS, ITEM, LAT, LON]


def gap_us(max_gap: str | pd.Timedelta | None) -> int | None:
    """``max_gap`` in microseconds (None: no limit); raises on a gap that is not positive."""
    if max_gap is None:
        return None
    gap = pd.Timedelta(max_gap)
    if gap <= pd.Timedelta(0):
        raise ValueError(f"max_gap must be a positive duration such as '6h', got {max_gap!r}")
    return int(gap / pd.Timedelta(microseconds=1))


def finish(counts: pd.DataFrame, zones: pd.DataFrame) -> pd.DataFrame:
    """The flows from ``origin, destination, trips, users`` counts: zone centroids (and
    names) joined, types, order (most trips first)."""
    c = zones[[ZONE, LAT, LON] + ([NAME] if NAME in zones.columns else [])]
    out = counts.merge(c.rename(columns={ZONE: ORIGIN, LAT: "origin_lat", LON: "origin_lon",
                                         NAME: "origin_name"}), on=ORIGIN, how="left")
    out = out.merge(c.rename(columns={ZONE: DEST, LAT: "dest_lat", LON: "dest_lon",
                                      NAME: "dest_name"}), on=DEST, how="left")
    out = out.astype({ORIGIN: "int64", DEST: "int64", TRIPS: "int64", USERS: "int64"})
    return out.sort_values([TRIPS, ORIGIN, DEST], ascending=[False, True, True],
                           ignore_index=True)


def od_flows(events: pd.DataFrame, zones: pd.DataFrame,
             max_gap: str | pd.Timedelta | None = None,
             include_self: bool = False) -> pd.DataFrame:
    """Origin-destination counts between zones (see the module docstring)."""
    cols = [c for c in _ORDER if c in events.columns]
    df = events[cols].assign(**{ZONE: assign_zones(events, zones), TS: utc_naive(events[TS])})
    df = df.sort_values(cols, kind="mergesort", na_position="last", ignore_index=True)
    z = df[ZONE].to_numpy("int64")
    user = df[USER].to_numpy()
    t = df[TS].to_numpy("datetime64[us]").astype("int64")
    ok = (user[1:] == user[:-1]) & (z[:-1] != NOISE) & (z[1:] != NOISE)
    if not include_self:
        ok &= z[:-1] != z[1:]
    gap = gap_us(max_gap)
    if gap is not None:
        ok &= (t[1:] - t[:-1]) <= gap
    moves = pd.DataFrame({ORIGIN: z[:-1][ok], DEST: z[1:][ok], USER: user[1:][ok]})
    g = moves.groupby([ORIGIN, DEST], sort=False)
    counts = pd.DataFrame({TRIPS: g.size(), USERS: g[USER].nunique()}).reset_index()
    return finish(counts, zones)


def od_flows_sql(con: duckdb.DuckDBPyConnection, table: str, zones: pd.DataFrame,
                 max_gap: str | pd.Timedelta | None = None, include_self: bool = False,
                 where: str | None = None, params: list | None = None) -> pd.DataFrame:
    """:func:`od_flows` on a DuckDB table (e.g. ``store.table(name)``).

    Zones are looked up once per distinct coordinate (shapely, in Python) and joined back;
    the per-user ordering (a LAG window) and the counting run in DuckDB.
    """
    filt = f"WHERE {where}" if where else ""
    coords = con.execute(
        f"SELECT DISTINCT {LAT}, {LON} FROM {table} WHERE {has_coords_sql()}"
        + (f" AND ({where})" if where else ""), params or []).df()
    lookup = zone_lookup(coords, zones, [LAT, LON])
    conds = [f"origin <> {NOISE}", f"destination <> {NOISE}", "same_user"]
    if not include_self:
        conds.append("origin <> destination")
    gap = gap_us(max_gap)
    if gap is not None:
        conds.append(f"epoch_us({TS}) - epoch_us(prev_ts) <= {gap}")
    with registered(con, lookup, "zone_lookup") as view:
        order = ", ".join(_ORDER[1:])
        sql = f"""
            WITH e AS (
                SELECT e.{USER}, e.{TS}, e.{ITEM}, e.{LAT}, e.{LON},
                       coalesce(z.{ZONE}, {NOISE}) AS {ZONE}
                FROM (SELECT {", ".join(_ORDER)} FROM {table} {filt}) e
                LEFT JOIN {view} z ON e.{LAT} = z.{LAT} AND e.{LON} = z.{LON}
            ), m AS (
                SELECT {USER}, {TS}, {ZONE} AS destination,
                       lag({ZONE}) OVER w AS origin, lag({TS}) OVER w AS prev_ts,
                       lag({USER}) OVER w IS NOT NULL AS same_user
                FROM e WINDOW w AS (PARTITION BY {USER} ORDER BY {order} NULLS LAST)
            )
            SELECT origin AS {ORIGIN}, destination AS {DEST}, count(*) AS {TRIPS},
                   count(DISTINCT {USER}) AS {USERS}
            FROM m WHERE {" AND ".join(conds)} GROUP BY 1, 2
        """
        counts = con.execute(sql, params or []).df()
    return finish(counts, zones)


def flow_matrix(flows: pd.DataFrame, n_zones: int) -> np.ndarray:
    """(n_zones, n_zones) array of trips, origin rows x destination columns."""
    m = np.zeros((n_zones, n_zones), dtype="int64")
    np.add.at(m, (flows[ORIGIN].to_numpy("int64"), flows[DEST].to_numpy("int64")),
              flows[TRIPS].to_numpy("int64"))
    return m

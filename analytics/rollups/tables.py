"""Per-dataset summary tables (pre-aggregations) kept next to the events in the DuckDB file.

The dashboard asks the same questions of a dataset again and again (daily activity, distinct
users per week, cohorts, the 7 x 24 rhythm, interest profiles, the map's density), and at 10M
events each answer from the raw table costs a full scan with a hash on string user ids. So,
as BI tools do, each dataset gets small summary tables, built once per dataset version in
one transaction and named ``"rollup__<name>__<part>"``:

* ``users``: one row per user (dense ``user_idx`` in user-id order, events, located events,
  first/last time); ``items``, ``places`` (distinct usable coordinates), ``categories``;
* ``ev``: every event sorted by (user, time) with precomputed integer columns (``user_idx``,
  epoch seconds ``s``, ``us``, ``gap`` to the user's previous event, ``item_idx``,
  ``coord_idx``, the previous event's ``prev_us``/``prev_coord`` and a draw-order ``h``),
  so per-user reads touch one row group and scans group by integers, not strings;
* ``user_day`` / ``user_week`` / ``user_month``: events per (period, user): exact distinct
  users, new/returning and cohorts are counts over these; ``periods``: their totals (events
  and distinct users per day, week and month: the Overview's trend);
* ``hourly`` (events per UTC hour), ``rhythm`` (events per user, time-zone offset and UTC
  hour of the week), ``rhythm_cells`` (the 7 x 24 cells with distinct users for UTC and the
  usual local-time fallbacks), ``profiles_week`` / ``profiles_month`` (events and share per user,
  period and category), ``drift_month`` (interest drift between consecutive months),
  ``gaps`` (histogram of inter-event seconds), ``sessions`` (session durations for the
  standard idle gaps), ``places_items`` (visited places), ``density`` (the map's standard
  grids), ``heat`` (the first located events in the heat layer's draw order), ``zones`` /
  ``zone_activity`` / ``zone_places`` / ``zone_flows`` (the Map page's zones of the whole
  dataset), ``summary`` (one row of headline numbers), ``values`` (events per category
  and behaviour) and ``mobility`` (``mobility.user_mobility`` of every user per window of
  the Users page, ``mobility.page_window``), ``forecast`` / ``forecast_backtest`` (the
  Overview page's default forecast and backtest, ``forecast.page_forecast``), ``paths``
  (the Map page's default replay paths, analytics/rollup_paths.py).
  analytics/rollup_build.py builds them.

The registry table ``rollups`` says which dataset version each set describes: its
``Store.fingerprint`` plus the registry's import time and row count. A set is fresh when
the latter two still match the ``datasets`` row (checked on every use, one tiny query); when
they do not, the fingerprint is computed and the set is rebuilt unless it still matches.

The analytics functions call :func:`for_events` (Ibis tables) or :func:`for_sql` (SQL
table names) and answer from the rollup whenever the request is answerable from it (the whole
stored dataset on DuckDB, no filter, supported parameters), else from the raw table. Spark,
DataFrames, filtered tables and read-only workspaces always take the raw path.
:func:`disabled` forces the raw path (tests compare both).
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from .. import schema

#: Bump when the tables or their meaning change: every set is rebuilt on next use.
VERSION = 9
#: Idle gaps (seconds) whose session durations are pre-aggregated.
SESSION_GAPS = (1800,)
#: Periods with a per-user activity table / a profile table.
USER_FREQS = ("day", "week", "month")
PROFILE_FREQS = ("week", "month")
#: Located events kept in draw order (a hash of user, time and item) for the map's heat layer.
HEAT_ROWS = 100_000
#: (freq, min_events) of the stored interest drift: what the Users page shows.
DRIFT = ("month", 3)
#: Densities stored per (kind, cell size or H3 resolution, window) for the map; the Map
#: page's own hexagons (resolution from the bounding box, all time) are stored as well.
DENSITY_SPECS: tuple[tuple[str, float, str | None], ...] = (("grid", 500, "week"),
                                                            ("hex", 8, "month"))

_REGISTRY_SQL = """
CREATE TABLE IF NOT EXISTS rollups (
    name VARCHAR PRIMARY KEY, version INTEGER, fingerprint VARCHAR, imported_at TIMESTAMP,
    rows BIGINT, built_at TIMESTAMP, build_s DOUBLE
)
"""
#: Every summary table a dataset may have (the zones ones only when it has zones).
PARTS = ("users", "items", "places", "categories", "ev", "user_day", "user_week",
          "user_month", "hourly", "rhythm", "rhythm_cells", "profiles_week", "profiles_month",
          "gaps", "sessions", "places_items", "summary", "values", "density", "drift_month",
          "heat", "zones", "zone_activity", "zone_places", "zone_flows", "mobility",
          "forecast", "forecast_backtest", "periods", "paths")
#: Events per pandas batch when the per-user mobility is computed (bounds the build's memory).
MOBILITY_BATCH = 1_000_000

_off: contextvars.ContextVar[bool] = contextvars.ContextVar("rollups_off", default=False)
#: (cursor, name) of the set being built: its finished tables answer the later build steps.
_building: contextvars.ContextVar[tuple[Any, str] | None] = contextvars.ContextVar(
    "rollup_building", default=None)
_build_lock = threading.Lock()


@contextmanager
def disabled() -> Iterator[None]:
    """Inside the block every analytics function uses the raw events table."""
    token = _off.set(True)
    try:
        yield
    finally:
        _off.reset(token)


def enabled() -> bool:
    return not _off.get() and os.environ.get("TRAILSCOPE_ROLLUPS", "1") != "0"


def part(name: str, what: str) -> str:
    """Quoted name of one summary table of dataset ``name``."""
    schema.check_dataset_name(name)
    return f'"rollup__{name}__{what}"'


@dataclass(frozen=True)
class Rollup:
    """A fresh set of summary tables of dataset ``name``, read through ``con``."""

    con: Any
    name: str

    def t(self, what: str) -> str:
        return part(self.name, what)

    def df(self, sql: str, params: list | None = None, arrow: bool = False) -> pd.DataFrame:
        """The rows of ``sql``; ``arrow`` fetches them through Arrow (no ``params``): about
        half the time of ``.df()`` for tens of thousands of rows with string columns."""
        if arrow and not params:
            return self.con.sql(sql).to_arrow_table().to_pandas()
        return self.con.execute(sql, params or []).df()

    def one(self, sql: str, params: list | None = None) -> tuple:
        rows = self.con.execute(sql, params or []).fetchall()  # fetch all: frees the cursor
        return rows[0] if rows else None

    def has(self, what: str) -> bool:
        """Whether the summary table ``what`` exists (optional ones: the page's zones)."""
        return bool(self.one("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND "
                             "schema_name = current_schema()",
                             [part(self.name, what).strip('"')])[0])

    def summary(self) -> dict[str, Any]:
        cur = self.con.execute(f"SELECT * FROM {self.t('summary')}")
        cols = [d[0] for d in cur.description]
        return dict(zip(cols, cur.fetchall()[0], strict=True))

    def user_ids(self) -> pd.Series:
        """``user_id`` of every ``user_idx`` (position = index)."""
        return self.df(f"SELECT {schema.USER} FROM {self.t('users')}")[schema.USER]

    def user_idx(self, user: str) -> int | None:
        row = self.one(f"SELECT user_idx FROM {self.t('users')} WHERE {schema.USER} = ?",
                       [str(user)])
        return None if row is None else int(row[0])

    def user_events(self, user: str, columns: list[str] | None = None) -> pd.DataFrame:
        """One user's events in time order (the ``ev`` table is sorted by user, so this reads
        one or two row groups whatever the import order)."""
        idx = self.user_idx(user)
        cols = ", ".join(columns or schema.COLUMNS)
        return self.df(f"SELECT {cols} FROM {self.t('ev')} WHERE user_idx = ? "
                       f"ORDER BY us, item_idx, {schema.LAT} NULLS LAST, "
                       f"{schema.LON} NULLS LAST", [-1 if idx is None else idx])


# -- finding the rollup of a request ----------------------------------------------------------
def stored_name(events: Any) -> tuple[Any, str] | None:
    """(DuckDB connection, dataset name) when ``events`` is exactly a stored dataset's table
    on DuckDB (no filter, no derived columns), else None."""
    import ibis

    if not isinstance(events, ibis.expr.types.Table):
        return None
    op = events.op()
    if type(op).__name__ != "DatabaseTable" or getattr(op.source, "name", "") != "duckdb":
        return None
    m = re.fullmatch(r"events__([\w-]+)", str(op.name))
    return (op.source.con, m.group(1)) if m else None


def for_events(events: Any) -> Rollup | None:
    """The fresh rollup answering for Ibis table ``events`` (built if missing), or None."""
    if not enabled():
        return None
    found = stored_name(events)
    return None if found is None else ensure(*found)


def for_sql(con: Any, table: str, where: str | None = None) -> Rollup | None:
    """The fresh rollup for the SQL table ``table`` (``Store.table(name)``) when no ``where``
    narrows it, or None."""
    if not enabled() or where:
        return None
    m = re.fullmatch(r'"events__([\w-]+)"', table.strip())
    return None if m is None else ensure(con, m.group(1))


def _fresh(con: Any, name: str) -> bool:
    try:
        row = con.execute(
            "SELECT count(*) FROM rollups r JOIN datasets d ON r.name = d.name "
            "AND r.imported_at = d.imported_at AND r.rows = d.rows "
            "WHERE r.name = ? AND r.version = ?", [name, VERSION]).fetchall()[0]
    except duckdb.CatalogException:  # no registry yet
        return False
    return bool(row[0])


def ensure(con: Any, name: str, build: bool = True) -> Rollup | None:
    """The fresh rollup of dataset ``name``: checked, (re)built when stale and ``build``.

    None when the dataset does not exist, the workspace is read-only or another writer
    conflicts: callers then answer from the raw table.
    """
    building = _building.get()
    if building is not None and building[1] == name:
        return Rollup(building[0], name)
    if _fresh(con, name):
        return Rollup(con, name)
    if not build:
        return None
    with _build_lock:  # one builder per process; the others wait and then read its tables
        if _fresh(con, name):
            return Rollup(con, name)
        try:
            rebuild(con, name)
        except (duckdb.Error, LookupError):
            return None
    return Rollup(con, name) if _fresh(con, name) else None


def info(con: Any, name: str) -> dict[str, Any] | None:
    """The registry row of dataset ``name``'s rollup (fingerprint, build_s, ...) or None."""
    try:
        cur = con.execute("SELECT * FROM rollups WHERE name = ?", [name])
    except duckdb.CatalogException:
        return None
    rows = cur.fetchall()
    return dict(zip([d[0] for d in cur.description], rows[0], strict=True)) if rows else None


class _Workspace:
    """The two Store methods ``Store.fingerprint`` uses, on an open connection."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def cursor(self) -> Any:
        return self._con.cursor()

    def table(self, name: str) -> str:
        from ..store import events_table

        return events_table(name)


def fingerprint(con: Any, name: str) -> str:
    """``Store.fingerprint(name)`` computed on connection ``con``."""
    from ..store import Store

    return Store.fingerprint(_Workspace(con), name)  # type: ignore[arg-type]


# -- building ---------------------------------------------------------------------------------
def rebuild(con: Any, name: str) -> float:
    """(Re)build dataset ``name``'s summary tables atomically; returns the seconds it took.

    Skips the work (and only refreshes the registry) when the stored set already describes
    the same content (same fingerprint, e.g. the same file imported again).
    """
    t0 = time.perf_counter()
    cur = con.cursor()
    try:
        cur.execute(_REGISTRY_SQL)
        reg = cur.execute("SELECT imported_at, rows FROM datasets WHERE name = ?",
                          [name]).fetchall()
        reg = reg[0] if reg else None
        if reg is None:
            raise LookupError(f"no dataset named {name!r}")
        fp = fingerprint(cur, name)
        old = info(cur, name)
        cur.execute("BEGIN TRANSACTION")
        try:
            if not (old and old["fingerprint"] == fp and old["version"] == VERSION):
                drop_tables(cur, name)
                token = _building.set((cur, name))  # later steps read the earlier tables
                try:
                    from .build import build_all

                    build_all(cur, name)
                finally:
                    _building.reset(token)
            cur.execute("DELETE FROM rollups WHERE name = ?", [name])
            cur.execute("INSERT INTO rollups VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP, ?)",
                        [name, VERSION, fp, reg[0], reg[1], time.perf_counter() - t0])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        cur.close()
    return time.perf_counter() - t0


def drop_tables(cur: Any, name: str) -> None:
    """Drop dataset ``name``'s summary tables and registry row (inside the caller's
    transaction; ``Store.drop`` calls this)."""
    for what in PARTS:
        cur.execute(f"DROP TABLE IF EXISTS {part(name, what)}")
    # no try/except: a failed statement would abort the caller's transaction
    if cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rollups' "
                   "AND schema_name = current_schema()").fetchall()[0][0]:
        cur.execute("DELETE FROM rollups WHERE name = ?", [name])

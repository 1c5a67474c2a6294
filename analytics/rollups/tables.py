"""Per-dataset summary tables (pre-aggregations) kept next to the events in the DuckDB file.

The dashboard asks the same questions of a dataset again and again (daily activity, distinct
users per week, cohorts, the 7 x 24 rhythm, interest drift, the map's density), and at 10M
events each answer from the raw table costs a full scan with a hash on string user ids. So,
as BI tools do, each dataset gets small summary tables, built once per dataset version in
one transaction and named ``"rollup__<name>__<part>"``:

* ``users``: one row per user (dense ``user_idx`` in user-id order, events, located events,
  first/last time); ``items``, ``places`` (distinct usable coordinates), ``categories``;
* ``ev``: every event sorted by (user, time) with precomputed integer columns (``user_idx``,
  ``us``, ``item_idx``, ``coord_idx``, ``cat_idx`` and a draw-order ``h``), so per-user
  reads touch one row group and scans group by integers, not strings; the other canonical
  columns but the user, item and category names (``EV_WITHOUT``: kept once, in ``users``,
  ``items`` and ``categories``); ``ts`` and the epoch seconds ``s`` are virtual columns,
  computed from ``us`` when read (not sorted and written); the flows are counted over it in
  batches of users, each event beside the user's previous one (no table of moves);
* ``user_day`` / ``user_week`` / ``user_month``: events per (period, user): exact distinct
  users, new/returning and cohorts are counts over these; ``periods``: their totals (events
  and distinct users per day, week and month: the Overview's trend);
* ``hourly`` (events per UTC hour), ``hour_users`` (events and distinct users per hour, read
  while no event was appended), ``rhythm`` (events per user, time-zone offset and UTC
  hour of the week), ``rhythm_cells`` (the 7 x 24 cells with distinct users for UTC and the
  usual local-time fallbacks), ``drift_<window>`` (interest drift between consecutive windows of
  the Users page: ``drift_day``, ``drift_week`` or ``drift_month``, ``mobility.page_window``;
  beside it ``drift_ref_<window>``, the median drift per window, and ``drift_rank_<window>``,
  each user's pairs and mean drift, what the page's first view reads),
  ``gaps`` (histogram of inter-event seconds), ``sessions`` (session durations for the
  standard idle gaps), ``places_items`` (visited places), ``density`` (the map's standard
  grids), ``heat`` (the first located events in the heat layer's draw order), ``zones`` /
  ``zone_activity`` / ``zone_places`` / ``zone_flows`` (the Map page's zones of the whole
  dataset), ``summary`` (one row of headline numbers), ``values`` (events per category
  and behaviour) and ``mobility`` (``mobility.user_mobility`` of every user per window of
  the Users page, ``mobility.page_window``; home and work by ``item_idx``) and ``paths``
  (the Map page's default replay paths, analytics/rollups/defaults.py); ``churn_params`` /
  ``churn_risk`` / ``churn_backtest`` (the Users page's churn panel, ``churn.page_panel``);
  ``pending``: the events appended since the build (incremental.py), with the integer
  columns of ``ev``.
  The Overview's forecast is not stored: it is fitted on the complete periods of the data's
  span (app/services/analytics.py, memoised).

The registry table ``rollups`` says which dataset version each set describes: its
``Store.fingerprint`` plus the registry's import time and row count. A set is fresh when
the latter two still match the ``datasets`` row (:func:`fresh`, one tiny query).

This module says what the tables are and reads one set (:class:`Rollup`); analytics/rollups/
lookup.py finds the fresh set of a request, build.py builds it, and the per-question modules
(temporal.py, users.py, spatial.py) answer from it or from the raw analyses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from .. import schema
from ..store import derived_table
from ..users import evolution

#: Bump when the tables or their meaning change: every set is rebuilt on next use.
VERSION = 22
#: The canonical columns ``ev`` does not store: the users', items' and categories' names, which
#: ``users``, ``items`` and ``categories`` hold by ``user_idx`` / ``item_idx`` / ``cat_idx``
#: (``Rollup.user_events`` joins them back).
EV_WITHOUT = (schema.USER, schema.ITEM, schema.CATEGORY)
#: Idle gaps (seconds) whose session durations are pre-aggregated.
SESSION_GAPS = (1800,)
#: Periods with a per-user activity table / a profile table (the first, days, is counted over
#: ``ev``; the build sums the others from it, so each must be a whole number of days).
USER_FREQS = ("day", "week", "month")
#: Interest profiles (and the stored drift's windows) per day, week or month: counted from
#: ``ev``'s integer columns on request (a profile table per window cost the build as much as
#: ``ev`` itself on Taobao-shaped data, ~one row per event).
PROFILE_FREQS = ("day", "week", "month")
#: Located events kept in draw order (a hash of user, time and item) for the map's heat layer.
HEAT_ROWS = 100_000
#: (min_events, prior) of the stored interest drift (category basis): what the Users page
#: shows. The drift is stored for the page's window of the dataset (``mobility.page_window``:
#: days for up to three weeks of data, weeks up to ~4 months, else months: one of
#: ``PROFILE_FREQS``), so no page computes every user's drift on a request.
DRIFT = (evolution.MIN_EVENTS_PER_WINDOW, evolution.PRIOR_EVENTS)
#: Densities stored per (kind, cell size or H3 resolution, window) for the map; the Map
#: page's own hexagons (resolution from the bounding box, all time) are stored as well.
DENSITY_SPECS: tuple[tuple[str, float, str | None], ...] = (("grid", 500, "week"),
                                                            ("hex", 8, "month"))

REGISTRY_SQL = """
CREATE TABLE IF NOT EXISTS rollups (
    name VARCHAR PRIMARY KEY, version INTEGER, fingerprint VARCHAR, imported_at TIMESTAMP,
    rows BIGINT, built_at TIMESTAMP, build_s DOUBLE
)
"""
#: Every summary table a dataset may have (the zones ones only when it has zones).
PARTS = ("users", "items", "places", "categories", "ev", "user_day", "user_week",
          "user_month", "hourly", "rhythm", "rhythm_cells",
          "gaps", "sessions", "places_items", "summary", "values", "density", "drift_month",
          "drift_week", "drift_day", "drift_ref_month", "drift_ref_week", "drift_ref_day",
          "drift_rank_month", "drift_rank_week", "drift_rank_day", "hour_users",
          "churn_params", "churn_risk", "churn_backtest",
          "heat", "zones", "zone_activity", "zone_places", "zone_flows", "mobility",
          "periods", "paths", "pending", "zone_params")


def part(name: str, what: str) -> str:
    """Quoted name of one summary table of dataset ``name`` (the store's naming rule for
    derived tables, so ``Store.drop`` removes it with the dataset)."""
    return derived_table("rollup", name, what)


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
        wanted = list(columns or schema.COLUMNS)
        cols = ", ".join(wanted)
        keys = f"{cols}, us, item_idx"
        stored = {schema.USER: f"CAST($2 AS VARCHAR) AS {schema.USER}",  # EV_WITHOUT
                  schema.ITEM: f"i.{schema.ITEM}", schema.CATEGORY: f"c.{schema.CATEGORY}"}
        src = (f"SELECT {', '.join(stored.get(c, f'e.{c}') for c in wanted)}, e.us, e.item_idx "
               f"FROM {self.t('ev')} e JOIN {self.t('items')} i ON e.item_idx = i.item_idx "
               f"LEFT JOIN {self.t('categories')} c ON e.cat_idx = c.cat_idx "
               "WHERE e.user_idx = $1")
        if self.has("pending"):  # events appended since the build (incremental.py)
            src += f" UNION ALL SELECT {keys} FROM {self.t('pending')} WHERE user_idx = $1"
        return self.df(f"SELECT {cols} FROM ({src}) ORDER BY us, item_idx, "
                       f"{schema.LAT} NULLS LAST, {schema.LON} NULLS LAST",
                       [-1 if idx is None else idx, str(user)])


# -- the registry ---------------------------------------------------------------------------
def fresh(con: Any, name: str) -> bool:
    """Whether dataset ``name`` has a set of summary tables describing its current version:
    the same import and version, and every event in it but those appended and staged for
    the next fold (analytics/rollups/incremental.py: at most a fraction of a second behind,
    the fold keeps the counts exact)."""
    try:
        row = con.execute(
            "SELECT count(*) FROM rollups r JOIN datasets d ON r.name = d.name "
            "AND r.imported_at = d.imported_at AND r.rows <= d.rows "
            "WHERE r.name = ? AND r.version = ?", [name, VERSION]).fetchall()[0]
    except duckdb.CatalogException:  # no registry yet
        return False
    return bool(row[0])


def info(con: Any, name: str) -> dict[str, Any] | None:
    """The registry row of dataset ``name``'s rollup (fingerprint, build_s, ...) or None."""
    try:
        cur = con.execute("SELECT * FROM rollups WHERE name = ?", [name])
    except duckdb.CatalogException:
        return None
    rows = cur.fetchall()
    return dict(zip([d[0] for d in cur.description], rows[0], strict=True)) if rows else None

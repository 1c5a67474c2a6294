"""Keeping a dataset's fresh summary tables fresh while events are appended to it.

The one write path (analytics/append.py) inserts a batch of new events and, inside the same
transaction, calls :func:`apply` with the name of a table holding exactly those events in
canonical columns. When the dataset has a fresh set of summary tables (tables.fresh), apply
updates from the batch every table that can be kept exact cheaply (:data:`EXACT`) and moves
the registry row to the new row count, so the set stays fresh and the pages answer from it
with the new events in:

* ``users`` / ``items`` / ``places`` / ``categories``: new ids are appended after the last
  index (an index is then no longer in id order for the appended ones: the readers never
  assume it), counts and first/last times updated;
* ``user_day`` / ``user_week`` / ``user_month`` and ``periods``: events and exact distinct
  users per period; ``hourly``; ``rhythm`` and ``rhythm_cells`` (distinct users per cell
  exact when every offset is whole hours, as the rhythm table then decides the cell);
  ``values``; ``summary`` (all but the percentiles and the median longitude below);
* ``heat``: the first HEAT_ROWS located events in draw order, merged by their hash;
* ``pending``: the appended events with the integer columns of ``ev``: ``Rollup.user_events``
  reads ``ev`` and ``pending`` together, so one user's events stay exact; the stored
  ``mobility`` rows of the batch's users are dropped, and the Users page computes theirs from
  those events.

The tables of :data:`BEHIND` cannot be updated exactly for a few milliseconds (the sorted
``ev``, drift, churn, densities, gaps, sessions, zones, flows,
paths, the summary's percentiles): they keep describing the events of the last build, and
``pending`` counts how many appended events they lack. :func:`needs_rebuild` says when that
count has grown past :data:`REBUILD_SHARE` of the dataset (or :data:`REBUILD_ROWS`), and
the services then rebuild the set in a background job (build.rebuild) beside the appends: it
builds from one DuckDB snapshot (a transaction; appends keep committing on other cursors), in
its commit it deletes only the staged events that snapshot saw, so those staged after it are
folded into the new tables by the next fold; folds wait for it (they update the tables it
replaces), and :func:`settle` checks that the set and the stage count every event.

Without a fresh set apply does nothing: the pages read the raw events until the next build.

**Staged, then folded.** Updating some fifty summary statements costs about the same for 10
events as for 10,000 (a couple of hundred milliseconds on two busy cores), so a server taking
many small batches does not run them per batch: :func:`stage`, in the append's transaction,
only copies the new events into ``unfolded`` (one insert); :func:`fold` later applies
everything staged in one transaction and empties it (the server's writer folds when its
queue goes idle and at least every :data:`FOLD_S` seconds under load; a direct
``analytics.append.append`` folds at once). Meanwhile the set counts as fresh
(tables.fresh: the same import, at most the staged events behind), so the pages answer from it
and show a posted event once it is folded.
"""

from __future__ import annotations

import json
from typing import Any

from .. import schema
from ..geo import has_coords_sql
from ..spacetime import WINDOW, window_sql
from ..spatial.zones import VISITS, ZONE
from .tables import HEAT_ROWS, USER_FREQS, VERSION, part

#: Summary tables updated exactly by :func:`apply`.
EXACT = ("users", "items", "places", "categories", "user_day", "user_week", "user_month",
         "periods", "hourly", "rhythm", "rhythm_cells", "values", "summary", "heat",
         "pending", "mobility")
#: Summary tables (and summary columns) left describing the last build until a rebuild;
#: the Map's zones keep their outlines, users and shares, but count the visits of new events at
#: a place of a zone (``zones``, ``zone_places`` and existing windows of ``zone_activity``).
BEHIND = ("ev", "drift_<Users page window>", "churn_params", "churn_risk",
          "churn_backtest", "hour_users (not read while events are pending)", "gaps", "sessions",
          "places_items", "density", "zones", "zone_activity", "zone_places", "zone_flows",
          "paths", "summary.ts_p01", "summary.ts_p99", "summary.lon_median")
#: A rebuild is due when the appended events the BEHIND tables lack reach this share of the
#: dataset's events, or this many events.
REBUILD_SHARE = 0.05
REBUILD_ROWS = 1_000_000

#: A rebuild reads one snapshot while appends go on committing, but folds wait for it and it
#: takes both cores of a small machine (appends and recommendations slow down meanwhile), so
#: under a stream the next one starts only once the time since the last build ended is at
#: least this many times what that build took (:func:`rebuild_spaced`): rebuilds then run at
#: most 1 / (1 + REBUILD_SPACING) of the time (5%, outside a 95th percentile of latencies),
#: whatever the ingest rate; the BEHIND tables lag meanwhile (a 3 s build: one a minute).
REBUILD_SPACING = 19.0

#: Under a steady stream the server's writer folds about this often (seconds; longer after a
#: slow fold, up to app/services/writer.FOLD_MAX_S): a fold costs about the same for few
#: events as for many, so each second between folds saves CPU for the appends.
FOLD_S = 0.8

_B = "_inc_batch"    # the batch with its integer columns (a temporary table)
_F = "_inc_fold"     # the staged events being folded (a temporary table)
#: The steps' temporary tables.
_TEMPS = ("_inc_pairs", "_inc_rh", "_inc_cells", "_inc_rows", "_inc_zv")


def apply(cur: Any, name: str, batch: str) -> bool:
    """Update dataset ``name``'s fresh summary tables from the new events in table ``batch``
    (already in the events table), inside the caller's transaction on ``cur``; nothing when
    the set is not fresh or the batch is empty."""
    n = cur.execute(f"SELECT count(*) FROM {batch}").fetchall()[0][0]
    target = _target_rows(cur, name, int(n)) if n else None
    if target is None:
        return False
    t = {w: part(name, w) for w in EXACT + tuple("user_" + f for f in USER_FREQS)}
    _add_ids(cur, t, batch)
    _stage(cur, t, batch)
    try:
        _user_periods(cur, t)
        _upsert(cur, t["hourly"], ["period"], ["events"], f"SELECT date_trunc('hour', "
                f"{schema.TS}) AS period, count(*) AS events FROM {{b}} GROUP BY 1")
        _rhythm(cur, t)
        _values(cur, t)
        _summary(cur, t)
        _heat(cur, t)
        _zones(cur, name)
        cur.execute(f"DELETE FROM {t['mobility']} WHERE user_idx IN "
                    f"(SELECT DISTINCT user_idx FROM {_B})")
        cur.execute(f"INSERT INTO {t['pending']} SELECT * FROM {_B}")
        cur.execute("UPDATE rollups SET rows = ?, imported_at = d.imported_at FROM "
                    "(SELECT imported_at FROM datasets WHERE name = ?) d WHERE rollups.name = ?",
                    [target, name, name])
    finally:
        for temp in (_B, *_TEMPS):
            cur.execute(f"DROP TABLE IF EXISTS {temp}")
    return True


def stage(cur: Any, name: str, batch: str, *, known: bool = False) -> bool:
    """Keep the new events of table or view ``batch`` (canonical columns, maybe more) for the
    next :func:`fold`, inside the caller's transaction, when dataset ``name`` has a summary
    set of this import and version; whether the stage table exists (the events were staged
    when the set is of this import).

    ``known``: the caller saw the stage table in an earlier transaction, so one statement
    does it all (the insert checks the set itself; a stage table dropped since fails it, and
    the caller's transaction with it)."""
    table = part(name, "unfolded")
    cols = ", ".join(schema.COLUMNS)
    current = ("SELECT 1 FROM rollups r JOIN datasets d ON r.name = d.name AND "
               "r.imported_at = d.imported_at WHERE r.name = ? AND r.version = ?")
    if known:
        cur.execute(f"INSERT INTO {table} SELECT {cols} FROM {batch} WHERE EXISTS "
                    f"({current})", [name, VERSION])
        return True
    have = {t for (t,) in cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema() AND "
        "table_name IN ('rollups', ?)", [table.strip('"')]).fetchall()}
    if "rollups" not in have:
        return False
    if not cur.execute(current, [name, VERSION]).fetchall():
        return table.strip('"') in have
    if table.strip('"') not in have:
        cur.execute(schema.create_table_sql(table))
    cur.execute(f"INSERT INTO {table} SELECT {cols} FROM {batch}")
    return True


def staged_rows(con: Any, name: str) -> int:
    """Events of dataset ``name`` staged and not yet folded."""
    table = part(name, "unfolded")
    if not _exists(con, table.strip('"')):
        return 0
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def fold(con: Any, name: str) -> int:
    """Apply every staged event of dataset ``name`` to its summaries and empty the stage, in
    one transaction on a new cursor of ``con`` (the caller runs one fold at a time; appends
    may commit meanwhile: the rows staged after this transaction began stay for the next
    fold); the number of events folded."""
    table = part(name, "unfolded")
    cur = con.cursor()
    try:
        if not _exists(cur, table.strip('"')):
            return 0
        cur.execute("BEGIN TRANSACTION")
        try:
            cur.execute(f"CREATE OR REPLACE TEMP TABLE {_F} AS SELECT * FROM {table}")
            n = int(cur.execute(f"SELECT count(*) FROM {_F}").fetchall()[0][0])
            if n:
                if not apply(cur, name, _F):
                    # the set does not describe the events before these (it was rebuilt or
                    # replaced meanwhile): no longer fresh, the next use rebuilds it
                    cur.execute("DELETE FROM rollups WHERE name = ?", [name])
                cur.execute(f"DELETE FROM {table}")
            cur.execute(f"DROP TABLE {_F}")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return n
    finally:
        cur.close()


def settle(con: Any, name: str) -> bool:
    """After a rebuild beside appends (app/services/live.rebuild_if_needed, holding the fold
    lock): whether dataset ``name``'s set and its staged events together count every stored
    event, read in one snapshot. When not (an append committed while the old set was stale
    and staged nothing), the set's registry row is removed, so it is rebuilt on next use
    rather than answer without those events."""
    cur = con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        try:
            got = cur.execute("SELECT r.rows, d.rows FROM rollups r JOIN datasets d ON r.name "
                              "= d.name WHERE r.name = ?", [name]).fetchall()
            exact = bool(got) and got[0][0] + staged_rows(cur, name) == got[0][1]
            if got and not exact:
                cur.execute("DELETE FROM rollups WHERE name = ?", [name])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return exact
    finally:
        cur.close()


def behind_rows(con: Any, name: str) -> int:
    """Appended events the BEHIND tables of dataset ``name`` lack (0 without a set)."""
    table = part(name, "pending")
    if not _exists(con, table.strip('"')):
        return 0
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def _exists(con: Any, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND "
                            "schema_name = current_schema()", [table]).fetchall()[0][0])


def rebuild_spaced(con: Any, name: str, spacing: float | None = None) -> bool:
    """Whether dataset ``name``'s last summary build ended at least ``spacing`` (default
    :data:`REBUILD_SPACING`) times its own duration ago; True without a build on record."""
    if not _exists(con, "rollups"):
        return True
    got = con.execute("SELECT epoch(now()::TIMESTAMP - built_at), build_s FROM rollups "
                      "WHERE name = ?", [name]).fetchall()
    if not got or got[0][0] is None or got[0][1] is None:
        return True
    since_start, took = float(got[0][0]), float(got[0][1])
    gap = REBUILD_SPACING if spacing is None else spacing
    return since_start - took >= gap * took


def needs_rebuild(con: Any, name: str) -> bool:
    """Whether dataset ``name``'s summary set lacks enough appended events in its BEHIND
    tables that a background rebuild is due."""
    behind = behind_rows(con, name)
    if not behind:
        return False
    rows = con.execute("SELECT rows FROM datasets WHERE name = ?", [name]).fetchall()
    total = int(rows[0][0]) if rows else 0
    return behind >= min(REBUILD_ROWS, max(1, int(total * REBUILD_SHARE)))


# -- steps ------------------------------------------------------------------------------------
def _target_rows(cur: Any, name: str, n: int) -> int | None:
    """The registry's row count after this batch when the set was fresh before it, else
    None. The datasets row may already count the batch (the write path updates it first)."""
    if not _exists(cur, "rollups"):  # (a failed statement would abort the transaction)
        return None
    got = cur.execute(
        "SELECT r.rows, d.rows, r.imported_at = d.imported_at FROM rollups r JOIN datasets "
        "d ON r.name = d.name WHERE r.name = ? AND r.version = ?", [name, VERSION]).fetchall()
    if not got:
        return None
    reg, now, same = got[0]
    if same and reg + n == now:
        return int(now)
    return int(now) + n if reg == now and same else None


def _add_ids(cur: Any, t: dict[str, str], batch: str) -> None:
    """Append the batch's new users, items, places and categories after the last index, in
    index order (readers take a row's position for its index)."""
    u, lat, lon, cat = schema.USER, schema.LAT, schema.LON, schema.CATEGORY
    _new_ids(cur, t["users"], "user_idx", [u], batch, "TRUE", ", 0, 0, NULL, NULL")
    _new_ids(cur, t["items"], "item_idx", [schema.ITEM], batch, "TRUE")
    _new_ids(cur, t["places"], "coord_idx", [lat, lon], batch, has_coords_sql())
    _new_ids(cur, t["categories"], "cat_idx", [cat], batch, f"{cat} IS NOT NULL")


def _new_ids(cur: Any, table: str, idx: str, keys: list[str], batch: str, where: str,
             rest: str = "") -> None:
    """Insert the distinct ``keys`` of ``batch`` (rows matching ``where``) missing from
    ``table``, indexed from its last ``idx`` on in key order (``rest``: the other columns)."""
    cols = ", ".join(keys)
    same = " AND ".join(f"x.{k} = b.{k}" for k in keys)
    cur.execute(f"INSERT INTO {table} SELECT CAST((SELECT coalesce(max({idx}), -1) FROM {table}) "
                f"+ row_number() OVER (ORDER BY {cols}) AS INTEGER), {cols}{rest} FROM (SELECT "
                f"DISTINCT {cols} FROM {batch} b WHERE {where} AND NOT EXISTS (SELECT 1 FROM "
                f"{table} x WHERE {same})) ORDER BY 1")


def _stage(cur: Any, t: dict[str, str], batch: str) -> None:
    """The batch with the integer columns of ``ev`` (temporary ``_B``), the ``pending``
    table created on first use, and the users' counts and first/last times updated."""
    u, i, ts, lat, lon, cat = (schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON,
                               schema.CATEGORY)
    canonical = ", ".join(f"e.{c}" for c in schema.COLUMNS)
    cur.execute(
        f"CREATE OR REPLACE TEMP TABLE {_B} AS SELECT {canonical}, uu.user_idx, "
        f"CAST(EPOCH(e.{ts}) AS BIGINT) AS s, epoch_us(e.{ts}) AS us, it.item_idx, "
        f"pl.coord_idx, c.cat_idx, hash(e.{u}, e.{ts}, e.{i}) AS h FROM {batch} e "
        f"JOIN {t['users']} uu ON e.{u} = uu.{u} JOIN {t['items']} it ON e.{i} = it.{i} "
        f"LEFT JOIN {t['places']} pl ON e.{lat} = pl.{lat} AND e.{lon} = pl.{lon} "
        f"LEFT JOIN {t['categories']} c ON e.{cat} = c.{cat}")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {t['pending']} AS SELECT * FROM {_B} LIMIT 0")
    cur.execute(
        f"UPDATE {t['users']} SET events = events + a.n, located = located + a.nl, "
        "first_ts = least(first_ts, a.lo), last_ts = greatest(last_ts, a.hi) FROM (SELECT "
        "user_idx, count(*) AS n, count(coord_idx) AS nl, min(ts) AS lo, max(ts) AS hi FROM "
        f"{_B} GROUP BY 1) a WHERE {t['users']}.user_idx = a.user_idx")


def _user_periods(cur: Any, t: dict[str, str]) -> None:
    """``user_<freq>`` and ``periods``: events per (period, user), a user counted once more
    in a period where they had no event before (found with their row ids, read once)."""
    trunc = {f: f"date_trunc('{f}', {schema.TS})" for f in USER_FREQS}
    bounds = cur.execute("SELECT " + ", ".join(f"min({e}), max({e})" for e in trunc.values())
                         + f" FROM {_B}").fetchall()[0]
    cur.execute(  # the period range lets each scan skip row groups (the tables are period-sorted)
        "CREATE OR REPLACE TEMP TABLE _inc_pairs AS " + " UNION ALL ".join(
            f"SELECT '{f}' AS freq, a.*, x.rid FROM (SELECT {e} AS period, user_idx, count(*) "
            f"AS n FROM {_B} GROUP BY ALL) a LEFT JOIN (SELECT rowid AS rid, period, user_idx "
            f"FROM {t['user_' + f]} WHERE period BETWEEN ? AND ?) x ON a.period = x.period AND "
            "a.user_idx = x.user_idx" for f, e in trunc.items()), list(bounds))
    for f in USER_FREQS:
        _add_by_rowid(cur, t["user_" + f], f"(SELECT * FROM _inc_pairs WHERE freq = '{f}')",
                      {"events": "n"})
        cur.execute(f"INSERT INTO {t['user_' + f]} SELECT period, user_idx, n FROM _inc_pairs "
                    f"WHERE freq = '{f}' AND rid IS NULL")
    _upsert(cur, t["periods"], ["freq", "period"], ["events", "users"],
            "SELECT freq, period, CAST(sum(n) AS BIGINT) AS events, count(*) FILTER (WHERE rid "
            "IS NULL) AS users FROM _inc_pairs GROUP BY ALL")


def _upsert(cur: Any, table: str, keys: list[str], counts: list[str], sql: str) -> None:
    """Add the ``counts`` of ``sql`` (its columns: ``keys``, then ``counts``; ``{b}`` names
    the batch) to ``table``: matching rows (NULL keys match NULL) summed, the others
    inserted."""
    sql = sql.format(b=_B)
    on = " AND ".join(f"{table}.{k} IS NOT DISTINCT FROM a.{k}" for k in keys)
    cur.execute(f"UPDATE {table} SET " + ", ".join(f"{c} = {table}.{c} + a.{c}" for c in counts)
                + f" FROM ({sql}) a WHERE {on}")
    cur.execute(f"INSERT INTO {table} ({', '.join(keys + counts)}) SELECT * FROM ({sql}) a "
                f"WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE {on})")


def _rhythm(cur: Any, t: dict[str, str]) -> None:
    """``rhythm`` per (user, offset, UTC hour of week) and the stored ``rhythm_cells``: a
    user is new in a cell when none of their earlier (offset, hour of week) rows falls in it
    (whole-hour shifts decide the cell from the hour of week). The batch users' rows are read
    once (with their row ids, which the update then goes by)."""
    tz = schema.TZ_OFFSET
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _inc_rh AS SELECT rowid AS rid, user_idx, {tz}, "
                f"how FROM {t['rhythm']} WHERE user_idx IN (SELECT DISTINCT user_idx FROM {_B})")
    new, old = [], []
    for mode, fb in cur.execute(f"SELECT DISTINCT mode, fallback FROM "
                                f"{t['rhythm_cells']}").fetchall():
        shift, hours = (("0", "0") if mode == "utc" else
                        (f"coalesce({tz}, {int(fb)}) * 60", f"coalesce({tz}, {int(fb)}) // 60"))
        head = f"SELECT '{mode}' AS mode, {int(fb)} AS fallback, user_idx"
        new.append(f"{head}, ((s + {shift}) // 3600) % 168 AS lh FROM {_B}")
        old.append(f"{head}, ((how + {hours}) % 168 + 168) % 168 AS lh FROM _inc_rh")
    if new:
        cur.execute("CREATE OR REPLACE TEMP TABLE _inc_cells AS SELECT mode, fallback, "
                    "(lh // 24 + 3) % 7 AS weekday, lh % 24 AS hour, count(*) AS events, "
                    "count(DISTINCT user_idx) FILTER (WHERE NOT seen) AS users FROM (SELECT "
                    "c.*, o.user_idx IS NOT NULL AS seen FROM (" + " UNION ALL ".join(new)
                    + ") c LEFT JOIN (SELECT DISTINCT * FROM (" + " UNION ALL ".join(old)
                    + ")) o USING (mode, fallback, user_idx, lh)) GROUP BY ALL")
        _upsert(cur, t["rhythm_cells"], ["mode", "fallback", "weekday", "hour"],
                ["events", "users"], "SELECT * FROM _inc_cells")
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _inc_rows AS SELECT a.*, o.rid FROM (SELECT "
                f"user_idx, {tz}, (s // 3600) % 168 AS how, count(*) AS n FROM {_B} GROUP BY "
                f"ALL) a LEFT JOIN _inc_rh o ON a.user_idx = o.user_idx AND a.how = o.how AND "
                f"a.{tz} IS NOT DISTINCT FROM o.{tz}")
    _add_by_rowid(cur, t["rhythm"], "_inc_rows", {"events": "n"})
    cur.execute(f"INSERT INTO {t['rhythm']} (user_idx, {tz}, how, events) SELECT user_idx, "
                f"{tz}, how, n FROM _inc_rows WHERE rid IS NULL")


def _add_by_rowid(cur: Any, table: str, rows: str, add: dict[str, str]) -> None:
    """Add columns of ``rows`` to the rows of ``table`` its ``rid`` names (row ids read in
    this transaction): a join on the row id, no scan of the table's key columns."""
    sets = ", ".join(f"{c} = {table}.{c} + a.{v}" for c, v in add.items())
    cur.execute(f"UPDATE {table} SET {sets} FROM (SELECT * FROM {rows} WHERE rid IS NOT NULL) "
                f"a WHERE {table}.rowid = a.rid")


def _values(cur: Any, t: dict[str, str]) -> None:
    cat, beh = schema.CATEGORY, schema.BEHAVIOR
    _upsert(cur, t["values"], ["col", "value"], ["events"],
            f"SELECT '{cat}' AS col, {cat} AS value, count(*) AS events FROM {{b}} GROUP BY 1, "
            f"2 UNION ALL SELECT '{beh}', {beh}, count(*) FROM {{b}} GROUP BY 1, 2")


def _summary(cur: Any, t: dict[str, str]) -> None:
    """The headline row: counts, first/last times and the offset facts; the percentiles and
    the median longitude stay those of the last build (BEHIND)."""
    ts, tz = schema.TS, schema.TZ_OFFSET
    cur.execute(
        f"UPDATE {t['summary']} SET events = events + a.n, "
        f"users = (SELECT count(*) FROM {t['users']}), "
        f"items = (SELECT count(*) FROM {t['items']}), "
        "first_ts = least(first_ts, a.lo), last_ts = greatest(last_ts, a.hi), "
        "located = located + a.nl, located_first = least(located_first, a.llo), "
        "located_last = greatest(located_last, a.lhi), tz_known = tz_known + a.tzk, "
        "tz_whole_hours = tz_whole_hours AND a.whole, categorised = categorised + a.nc "
        f"FROM (SELECT count(*) AS n, min({ts}) AS lo, max({ts}) AS hi, count(coord_idx) AS nl, "
        f"min({ts}) FILTER (WHERE coord_idx IS NOT NULL) AS llo, max({ts}) FILTER (WHERE "
        f"coord_idx IS NOT NULL) AS lhi, count({tz}) AS tzk, coalesce(bool_and({tz} % 60 = 0), "
        f"TRUE) AS whole, count({schema.CATEGORY}) AS nc FROM {_B}) a")


def _heat(cur: Any, t: dict[str, str]) -> None:
    """Merge the batch's located events into the first HEAT_ROWS in draw order (``h``): add
    those that come before the stored last one (all while fewer are stored), then drop what
    falls past HEAT_ROWS. Readers order by ``h``, so nothing is renumbered."""
    heat = t["heat"]
    stored, last = cur.execute(f"SELECT count(*), max(h) FROM {heat}").fetchall()[0]
    keep = "" if stored < HEAT_ROWS or last is None else f" AND h < {int(last)}"
    cur.execute(f"INSERT INTO {heat} SELECT {schema.LAT}, {schema.LON}, {schema.TS}, "
                f"{schema.CATEGORY}, h FROM {_B} WHERE coord_idx IS NOT NULL{keep}")
    over = cur.execute(f"SELECT count(*) FROM {heat}").fetchall()[0][0] - HEAT_ROWS
    if over > 0:
        cur.execute(f"DELETE FROM {heat} WHERE h >= (SELECT h FROM {heat} ORDER BY h DESC "
                    f"LIMIT 1 OFFSET {int(over) - 1})")


def _zones(cur: Any, name: str) -> None:
    """The stored page zones' visit counts: a new located event at a place that stands for one
    item of ``zone_places`` adds a visit to that place, to its zone and to its zone's window
    in ``zone_activity`` (windows the build did not have wait for the next one, as do new
    places, users and shares)."""
    z, za, zp, zpar = (part(name, w) for w in ("zones", "zone_activity", "zone_places",
                                                   "zone_params"))
    names = [x.strip('"') for x in (z, za, zp, zpar)]
    if cur.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = current_schema() "
                   "AND table_name IN (?, ?, ?, ?)", names).fetchall()[0][0] < len(names):
        return  # (one look-up for the four: a fold runs some sixty statements as it is)
    window = json.loads(cur.execute(f"SELECT params FROM {zpar}").fetchall()[0][0])["window"]
    w_expr, w_cond = window_sql(window, f"b.{schema.TS}")
    it = schema.ITEM
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _inc_zv AS SELECT p.{ZONE} AS zone, b.{it} AS "
                f"item, {w_expr} AS w, count(*) AS n FROM {_B} b JOIN (SELECT {it}, {ZONE} "
                f"FROM {zp} WHERE {it} IN (SELECT {it} FROM {zp} GROUP BY 1 HAVING count(*) = "
                f"1)) p ON b.{it} = p.{it} WHERE b.coord_idx IS NOT NULL AND {w_cond} "
                "GROUP BY ALL")
    cur.execute(f"UPDATE {zp} SET {VISITS} = {VISITS} + v.n FROM (SELECT item, sum(n) AS n "
                f"FROM _inc_zv GROUP BY 1) v WHERE {zp}.{it} = v.item")
    cur.execute(f"UPDATE {z} SET {VISITS} = {VISITS} + v.n FROM (SELECT zone, sum(n) AS n "
                f"FROM _inc_zv WHERE zone >= 0 GROUP BY 1) v WHERE {z}.{ZONE} = v.zone")
    cur.execute(f"UPDATE {za} SET {VISITS} = {VISITS} + v.n FROM (SELECT zone, w, sum(n) AS n "
                f"FROM _inc_zv WHERE zone >= 0 GROUP BY 1, 2) v WHERE {za}.{ZONE} = v.zone "
                f"AND {za}.{WINDOW} = v.w")

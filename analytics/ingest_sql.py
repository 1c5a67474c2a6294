"""The importer's DuckDB pipeline. The file is streamed, never materialised as a whole:

1. **profile** (one scan): every row gets a reject reason (a CASE over the parsed values) and
   its position ``rid`` (``row_number() OVER ()``: DuckDB reads in file order). One
   aggregate with two grouping sets counts rows per reason (with the first positions of each)
   and, for valid rows, groups a 64-bit hash of the canonical columns: hashes seen more than
   once are the duplicate candidates (a small temp table).
2. **duplicates** (one scan, only when there are candidates and duplicates are not kept):
   candidate rows are compared column by column (a window partitioned by every column) so a
   hash collision never drops a row; the positions of the repeats go to a temp table.
3. **write**: ``Store.save_dataset`` runs :func:`kept_select`, which reads the file a last
   time and keeps valid, non-repeated rows, inside one transaction.

Everything runs on one cursor (temp tables are per connection) with the session time zone
pinned to UTC (analytics/timeparse.py). Positions are turned into line numbers for the
report's examples by analytics/ingest_lines.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from analytics import schema, timeparse
from analytics.formats_geohash import MACROS_SQL
from analytics.formats_specs import Plan, lit
from analytics.ingest_types import EXAMPLES_PER_REASON, REASONS, IngestError, Sniff

C = schema.COLUMNS
#: Flag times this far outside the central 99.8% of the data (or 5% of its span, if more).
OUTLIER_MARGIN = timedelta(days=1)
OUTLIER_SPAN_FRACTION = 0.05


@dataclass
class Staged:
    """One import's temp-table names and what the scans counted."""

    tag: str
    rows_read: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REASONS})
    example_rows: dict[str, list[int]] = field(default_factory=dict)  # row positions
    malformed_lines: list[int] = field(default_factory=list)
    candidates: int = 0  # hash groups seen more than once
    has_dups: bool = False
    has_genres: bool = False
    strict: bool = True
    passes: int = 0
    temp: list[str] = field(default_factory=list)

    def name(self, what: str) -> str:
        return f"_ts_{what}_{self.tag}"


def new_staged() -> Staged:
    return Staged(tag=uuid.uuid4().hex[:10])


def prepare(cur: duckdb.DuckDBPyConnection) -> None:
    """Session settings and macros the pipeline's SQL relies on."""
    cur.execute(timeparse.SESSION_SQL)
    for sql in MACROS_SQL:
        cur.execute(sql)


# -- SQL building blocks -------------------------------------------------------------------
def source_sql(sn: Sniff, path: Path, st: Staged) -> str:
    """The table function reading ``path`` (CSV/JSON columns all VARCHAR). Each CSV read
    records its malformed lines in a fresh rejects table."""
    p = lit(str(path))
    if sn.kind == "parquet":
        return f"read_parquet({p})"
    cols = "{" + ", ".join(f"{lit(c)}: 'VARCHAR'" for c in sn.columns) + "}"
    if sn.kind == "json":
        form = "array" if sn.variant == "array" else "newline_delimited"
        return f"read_json({p}, format={lit(form)}, columns={cols})"
    st.passes += 1
    rejects = st.name(f"rejects{st.passes}")
    st.temp += [rejects, rejects + "_scan"]
    opts = [
        f"delim={lit(sn.delimiter or ',')}", f"header={'true' if sn.has_header else 'false'}",
        f"skip={sn.skip}", f"quote={lit(sn.quote)}", f"escape={lit(sn.quote)}",
        f"columns={cols}", "auto_detect=false", "null_padding=true",
        f"compression={lit('gzip' if sn.compression == 'gzip' else 'auto')}",
        f"encoding={lit(sn.encoding)}", "store_rejects=true", f"rejects_table={lit(rejects)}",
        f"rejects_scan={lit(rejects + '_scan')}",
    ]
    if not st.strict:
        opts.append("strict_mode=false")
    return f"read_csv({p}, {', '.join(opts)})"


def scan_sql(plan: Plan, source: str) -> str:
    """SELECT rid, reason, canonical columns: every row of the file, parsed, in file order."""
    inner = ", ".join(f"{sql} AS {alias}" for alias, sql in plan.inner.items())
    typed = ", ".join(f"{plan.typed[c]} AS {c}" for c in C)
    U, IT, T, LA, LO = schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON
    reason = (
        f"CASE WHEN {U} IS NULL THEN 'missing_user' WHEN {IT} IS NULL THEN 'missing_item' "
        f"WHEN t IS NULL THEN 'missing_time' WHEN {T} IS NULL THEN 'bad_time' "
        f"WHEN (la IS NOT NULL OR lo IS NOT NULL) AND ({LA} IS NULL OR {LO} IS NULL "
        f"OR NOT ({LA} BETWEEN -90 AND 90) OR NOT ({LO} BETWEEN -180 AND 180) "
        f"OR ({LA} = 0 AND {LO} = 0)) THEN 'bad_coordinates' END")
    return (f"SELECT row_number() OVER () - 1 AS rid, {reason} AS reason, {', '.join(C)} "
            f"FROM (SELECT {typed}, t, la, lo FROM (SELECT {inner} FROM {source}))")


def _run(cur: duckdb.DuckDBPyConnection, sql: str, sn: Sniff, path: Path) -> None:
    try:
        cur.execute(sql)
    except duckdb.Error as exc:
        raise _as_ingest(exc, sn, path) from exc


# -- pass 1: reasons and duplicate candidates ----------------------------------------------
def profile(cur: duckdb.DuckDBPyConnection, sn: Sniff, plan: Plan, path: Path, st: Staged,
            dedup: bool) -> None:
    """Count rows per reject reason and find duplicate candidates (one scan of the file)."""
    prof = st.name("profile")
    st.temp.append(prof)

    def sql() -> str:
        h = f"CASE WHEN reason IS NULL THEN hash({', '.join(C)}) END" if dedup else "NULL"
        return (
            f"CREATE OR REPLACE TEMP TABLE {prof} AS SELECT reason, h, GROUPING(h) AS by_reason, "
            "count(*) AS n, list(rid) FILTER (WHERE reason IS NOT NULL) AS rids FROM ("
            f"SELECT rid, reason, CAST({h} AS UBIGINT) AS h FROM ({scan_sql(plan, src)})) "
            "GROUP BY GROUPING SETS ((reason), (h)) "
            "HAVING GROUPING(h) = 1 OR (h IS NOT NULL AND count(*) > 1)")

    src = source_sql(sn, path, st)
    try:
        cur.execute(sql())
    except duckdb.InvalidInputException as exc:
        if sn.kind != "csv" or "strict_mode" not in str(exc):
            raise _as_ingest(exc, sn, path) from exc
        st.strict = False  # e.g. mixed line endings: tolerate rows that break the CSV rules
        src = source_sql(sn, path, st)
        _run(cur, sql(), sn, path)
    except duckdb.Error as exc:
        raise _as_ingest(exc, sn, path) from exc
    for reason, n, first in cur.execute(
            f"SELECT reason, n, list_slice(list_sort(rids), 1, {EXAMPLES_PER_REASON}) "
            f"FROM {prof} WHERE by_reason = 1").fetchall():
        st.rows_read += int(n)
        if reason is not None:
            st.rejected[reason] = int(n)
            st.example_rows[reason] = [int(x) for x in first or []]
    st.candidates = int(cur.execute(
        f"SELECT count(*) FROM {prof} WHERE by_reason = 0").fetchone()[0])
    if sn.kind == "csv":
        rejects = st.name(f"rejects{st.passes}")  # the rejects of the scan that counted
        st.malformed_lines = [int(r[0]) for r in cur.execute(
            f"SELECT DISTINCT line FROM {rejects} ORDER BY line").fetchall()]
        st.rejected["malformed"] = len(st.malformed_lines)
        st.rows_read += len(st.malformed_lines)


def _as_ingest(exc: Exception, sn: Sniff, path: Path) -> IngestError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return IngestError(
        f"DuckDB could not read it as {sn.kind} ({first}). Check that the file is complete "
        "and uses one layout throughout, or name the format with --format",
        path=path, columns=sn.columns)


# -- pass 2: exact duplicates --------------------------------------------------------------
def find_duplicates(cur: duckdb.DuckDBPyConnection, sn: Sniff, plan: Plan, path: Path,
                    st: Staged) -> None:
    """Positions of exact repeats of an earlier valid row (only rows whose hash repeats)."""
    if not st.candidates:
        return
    dups, prof, cols = st.name("dups"), st.name("profile"), ", ".join(C)
    st.temp.append(dups)
    src = source_sql(sn, path, st)
    _run(cur, f"CREATE TEMP TABLE {dups} AS SELECT rid FROM (SELECT rid, row_number() OVER "
              f"(PARTITION BY {cols} ORDER BY rid) AS k FROM ({scan_sql(plan, src)}) "
              f"WHERE reason IS NULL AND hash({cols}) IN "
              f"(SELECT h FROM {prof} WHERE by_reason = 0)) WHERE k > 1", sn, path)
    n, first = cur.execute(f"SELECT count(*), min_by(rid, rid, {EXAMPLES_PER_REASON}) "
                           f"FROM {dups}").fetchone()
    st.rejected["duplicate"] = int(n)
    st.has_dups = bool(n)
    if n:
        st.example_rows["duplicate"] = sorted(int(x) for x in first)


def load_genres(cur: duckdb.DuckDBPyConnection, st: Staged, genres_sql: str) -> None:
    """Temp (item, genre) table for MovieLens categories."""
    name = st.name("genres")
    st.temp.append(name)
    cur.execute(f"CREATE TEMP TABLE {name} AS SELECT DISTINCT ON (item) item, genre "
                f"FROM ({genres_sql}) WHERE item IS NOT NULL")
    st.has_genres = True


# -- pass 3: the kept rows -----------------------------------------------------------------
def kept_select(sn: Sniff, plan: Plan, path: Path, st: Staged) -> str:
    """SELECT of the kept rows in canonical column order (reads the file again)."""
    src = source_sql(sn, path, st)
    cols = [f"s.{c}" for c in C]
    join = ""
    if st.has_genres:
        k = C.index(schema.CATEGORY)
        cols[k] = f"coalesce(g.genre, s.{schema.CATEGORY}) AS {schema.CATEGORY}"
        join = f" LEFT JOIN {st.name('genres')} g ON s.{schema.ITEM} = g.item"
    where = "s.reason IS NULL"
    if st.has_dups:
        where += f" AND s.rid NOT IN (SELECT rid FROM {st.name('dups')})"
    return f"SELECT {', '.join(cols)} FROM ({scan_sql(plan, src)}) s{join} WHERE {where}"


def flags(cur: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """Counts of suspicious times among ``table``'s rows: before 1990, more than a day in the
    future, and far outside the bulk of the data (OUTLIER_MARGIN)."""
    T = schema.TS
    future = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    row = cur.execute(
        f"SELECT count(*) FILTER ({T} < TIMESTAMP '1990-01-01'), count(*) FILTER ({T} > ?), "
        f"min({T}), max({T}), approx_quantile({T}, [0.001, 0.999]) "
        f"FROM {table}", [future]).fetchone()
    out = {"ts_before_1990": int(row[0] or 0), "ts_in_future": int(row[1] or 0),
           "ts_outlier": 0}
    tmin, tmax, q = row[2:]
    if tmin is None or not q:
        return out
    lo, hi = q
    margin = max(OUTLIER_MARGIN, (hi - lo) * OUTLIER_SPAN_FRACTION)
    if tmin < lo - margin or tmax > hi + margin:
        out["ts_outlier"] = int(cur.execute(
            f"SELECT count(*) FROM {table} WHERE {T} < ? OR {T} > ?",
            [lo - margin, hi + margin]).fetchone()[0])
    return out


def drop(cur: duckdb.DuckDBPyConnection, st: Staged) -> None:
    for name in reversed(st.temp):
        cur.execute(f"DROP TABLE IF EXISTS {name}")

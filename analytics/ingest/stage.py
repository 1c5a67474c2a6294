"""Step 3 of an import, **stage**: the one DuckDB parse of the file into a staging table of the
workspace, with each row's reject reason, the registry stats, the time flags, the repeats and
the line numbers of the first rejected rows. The file is parsed once:

1. **stage** (the one scan of the file): every row is parsed into the canonical columns plus
   its reject reason (a CASE over the parsed values; NULL for a valid row) and appended, in
   file order, to a staging table of the workspace (``_ts_stage_<tag>``, committed on its
   own). A staged row's ``rowid`` is its position among the rows DuckDB read (DuckDB keeps
   insertion order); analytics/ingest/lines.py turns positions into line numbers. CSV
   columns are read as text and cast in SQL, except that plain ISO times and decimal
   numbers are first tried with DuckDB's typed reader (:func:`native_types`): it stops at
   the first value or line it refuses, and the file is then read as text after all.
2. **profile** (one aggregate over the staging table): rows per reason with the first
   positions of each, and over the valid rows the registry stats (users, items, time span,
   bounding box) and the time flags.
3. **duplicates** (unless kept): hashes of valid rows seen more than once are candidates;
   candidate rows are compared column by column (a window partitioned by every column), so a
   hash collision never drops a row, and the positions of the repeats go to a temp table.

The publish step (analytics/ingest/publish.py) then turns the staging table into the dataset.
Why the staging table is committed before the publish transaction: deleting rows that were
appended in the same transaction makes DuckDB rewrite the whole table at commit (+4.7 s CPU
at 10M rows, BENCHMARKS.md "Import"); deleting from committed rows only marks them. If
anything fails the importer drops the staging table, and one left behind by a crashed
process is dropped by the next import (:func:`drop_orphans`).

Everything runs on one cursor (temp tables are per connection) with the session time zone
pinned to UTC (analytics/ingest/timeparse.py).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from .. import schema
from ..geo import haversine_km
from . import timeparse
from .layout import Source
from .lines import lines_for
from .sql import category_sql, ident, lit
from .types import ALIAS, EXAMPLES_PER_REASON, REASONS, IngestError, Plan, Sniff

C = schema.COLUMNS
U, IT, T, LA, LO = schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON
#: The staging table's extra columns: the row's reject reason (NULL = valid), and what
#: happened to its location (NULL: valid or none given; LOC_DROPPED: invalid, dropped;
#: LOC_SWAPPED: dropped, but valid with latitude and longitude swapped).
REASON = "_reason"
LOC = "_loc"
LOC_DROPPED, LOC_SWAPPED = "x", "s"
#: Reasons decided row by row while staging (malformed: by the CSV reader; duplicate: later).
STAGE_PREFIX = "_ts_stage_"
#: Let DuckDB's CSV reader parse plain ISO times and decimal numbers itself (native_types);
#: ~10% less CPU than reading text and casting in SQL (BENCHMARKS.md "Import").
NATIVE = True
#: Flag times this far outside the central 99.8% of the data (or 5% of its span, if more).
OUTLIER_MARGIN = timedelta(days=1)
OUTLIER_SPAN_FRACTION = 0.05
#: Registry stats, in the order Store.save_dataset takes them.
STATS = ("rows", "users", "items", "time_min", "time_max", "min_lat", "max_lat", "min_lon",
         "max_lon")

_active_lock = threading.Lock()
_active: set[str] = set()  # tags of the imports running in this process


@dataclass
class Staged:
    """One import's table names and what the scans counted."""

    tag: str
    rows_read: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REASONS})
    example_rows: dict[str, list[int]] = field(default_factory=dict)  # row positions
    malformed_lines: list[int] = field(default_factory=list)
    examples: dict[str, list[int]] = field(default_factory=dict)  # file line numbers
    kept: int = 0  # valid rows that are no repeat
    stats: dict[str, Any] = field(default_factory=dict)  # STATS of the kept rows
    flags: dict[str, int] = field(default_factory=dict)
    has_dups: bool = False
    #: kept rows whose location was dropped, and those of them valid when swapped
    loc_dropped: int = 0
    loc_swapped: int = 0
    #: where the kept located rows lie (:func:`located_profile`)
    located: dict[str, Any] = field(default_factory=dict)
    has_genres: bool = False
    strict: bool = True
    serial: bool = False  # read with parallel=false (quoted newlines found past the head)
    native: list[str] = field(default_factory=list)  # fields the CSV reader parsed itself
    #: the local-time basis of the kept rows (analytics/ingest/localtime.py), saved in the
    #: report's ``extra["local_time"]`` by the publish transaction
    local_time: dict[str, Any] | None = None
    passes: int = 0
    temp: list[str] = field(default_factory=list)

    def name(self, what: str) -> str:
        return f"_ts_{what}_{self.tag}"

    @property
    def stage(self) -> str:
        return STAGE_PREFIX + self.tag


def new_staged() -> Staged:
    st = Staged(tag=uuid.uuid4().hex[:10])
    with _active_lock:
        _active.add(st.tag)
    return st


def prepare(cur: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    """Session settings and macros the plan's SQL relies on."""
    cur.execute(timeparse.SESSION_SQL)
    for sql in plan.macros:
        cur.execute(sql)


def drop_orphans(cur: duckdb.DuckDBPyConnection) -> None:
    """Drop staging tables that no running import owns (left by a crashed process)."""
    names = [r[0] for r in cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main' "
        f"AND starts_with(table_name, {lit(STAGE_PREFIX)})").fetchall()]
    with _active_lock:
        orphans = [n for n in names if n[len(STAGE_PREFIX):] not in _active]
    for n in orphans:
        try:
            cur.execute(f'DROP TABLE IF EXISTS "{n}"')
        except duckdb.Error:
            pass  # e.g. dropped by another import at the same moment


def run(cur: duckdb.DuckDBPyConnection, st: Staged, sn: Sniff, plan: Plan, src: Source,
        dedup: bool) -> None:
    """Stage the file as planned: parse, profile, find repeats (``dedup``), load the genres
    and map the first rejected rows to line numbers (``st.examples``)."""
    prepare(cur, plan)
    drop_orphans(cur)
    path = src.readable()
    stage(cur, sn, plan, path, st)
    profile(cur, st, dedup=dedup)
    if plan.genres_sql:
        load_genres(cur, st, plan.genres_sql)
    st.examples = examples(st, sn, path)


def examples(st: Staged, sn: Sniff, path: Path) -> dict[str, list[int]]:
    """First line numbers per reason (staged row positions mapped to the lines of ``path``,
    the file DuckDB read)."""
    wanted = sorted({r for rows in st.example_rows.values() for r in rows})
    lines = dict(zip(wanted, lines_for(
        wanted, path=path, compression="gzip" if sn.compression == "gzip" else "none",
        kind=sn.kind, first_data_line=sn.first_data_line, malformed=st.malformed_lines),
        strict=True))
    out = {reason: sorted(lines[r] for r in rows) for reason, rows in st.example_rows.items()}
    if st.malformed_lines:
        out["malformed"] = st.malformed_lines[:5]
    return {r: out[r] for r in REASONS if r in out}


# -- SQL building blocks -------------------------------------------------------------------
def source_sql(sn: Sniff, path: Path, st: Staged, native: dict[str, str] | None = None,
               ts_format: str | None = None) -> str:
    """The table function reading ``path``: CSV/JSON columns as VARCHAR, and each CSV read
    records its malformed lines in a fresh rejects table. With ``native`` (column -> type,
    :func:`native_types`) the CSV reader parses those columns itself and stops at the first
    line it cannot take (no rejects table)."""
    p = lit(str(path))
    if sn.kind == "parquet":
        return f"read_parquet({p})"
    types = {c: (native or {}).get(c, "VARCHAR") for c in sn.columns}
    cols = "{" + ", ".join(f"{lit(c)}: {lit(t)}" for c, t in types.items()) + "}"
    if sn.kind == "json":
        form = "array" if sn.variant == "array" else "newline_delimited"
        return f"read_json({p}, format={lit(form)}, columns={cols})"
    opts = [
        f"delim={lit(sn.delimiter or ',')}", f"header={'true' if sn.has_header else 'false'}",
        f"skip={sn.skip}", f"quote={lit(sn.quote)}", f"escape={lit(sn.quote)}",
        f"columns={cols}", "auto_detect=false", "null_padding=true",
        f"compression={lit('gzip' if sn.compression == 'gzip' else 'auto')}",
        f"encoding={lit(sn.encoding)}",
    ]
    if sn.multiline or st.serial:
        # DuckDB's parallel reader refuses null_padding with newlines inside quoted fields
        opts.append("parallel=false")
    if native:
        if ts_format:
            opts.append(f"timestampformat={lit(ts_format)}")
        return f"read_csv({p}, {', '.join(opts)})"
    st.passes += 1
    rejects = st.name(f"rejects{st.passes}")
    st.temp += [rejects, rejects + "_scan"]
    opts += ["store_rejects=true", f"rejects_table={lit(rejects)}",
             f"rejects_scan={lit(rejects + '_scan')}"]
    if not st.strict:
        opts.append("strict_mode=false")
    return f"read_csv({p}, {', '.join(opts)})"


_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def native_types(sn: Sniff, plan: Plan) -> dict[str, str]:
    """CSV columns DuckDB's reader may parse natively ({column: type}): a plain ISO time
    column (``plan.ts_format``) and decimal lat/lon/value columns, each feeding one field
    as is and looking the part in the sniffed sample. Whatever the reader accepts gets the
    value the text path (``plan.typed``) would give it; it refuses the rest."""
    if not NATIVE or sn.kind != "csv" or sn.padded:
        return {}
    wanted = {T: ("t", "TIMESTAMP", timeparse.ts_sql("t", "iso")),
              LA: ("la", "DOUBLE", "TRY_CAST(la AS DOUBLE)"),
              LO: ("lo", "DOUBLE", "TRY_CAST(lo AS DOUBLE)"),
              schema.VALUE: ("v", "DOUBLE", "TRY_CAST(v AS DOUBLE)")}
    out: dict[str, str] = {}
    for fld, (alias, typ, text_sql) in wanted.items():
        col = plan.mapping.get(fld)
        if (col is None or plan.typed[fld] != text_sql or plan.inner[alias] != ident(col)
                or sum(ident(col) in e for e in plan.inner.values()) != 1):
            continue
        samples = [r[sn.columns.index(col)] for r in sn.sample if len(r) == len(sn.columns)]
        if typ == "DOUBLE" and not all(_NUMBER.match(v) for v in samples if v):
            continue
        if typ == "TIMESTAMP" and plan.ts_format is None:
            continue
        out[col] = typ
    return out


def scan_sql(plan: Plan, source: str) -> str:
    """SELECT canonical columns, reason, location outcome: every row of the file, parsed, in
    file order. A location is optional: invalid coordinates (not numbers, out of range, one
    without the other, exactly 0,0, a string that is no geohash) are set NULL and marked in
    :data:`LOC`; the row is kept. Category lists of dicts become their names
    (:func:`~analytics.ingest.sql.category_sql`)."""
    inner = ", ".join(f"{sql} AS {alias}" for alias, sql in plan.inner.items())
    typed = ", ".join(f"{plan.typed[c]} AS {c}" for c in C)
    reason = (
        f"CASE WHEN {U} IS NULL THEN 'missing_user' WHEN {IT} IS NULL THEN 'missing_item' "
        f"WHEN t IS NULL THEN 'missing_time' WHEN {T} IS NULL THEN 'bad_time' "
        f"WHEN NOT {timeparse.in_range_sql(T)} THEN 'time_out_of_range' END")
    ok = (f"({LA} BETWEEN -90 AND 90 AND {LO} BETWEEN -180 AND 180 "
          f"AND NOT ({LA} = 0 AND {LO} = 0))")
    swapped = f"(abs({LA}) BETWEEN 90 AND 180 AND abs({LO}) <= 90)"
    loc = (f"CASE WHEN (la IS NOT NULL OR lo IS NOT NULL) AND NOT coalesce({ok}, false) "
           f"THEN CASE WHEN coalesce({swapped}, false) THEN {lit(LOC_SWAPPED)} "
           f"ELSE {lit(LOC_DROPPED)} END END")
    outer = {LA: f"CASE WHEN {ok} THEN {LA} END", LO: f"CASE WHEN {ok} THEN {LO} END",
             schema.CATEGORY: category_sql(schema.CATEGORY)}
    cols = ", ".join(f"{outer[c]} AS {c}" if c in outer else c for c in C)
    return (f"SELECT {cols}, {reason} AS {REASON}, {loc} AS {LOC} "
            f"FROM (SELECT {typed}, t, la, lo FROM (SELECT {inner} FROM {source}))")


def _as_ingest(exc: Exception, sn: Sniff, path: Path) -> IngestError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return IngestError(
        f"DuckDB could not read it as {sn.kind} ({first}). Check that the file is complete "
        "and uses one layout throughout, or name the format with --format",
        path=path, columns=sn.columns)


# -- 1. the one scan of the file -----------------------------------------------------------
def stage(cur: duckdb.DuckDBPyConnection, sn: Sniff, plan: Plan, path: Path,
          st: Staged) -> None:
    """Parse every row of ``path`` into the staging table (committed: autocommit cursor)."""
    if not cur.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]:
        raise IngestError("the workspace connection has preserve_insertion_order off, so rows "
                          "would not be staged in file order; turn it back on to import",
                          path=path)
    cols = ", ".join(f"{c} {schema.DUCKDB_TYPES[c]}" for c in C)
    cur.execute(f"CREATE TABLE {st.stage} ({cols}, {REASON} VARCHAR, {LOC} VARCHAR)")
    native = native_types(sn, plan)
    if native:
        fields = {col: fld for fld, col in plan.mapping.items() if col in native}
        typed_plan = replace(plan, typed={**plan.typed, **{
            f: ALIAS[f] for f in fields.values()}})
        try:
            cur.execute(f"INSERT INTO {st.stage} "
                        f"{scan_sql(typed_plan, source_sql(sn, path, st, native, plan.ts_format))}")
            st.native = sorted(fields.values())
            return  # read strictly and without rejects: no malformed line either
        except duckdb.Error:
            pass  # a value or line the typed reader refuses: the statement appended nothing

    def insert() -> None:
        cur.execute(f"INSERT INTO {st.stage} {scan_sql(plan, source_sql(sn, path, st))}")

    for _ in range(3):  # at most: serial read, then strict mode off
        try:
            insert()  # a failed statement appends nothing
            break
        except duckdb.Error as exc:
            text = str(exc)
            if sn.kind == "csv" and "parallel=false" in text and not st.serial:
                st.serial = True  # a quoted newline the head did not show
            elif (sn.kind == "csv" and isinstance(exc, duckdb.InvalidInputException)
                  and "strict_mode" in text and st.strict):
                st.strict = False  # e.g. mixed line endings: tolerate rows that break the rules
            else:
                raise _as_ingest(exc, sn, path) from exc
    if sn.kind == "csv":
        rejects = st.name(f"rejects{st.passes}")  # the rejects of the scan that staged
        st.malformed_lines = [int(r[0]) for r in cur.execute(
            f"SELECT DISTINCT line FROM {rejects} ORDER BY line").fetchall()]
        st.rejected["malformed"] = len(st.malformed_lines)
        st.rows_read += len(st.malformed_lines)


# -- 2. reasons, registry stats and flags ---------------------------------------------------
def _future() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)


def _time_aggregates(where: str) -> list[str]:
    """Rows before 1990 and in the future (a parameter), over the rows matching ``where``."""
    return [f"count(*) FILTER ({where} AND {T} < TIMESTAMP '1990-01-01')",
            f"count(*) FILTER ({where} AND {T} > ?)"]


def _stats_sql(table: str, where: str) -> str:
    """STATS and the two time counts of the rows of ``table`` matching ``where``. (Adding the
    time quantiles to this query would make DuckDB take a slow path for the distinct counts:
    1.6 s instead of 0.2 s at 10M rows.)"""
    mm = ", ".join(f"{f}({c})" for c in (T, LA, LO) for f in ("min", "max"))
    return (f"SELECT count(*), count(DISTINCT {U}), count(DISTINCT {IT}), {mm}, "
            f"{', '.join(_time_aggregates('TRUE'))} FROM {table} WHERE {where}")


def _outliers(cur: duckdb.DuckDBPyConnection, table: str, where: str, tmin: Any,
              tmax: Any) -> int:
    """Rows matching ``where`` far outside the central 99.8% of the times (OUTLIER_MARGIN).
    The quantiles are exact (:func:`time_quantiles`); they are computed only when the time
    span is wider than the margin."""
    if tmin is None or tmax - tmin <= OUTLIER_MARGIN:
        return 0
    lo, hi = time_quantiles(cur, table, where, (0.001, 0.999), tmin, tmax)
    margin = max(OUTLIER_MARGIN, (hi - lo) * OUTLIER_SPAN_FRACTION)
    if tmin >= lo - margin and tmax <= hi + margin:
        return 0
    return int(cur.execute(f"SELECT count(*) FROM {table} WHERE ({where}) AND ({T} < ? OR "
                           f"{T} > ?)", [lo - margin, hi + margin]).fetchone()[0])


#: Buckets of the times' histogram in :func:`time_quantiles`.
QUANTILE_BUCKETS = 65_536


def time_quantiles(cur: duckdb.DuckDBPyConnection, table: str, where: str,
                   qs: tuple[float, ...], tmin: datetime, tmax: datetime) -> list[datetime]:
    """``quantile_disc({T}, q)`` of the rows of ``table`` matching ``where`` for each ``q``
    (the value at sorted position ceil(q n) - 1, DuckDB's rule), with memory bounded
    whatever the rows: DuckDB's quantile holds every value (800 MB for 100M times, beyond an
    import's memory cap). A histogram of :data:`QUANTILE_BUCKETS` equal slices of [tmin,
    tmax] finds the slice holding each position, then that slice's times are sorted.
    ``tmin``/``tmax``: the rows' first and last time."""
    lo = int(cur.execute("SELECT epoch_us(?::TIMESTAMP)", [tmin]).fetchone()[0])
    span = int(cur.execute("SELECT epoch_us(?::TIMESTAMP)", [tmax]).fetchone()[0]) - lo
    width = max(1, span // QUANTILE_BUCKETS + 1)
    bucket = f"((epoch_us({T}) - {lo}) // {width})"
    counts = cur.execute(f"SELECT {bucket} AS b, count(*) FROM {table} WHERE {where} "
                         "GROUP BY 1 ORDER BY 1").fetchall()
    ends = list(itertools.accumulate(c for _, c in counts))  # rows up to each slice
    out = []
    for q in qs:
        k = max(math.ceil(q * ends[-1]) - 1, 0)  # the position sought, from 0
        i = bisect.bisect_right(ends, k)  # its slice
        out.append(cur.execute(f"SELECT {T} FROM {table} WHERE ({where}) AND {bucket} = ? "
                               f"ORDER BY {T} LIMIT 1 OFFSET ?",
                               [counts[i][0], k - (ends[i - 1] if i else 0)]).fetchone()[0])
    return out


def profile(cur: duckdb.DuckDBPyConnection, st: Staged, dedup: bool) -> None:
    """Count rows per reason (with first positions), find repeats, compute stats and flags:
    a few aggregates over the staging table, which is cheap next to parsing the file."""
    s, ok = st.stage, f"{REASON} IS NULL"
    for reason, n, first, dropped, swapped in cur.execute(
            f"SELECT {REASON}, count(*), min_by(rowid, rowid, {EXAMPLES_PER_REASON}) "
            f"FILTER ({REASON} IS NOT NULL), {_loc_counts()} FROM {s} GROUP BY ALL").fetchall():
        st.rows_read += int(n)
        if reason is not None:
            st.rejected[reason] = int(n)
            st.example_rows[reason] = sorted(int(x) for x in first)
        else:
            st.loc_dropped, st.loc_swapped = int(dropped), int(swapped)
    row = cur.execute(_stats_sql(s, ok), [_future()]).fetchone()
    st.stats = dict(zip(STATS, row[:9], strict=True))
    before, future = row[9:]
    if dedup and st.stats["rows"]:
        dup_before, dup_future, dup_dropped, dup_swapped = find_duplicates(cur, st)
        st.stats["rows"] -= st.rejected["duplicate"]
        before, future = before - dup_before, future - dup_future
        st.loc_dropped -= dup_dropped
        st.loc_swapped -= dup_swapped
    st.kept = st.stats["rows"]
    kept = kept_where(st)
    st.flags = {"ts_before_1990": int(before), "ts_in_future": int(future),
                "ts_outlier": _outliers(cur, s, kept, st.stats["time_min"],
                                        st.stats["time_max"]),
                "location_dropped": st.loc_dropped}
    st.located = located_profile(cur, s, kept, st.stats, SPREAD_KM)


def _loc_counts() -> str:
    """Rows whose location was dropped, and those of them valid when swapped."""
    return (f"count(*) FILTER ({LOC} IS NOT NULL), "
            f"count(*) FILTER ({LOC} = {lit(LOC_SWAPPED)})")


# -- where the located rows lie -------------------------------------------------------------
#: Latitudes beyond these are polar: hardly any event log has most of its points there, but
#: a log of the Americas' east or of India/Central Asia with latitude and longitude swapped
#: does (New York: lat -74, lon 40.7 lands in Antarctica).
POLAR_SOUTH, POLAR_NORTH = -60.0, 72.0
#: Latitude and longitude are said to be swapped when at least this share of the rows with
#: coordinates have a latitude beyond ±90 and a longitude that would be a valid latitude, or
#: at least this share of the located rows is polar but would not be when swapped.
SWAP_SHARE = 0.5
#: The located points are summarised by these quantiles (the spread ignores the outer 1%).
SPREAD_QUANTILES = (0.01, 0.5, 0.99)
#: Located points whose central 98% (a bounding box from the 1st to the 99th percentile of
#: latitude and longitude) spans a diagonal longer than this get a warning: one city, region
#: or country fits (the central 98% of a national log stays below), events spread over
#: continents do not (publish.location_warnings).
SPREAD_KM = 3000.0


def polar_swappable_sql(lat: str, lon: str) -> str:
    """SQL condition: the point is polar, and swapped it would not be."""
    return (f"(({lat} < {POLAR_SOUTH} OR {lat} > {POLAR_NORTH}) "
            f"AND {lon} BETWEEN {POLAR_SOUTH} AND {POLAR_NORTH})")


def polar_swappable(lat: float, lon: float) -> bool:
    """:func:`polar_swappable_sql` in Python (the sniff's check of the sampled rows)."""
    return (lat < POLAR_SOUTH or lat > POLAR_NORTH) and POLAR_SOUTH <= lon <= POLAR_NORTH


def located_profile(cur: duckdb.DuckDBPyConnection, table: str, where: str,
                    stats: dict[str, Any], spread_km: float) -> dict[str, Any]:
    """Where the located rows of ``table`` matching ``where`` lie: how many (``rows``) and
    their distinct items (``items``); when the bounding box of ``stats`` (the rows' STATS)
    is wider than ``spread_km`` or reaches a polar latitude, also the :data:`SPREAD_QUANTILES`
    of latitude and longitude (``lat_q``, ``lon_q``) and how many points are polar but would
    not be when swapped (``polar_swappable``). Empty without coordinates. Each scan is paid
    only when needed: most files have one city, every row located."""
    if stats.get("min_lat") is None:
        return {}
    located = f"({where}) AND {LA} IS NOT NULL"
    n = int(cur.execute(f"SELECT count(*) FROM {table} WHERE {located}").fetchone()[0])
    items = stats["items"] if n == stats["rows"] else int(cur.execute(
        f"SELECT count(DISTINCT {IT}) FROM {table} WHERE {located}").fetchone()[0])
    out: dict[str, Any] = {"rows": n, "items": items}
    wide = float(haversine_km(stats["min_lat"], stats["min_lon"], stats["max_lat"],
                              stats["max_lon"])) > spread_km
    if wide or stats["min_lat"] < POLAR_SOUTH or stats["max_lat"] > POLAR_NORTH:
        q = list(SPREAD_QUANTILES)
        lat_q, lon_q, polar = cur.execute(
            f"SELECT quantile_disc({LA}, {q}), quantile_disc({LO}, {q}), "
            f"count(*) FILTER ({polar_swappable_sql(LA, LO)}) FROM {table} "
            f"WHERE {located}").fetchone()
        out.update(lat_q=[float(x) for x in lat_q], lon_q=[float(x) for x in lon_q],
                   polar_swappable=int(polar))
    return out


# -- 3. exact duplicates --------------------------------------------------------------------
def find_duplicates(cur: duckdb.DuckDBPyConnection,
                    st: Staged) -> tuple[int, int, int, int]:
    """Positions of exact repeats of an earlier valid row, in a temp table. Returns how many
    of the repeats are before 1990, in the future, without their location and without a
    location valid when swapped (to take them off the flags)."""
    s, cols, ok = st.stage, ", ".join(C), f"{REASON} IS NULL"
    cands, dups = st.name("cands"), st.name("dups")
    st.temp += [cands, dups]
    cur.execute(f"CREATE TEMP TABLE {cands} AS SELECT h FROM (SELECT hash({cols}) AS h "
                f"FROM {s} WHERE {ok}) GROUP BY h HAVING count(*) > 1")
    if not cur.execute(f"SELECT count(*) FROM {cands}").fetchone()[0]:
        return 0, 0, 0, 0
    cur.execute(f"CREATE TEMP TABLE {dups} AS SELECT rid, {T}, {LOC} FROM (SELECT rowid AS rid, "
                f"{T}, {LOC}, row_number() OVER (PARTITION BY {cols} ORDER BY rowid) AS k "
                f"FROM {s} WHERE {ok} AND hash({cols}) IN (SELECT h FROM {cands})) WHERE k > 1")
    aggs = ["count(*)", f"min_by(rid, rid, {EXAMPLES_PER_REASON})", *_time_aggregates("TRUE"),
            _loc_counts()]
    n, first, before, future, dropped, swapped = cur.execute(
        f"SELECT {', '.join(aggs)} FROM {dups}", [_future()]).fetchone()
    st.rejected["duplicate"] = int(n)
    st.has_dups = bool(n)
    if n:
        st.example_rows["duplicate"] = sorted(int(x) for x in first)
    return int(before), int(future), int(dropped), int(swapped)


def load_genres(cur: duckdb.DuckDBPyConnection, st: Staged, genres_sql: str) -> None:
    """Temp (item, genre) table for MovieLens categories."""
    name = st.name("genres")
    st.temp.append(name)
    cur.execute(f"CREATE TEMP TABLE {name} AS SELECT DISTINCT ON (item) item, genre "
                f"FROM ({genres_sql}) WHERE item IS NOT NULL")
    st.has_genres = True


def kept_where(st: Staged) -> str:
    """The condition selecting the kept rows of the staging table (before :func:`prune`)."""
    where = f"{REASON} IS NULL"
    if st.has_dups:
        where += f" AND rowid NOT IN (SELECT rid FROM {st.name('dups')})"
    return where


# -- stats of derived events and cleanup --------------------------------------------------
def table_stats(cur: duckdb.DuckDBPyConnection, table: str) -> tuple[dict[str, Any],
                                                                     dict[str, int]]:
    """STATS and flags of every row of ``table`` (e.g. GeoLife's stay points)."""
    row = cur.execute(_stats_sql(table, "TRUE"), [_future()]).fetchone()
    stats = dict(zip(STATS, row[:9], strict=True))
    flags = {"ts_before_1990": int(row[9]), "ts_in_future": int(row[10]),
             "ts_outlier": _outliers(cur, table, "TRUE", stats["time_min"], stats["time_max"])}
    return stats, flags


def drop(cur: duckdb.DuckDBPyConnection, st: Staged) -> None:
    """Drop the import's temp tables and (if still there) its staging table."""
    try:
        for name in [*reversed(st.temp), st.stage]:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
    finally:
        with _active_lock:
            _active.discard(st.tag)


def cleanup(cur: duckdb.DuckDBPyConnection, st: Staged) -> None:
    """:func:`drop`, at the end of an import that may have failed: a staging table that
    cannot be dropped now is dropped by the next import."""
    try:
        drop(cur, st)
    except duckdb.Error:
        pass  # temp tables vanish with the cursor, a staging table with the next import

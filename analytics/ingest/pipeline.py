"""The importer: a file of events -> a dataset in the workspace, plus a report of what was kept,
what was rejected and why.

    sn = sniff("checkins.csv.gz")                  # format, columns, mapping guess, preview
    report = import_file(store, "checkins.csv.gz", name="nyc")
    report.to_json()                               # rows read/kept/rejected by reason, ...

Formats (``FORMATS``), recognised from the content or named with ``fmt``: Foursquare TSMC2014
(raw TSV, processed CSVs, the reconstructed NYC file), SNAP Gowalla/Brightkite, Taobao
UserBehavior, Tianchi mobile, MovieLens (u.data, ratings.dat, ratings.csv), GeoLife GPS fixes
(-> stay-point events) and generic CSV/TSV/Parquet/JSON lines (plain, .gz or .zip) whose
columns are guessed from their names or given by ``mapping`` (canonical field -> column).

The file is parsed once, in DuckDB SQL, into a staging table of the workspace
(analytics/ingest_sql.py); rows are rejected per reason (``REASONS``; the report keeps the
first line numbers of each), repeats found, suspicious times flagged and the registry stats
computed from it, and ``Store.save_dataset`` turns it into the dataset, registry row and final
report included, in one transaction, so a dataset appears whole or not at all.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .. import schema
from ..store import Store, StoreError
from . import stage as ingest_sql
from .detect import readable_path
from .formats.geolife import StayParams, events_from_fixes
from .lines import lines_for
from .plans import build_plan
from .sniff import sniff
from .types import FIELDS, FLAGS, FORMATS, REASONS, ImportReport, IngestError, Sniff

__all__ = ["FORMATS", "FIELDS", "REASONS", "FLAGS", "IngestError", "Sniff", "ImportReport",
           "sniff", "import_file", "default_name"]

#: While an import runs, DuckDB may hold at most this fraction of the file's size in memory
#: (but at least MIN_MEMORY_MB) and spills to the workspace's temp folder beyond that, so an
#: import's peak memory stays below the file's size. The previous limit is restored after.
MEMORY_FRACTION = 0.4
MIN_MEMORY_MB = 256
_cap_lock = threading.Lock()
_cap_state: dict[str, Any] = {"active": 0, "saved": None}

_SUFFIXES = {".gz", ".zip", ".csv", ".tsv", ".txt", ".dat", ".data", ".parquet", ".pq",
             ".json", ".jsonl", ".ndjson", ".plt"}


def default_name(path: str | Path) -> str:
    """A dataset name from a file name: known extensions dropped, other characters -> ``_``."""
    name = Path(path).name
    while Path(name).suffix.lower() in _SUFFIXES:
        name = name[: -len(Path(name).suffix)]
    name = re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_-")[:64].rstrip("_-")
    return name or "dataset"


def import_file(store: Store, path: str | Path, name: str | None = None, fmt: str = "auto",
                mapping: dict[str, str] | None = None, replace: bool = False,
                keep_duplicates: bool = False, *,
                stay_params: dict[str, float] | None = None) -> ImportReport:
    """Import ``path`` into ``store`` as dataset ``name`` (default: from the file name).

    ``mapping`` overrides the guessed source column of canonical fields (``{"user_id": "uid"}``;
    an empty value unmaps a field). ``keep_duplicates`` keeps exact repeats of earlier rows.
    ``stay_params`` tunes GeoLife stay points (dist_m, min_minutes, cluster_m).
    Raises IngestError for a file or mapping that cannot be imported, StoreError when the name
    is taken and ``replace`` is false; either way the workspace is left unchanged.
    """
    t0 = time.perf_counter()
    path = Path(path)
    sn = sniff(path, fmt)
    name = _check_name(name if name else default_name(path), path)
    if store.exists(name) and not replace:
        raise StoreError(f"dataset {name!r} already exists; pass --replace to overwrite it "
                         "or --name to import under another name")
    plan = build_plan(sn, path, mapping)
    try:
        params = StayParams.from_dict(stay_params) if plan.stay_points else None
    except (TypeError, ValueError) as exc:
        raise IngestError(str(exc), path=path) from exc
    st = ingest_sql.new_staged()
    cur = store.cursor()
    view = st.name("events")
    try:
        with ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="trailscope-import-"))
            rpath = stack.enter_context(readable_path(path, sn.compression, sn.member,
                                                      Path(tmp)))
            ingest_sql.prepare(cur)
            ingest_sql.drop_orphans(cur)
            stack.enter_context(_memory_cap(cur, path.stat().st_size))
            ingest_sql.stage(cur, sn, plan, rpath, st)
            ingest_sql.profile(cur, st, dedup=not keep_duplicates)
            if plan.genres_sql:
                ingest_sql.load_genres(cur, st, plan.genres_sql)
            examples = _examples(st, sn, rpath)
            rejected = sum(st.rejected.values())
            extra = _extra(sn, plan, st)
            stats, flags = st.stats, st.flags
            if plan.stay_points:
                fixes = cur.execute(
                    f"SELECT {schema.USER}, {schema.TS}, {schema.LAT}, {schema.LON} FROM "
                    f"{st.stage} WHERE {ingest_sql.kept_where(st)} "
                    f"ORDER BY {schema.USER}, {schema.TS}").df()
                events, summary = events_from_fixes(fixes, params or StayParams())
                extra.update(summary)
                cur.register(view, events)
                stats, flags = ingest_sql.table_stats(cur, view)
            if stats["rows"] == 0:
                raise _nothing_kept(path, sn, st, examples, plan.stay_points)
            report = ImportReport(
                name=name, source=str(path), format=sn.format, rows_read=st.rows_read,
                rows_kept=stats["rows"], rows_rejected=rejected,
                rejected_by_reason={k: v for k, v in st.rejected.items() if v},
                examples=examples, flags=flags, users=stats["users"], items=stats["items"],
                time_min=stats["time_min"], time_max=stats["time_max"],
                has_coordinates=stats["min_lat"] is not None,
                seconds=time.perf_counter() - t0, mapping=dict(plan.mapping), extra=extra)
            if plan.stay_points:
                info = store.save_dataset(
                    name, f"SELECT {', '.join(schema.COLUMNS)} FROM {view}", source=str(path),
                    fmt=sn.format, report=report.to_json(), replace=replace, con=cur,
                    stats=stats)
            else:
                info = store.save_dataset(
                    name, staged=st.stage, prepare=lambda c: ingest_sql.prune(c, st),
                    source=str(path), fmt=sn.format, report=report.to_json(),
                    replace=replace, con=cur, stats=stats)
    finally:
        _cleanup(cur, st, view)
    report.rows_kept = info.rows
    return report


_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30, "TIB": 2**40}


def _bytes(setting: str) -> float | None:
    m = re.match(r"^\s*([\d.]+)\s*([A-Za-z]+)\s*$", setting or "")
    if not m or m.group(2).upper() not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2).upper()]


@contextmanager
def _memory_cap(cur: duckdb.DuckDBPyConnection, file_bytes: int) -> Iterator[None]:
    """Lower DuckDB's (instance-wide) memory limit for the import, then restore it. Nested
    or concurrent imports share one cap; the last one out restores the original value."""
    cap = max(MIN_MEMORY_MB * 2**20, MEMORY_FRACTION * file_bytes)
    with _cap_lock:
        current = cur.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        now = _bytes(str(current))
        if _cap_state["active"] == 0:
            _cap_state["saved"] = None
            if now is not None and cap < now:
                _cap_state["saved"] = str(current)
                cur.execute(f"SET memory_limit = '{int(cap // 2**20)}MiB'")
        _cap_state["active"] += 1
    try:
        yield
    finally:
        with _cap_lock:
            _cap_state["active"] -= 1
            if _cap_state["active"] == 0 and _cap_state["saved"]:
                cur.execute(f"SET memory_limit = '{_cap_state['saved']}'")
                _cap_state["saved"] = None


def _extra(sn: Sniff, plan: Any, st: ingest_sql.Staged) -> dict[str, Any]:
    extra: dict[str, Any] = {"variant": sn.variant, "time_format": plan.ts_kind}
    if st.native:
        extra["read_natively"] = st.native  # parsed by DuckDB's CSV reader, not SQL casts
    notes = list(plan.notes)
    if not st.strict:
        notes.append("read with strict CSV parsing off (mixed line endings or similar): "
                     "rows with too many fields were cut, not rejected")
    if notes:
        extra["notes"] = notes
    return extra


def _check_name(name: str, path: Path) -> str:
    try:
        return schema.check_dataset_name(name)
    except ValueError as exc:
        raise IngestError(f"{exc}; choose another name with --name", path=path) from exc


def _examples(st: ingest_sql.Staged, sn: Sniff, rpath: Path) -> dict[str, list[int]]:
    """First line numbers per reason (staged row positions mapped to file lines)."""
    wanted = sorted({r for rows in st.example_rows.values() for r in rows})
    lines = dict(zip(wanted, lines_for(
        wanted, path=rpath, compression="gzip" if sn.compression == "gzip" else "none",
        kind=sn.kind, first_data_line=sn.first_data_line, malformed=st.malformed_lines),
        strict=True))
    out = {reason: sorted(lines[r] for r in rows) for reason, rows in st.example_rows.items()}
    if st.malformed_lines:
        out["malformed"] = st.malformed_lines[:5]
    return {r: out[r] for r in REASONS if r in out}


def _nothing_kept(path: Path, sn: Sniff, st: ingest_sql.Staged,
                  examples: dict[str, list[int]], stays: bool) -> IngestError:
    if stays and st.rows_read > sum(st.rejected.values()):
        return IngestError("no stay points found in the GPS fixes (nobody stayed within the "
                           "distance for the minimum time); loosen stay_params", path=path)
    if st.rows_read == 0:
        return IngestError("has no data rows", path=path, columns=sn.columns)
    why = ", ".join(f"{n:,} {r} (e.g. line {examples.get(r, ['?'])[0]})"
                    for r, n in st.rejected.items() if n)
    return IngestError(f"every one of the {st.rows_read:,} rows was rejected: {why}. Check "
                       "the column mapping and the time format", path=path,
                       columns=sn.columns)


def _cleanup(cur: duckdb.DuckDBPyConnection, st: ingest_sql.Staged, view: str) -> None:
    """Drop the import's temp tables and its staging table (unless it became the dataset).
    A staging table that cannot be dropped now is dropped by the next import."""
    try:
        ingest_sql.drop(cur, st)
    except duckdb.Error:
        pass  # temp tables vanish with the cursor, a staging table with the next import
    try:
        cur.unregister(view)
    except duckdb.Error:
        pass
    finally:
        cur.close()


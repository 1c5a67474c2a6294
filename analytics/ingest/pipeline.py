"""The importer: a file of events -> a dataset in the workspace, plus a report of what was kept,
what was rejected and why. The public entry points live here:

    sn = sniff("checkins.csv.gz")                  # format, columns, mapping guess, preview
    report = import_file(store, "checkins.csv.gz", name="nyc")
    report.to_json()                               # rows read/kept/rejected by reason, ...

Formats (``FORMATS``, one module each in analytics/ingest/formats/, listed in
formats/registry.py), recognised from the content or named with ``fmt``: Foursquare TSMC2014
(raw TSV, processed CSVs, the reconstructed NYC file), SNAP Gowalla/Brightkite, Taobao
UserBehavior, Tianchi mobile, MovieLens (u.data, ratings.dat, ratings.csv), GeoLife GPS fixes
(-> stay-point events) and generic CSV/TSV/Parquet/JSON lines (plain, .gz or .zip) whose
columns are guessed from their names or given by ``mapping`` (canonical field -> column).

One import opens the file once (:class:`~analytics.ingest.layout.Source`) and runs four steps,
one module each:

1. **sniff** (sniff.py): layout and format from the file's head;
2. **plan** (plan.py): the column plan, source column and SQL per canonical field;
3. **stage** (stage.py): the one DuckDB parse into a staging table, with reject reasons
   (``REASONS``; the report keeps the first line numbers of each), repeats, time flags and
   registry stats;
4. **publish** (publish.py): ``Store.save_dataset`` turns it into the dataset, registry row and
   final report included, in one transaction, so a dataset appears whole or not at all.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .. import schema
from ..store import Store, StoreError
from . import localtime, stage, timeparse
from .formats.base import Format
from .formats.registry import FORMATS, get
from .layout import Source
from .plan import build_plan, offset_basis
from .publish import publish
from .sniff import check_format, sniff, sniff_source
from .types import FIELDS, FLAGS, REASONS, ImportReport, IngestError, Plan, Sniff, without_paths

__all__ = ["FORMATS", "FIELDS", "REASONS", "FLAGS", "IngestError", "Sniff", "ImportReport",
           "sniff", "import_file", "default_name"]

#: While an import runs, DuckDB may hold at most this fraction of the file's unpacked size in
#: memory (but at least MIN_MEMORY_MB and at most MAX_MEMORY_MB) and spills to the workspace's
#: temp folder beyond that, so an import's peak memory stays below the data's size (the
#: unpacked size, counted within the decompression limits of layout.py: a zip's or gzip's
#: packed size says little) and under 2 GB for any file (issue #15: 100M events). The
#: previous limit is restored after. The process holds about 800 MB beside DuckDB's share: at
#: 100M Taobao-shaped rows a 1,280 MiB cap peaked at 2,025-2,046 MB, 1,024 MiB at
#: 1,832-1,836 MB in the same wall time (108-121 s against 109-117 s, 2026-12-07).
MEMORY_FRACTION = 0.4
MIN_MEMORY_MB = 256
MAX_MEMORY_MB = 1024
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
    started = time.perf_counter()
    path = Path(path)
    fmt = check_format(fmt)
    with Source(path, store.temp_dir) as src:
        sn = sniff_source(src, fmt)  # 1. sniff
        name = _check_name(name if name else default_name(path), path)
        with store.claim(name):  # a second import to this name is told it is being imported
            if store.exists(name) and not replace:
                raise StoreError(f"dataset {name!r} already exists (names ignore case); pass "
                                 "--replace to overwrite it or --name to import under another "
                                 "name")
            form = get(sn.format)
            plan = build_plan(sn, form, path, mapping)  # 2. plan
            try:
                params = form.derive.params(stay_params) if form.derive else None
            except (TypeError, ValueError) as exc:
                raise IngestError(str(exc), path=path) from exc
            return _stage_and_publish(store, src, sn, plan, form, params, name=name,
                                      replace=replace, keep_duplicates=keep_duplicates,
                                      started=started)


def _stage_and_publish(store: Store, src: Source, sn: Sniff, plan: Plan, form: Format,
                       params: Any, *, name: str, replace: bool, keep_duplicates: bool,
                       started: float) -> ImportReport:
    """Steps 3 and 4 on one cursor under the import's memory cap. A failed import drops its
    staging table and checkpoints, so the workspace file does not keep the space."""
    path = src.path
    st = stage.new_staged()
    cur = store.cursor()
    ok = False
    try:
        with _memory_cap(cur, src.size()):
            stage.run(cur, st, sn, plan, src, dedup=not keep_duplicates)  # 3. stage
            _check_unix_times(st, plan, sn, path)
            if not form.derive:  # local time of each event, saved with the dataset
                st.local_time = localtime.fill(cur, st.stage, stage.kept_where(st),
                                               offset_basis(plan))
            report = publish(store, cur, st, sn, plan, name=name, source=path,  # 4. publish
                             derive=form.derive, params=params, replace=replace,
                             started=started)
        ok = True
    except duckdb.OutOfMemoryException as exc:
        raise IngestError(
            f"the import ran out of memory ({_first_line(exc)}); free memory or split the "
            "file and import the parts under different names", path=path) from exc
    except duckdb.Error as exc:  # not the file's fault (those are IngestErrors): say so
        why = without_paths(_first_line(exc))
        raise StoreError(f"the import of {path.name} as {name!r} failed in the workspace "
                         f"database ({why}); the workspace is unchanged: try again") from exc
    finally:
        stage.cleanup(cur, st)
        if not ok:
            _checkpoint(cur)
        cur.close()
    if form.derive:
        _local_time_of_derived(store, report)
    return report


def _local_time_of_derived(store: Store, report: ImportReport) -> None:
    """Local time of derived events (GeoLife's stay points), which are made while publishing:
    filled in the saved dataset, the basis then put in its report (``extra["local_time"]``,
    what the pages say about their clock: analytics.spacetime.clock_text). Should that fail,
    the stay points stay in UTC and the report has no ``local_time``, which the pages read
    as before this step. Other imports save their basis in the publish transaction."""
    cur = store.cursor()
    try:
        local = localtime.fill(cur, store.table(report.name))
    except duckdb.Error:
        return
    finally:
        cur.close()
    report.extra["local_time"] = local
    store.update_report(report.name, report.to_json())


def _check_unix_times(st: stage.Staged, plan: Plan, sn: Sniff, path: Path) -> None:
    """IngestError when every kept time, read from numbers as unix time, is before 1990:
    the mapped column holds something else (hours, weekdays, counts), which the sampled
    head did not show (plan.check_is_time)."""
    before = st.flags.get("ts_before_1990", 0)
    if plan.ts_kind != "unix" or not st.kept or before < st.kept:
        return
    lo, hi = st.stats["time_min"], st.stats["time_max"]
    col = plan.mapping.get(schema.TS)
    raise IngestError(
        f"read as unix time (seconds or milliseconds since 1970), every one of its "
        f"{st.kept:,} times falls between {lo:%Y-%m-%d} and {hi:%Y-%m-%d}, before 1990: "
        f"they look like counts or codes, not timestamps; {timeparse.not_a_time_help()}",
        path=path, column=col, columns=sn.columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _checkpoint(cur: duckdb.DuckDBPyConnection) -> None:
    """CHECKPOINT after a failed import, so the file gives back its staging table's blocks
    (skipped, never forced, while another transaction writes)."""
    try:
        cur.execute("CHECKPOINT")
    except duckdb.Error:
        pass  # another writer is active: its own checkpoint reclaims the space


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
    cap = min(MAX_MEMORY_MB * 2**20, max(MIN_MEMORY_MB * 2**20, MEMORY_FRACTION * file_bytes))
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


def _check_name(name: str, path: Path) -> str:
    try:
        return schema.clean_dataset_name(name)
    except ValueError as exc:
        raise IngestError(f"{exc}; choose another name with --name", path=path) from exc

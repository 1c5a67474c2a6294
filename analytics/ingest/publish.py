"""Step 4 of an import, **publish**: the staged rows become the dataset, in one
``Store.save_dataset`` transaction that also writes the registry row and the final report, so a
dataset appears whole or not at all.

The kept rows are published as they are (:func:`prune` deletes the rejected and repeated rows
of the staging table, applies MovieLens genres and drops the reason column, inside the
transaction), unless the format derives other events from them (GeoLife: GPS fixes -> stay
points, formats/geolife.py), which are then saved from a registered DataFrame.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb

from .. import schema
from ..store import Store
from .formats.base import Derive
from .stage import REASON, Staged, kept_where, table_stats
from .types import ImportReport, IngestError, Plan, Sniff


def publish(store: Store, cur: duckdb.DuckDBPyConnection, st: Staged, sn: Sniff, plan: Plan,
            *, name: str, source: Path, derive: Derive | None, params: Any, replace: bool,
            started: float) -> ImportReport:
    """Save the staged import as dataset ``name`` and return its report (``started``: the
    import's ``time.perf_counter()`` at the start, for ``seconds``)."""
    extra = _extra(sn, plan, st)
    stats, flags = st.stats, st.flags
    view: str | None = None  # the derived events, registered on the cursor
    try:
        if derive is not None:
            view = st.name("events")
            cols = ", ".join(derive.inputs)
            rows = cur.execute(f"SELECT {cols} FROM {st.stage} WHERE {kept_where(st)} "
                               f"ORDER BY {schema.USER}, {schema.TS}").df()
            events, summary = derive.events(rows, params)
            extra.update(summary)
            cur.register(view, events)
            stats, flags = table_stats(cur, view)
        if stats["rows"] == 0:
            raise _nothing_kept(source, sn, st, derive)
        report = ImportReport(
            name=name, source=str(source), format=sn.format, rows_read=st.rows_read,
            rows_kept=stats["rows"], rows_rejected=sum(st.rejected.values()),
            rejected_by_reason={k: v for k, v in st.rejected.items() if v},
            examples=st.examples, flags=flags, users=stats["users"], items=stats["items"],
            time_min=stats["time_min"], time_max=stats["time_max"],
            has_coordinates=stats["min_lat"] is not None,
            seconds=time.perf_counter() - started, mapping=dict(plan.mapping), extra=extra)
        if view is not None:
            info = store.save_dataset(
                name, f"SELECT {', '.join(schema.COLUMNS)} FROM {view}", source=str(source),
                fmt=sn.format, report=report.to_json(), replace=replace, con=cur, stats=stats)
        else:
            info = store.save_dataset(
                name, staged=st.stage, prepare=lambda c: prune(c, st), source=str(source),
                fmt=sn.format, report=report.to_json(), replace=replace, con=cur, stats=stats)
    finally:
        if view is not None:
            try:
                cur.unregister(view)
            except duckdb.Error:
                pass  # never registered: the derivation failed first
    report.rows_kept = info.rows
    return report


def prune(cur: duckdb.DuckDBPyConnection, st: Staged) -> None:
    """Turn the staging table into the dataset's rows (inside the publish transaction)."""
    s = st.stage
    drop = []
    if any(n for r, n in st.rejected.items() if r not in ("malformed", "duplicate")):
        drop.append(f"{REASON} IS NOT NULL")
    if st.has_dups:
        drop.append(f"rowid IN (SELECT rid FROM {st.name('dups')})")
    if drop:
        cur.execute(f"DELETE FROM {s} WHERE {' OR '.join(drop)}")
    if st.has_genres:
        g = st.name("genres")
        cur.execute(f"UPDATE {s} SET {schema.CATEGORY} = {g}.genre FROM {g} "
                    f"WHERE {s}.{schema.ITEM} = {g}.item AND {g}.genre IS NOT NULL")
    cur.execute(f"ALTER TABLE {s} DROP COLUMN {REASON}")


def _extra(sn: Sniff, plan: Plan, st: Staged) -> dict[str, Any]:
    extra: dict[str, Any] = {"variant": sn.variant, "time_format": plan.ts_kind}
    if st.native:
        extra["read_natively"] = st.native  # parsed by DuckDB's CSV reader, not SQL casts
    notes = list(plan.notes)
    if sn.multiline or st.serial:
        notes.append("some quoted values span lines (read serially); the example line numbers "
                     "count one line per row, so after such a value they point too early")
    if not st.strict:
        notes.append("read with strict CSV parsing off (mixed line endings or similar): "
                     "rows with too many fields were cut, not rejected")
    if notes:
        extra["notes"] = notes
    return extra


def _nothing_kept(path: Path, sn: Sniff, st: Staged, derive: Derive | None) -> IngestError:
    if derive is not None and st.rows_read > sum(st.rejected.values()):
        return IngestError(derive.empty, path=path)
    if st.rows_read == 0:
        return IngestError("has no data rows", path=path, columns=sn.columns)
    why = ", ".join(f"{n:,} {r} (e.g. line {st.examples.get(r, ['?'])[0]})"
                    for r, n in st.rejected.items() if n)
    return IngestError(f"every one of the {st.rows_read:,} rows was rejected: {why}. Check "
                       "the column mapping and the time format", path=path,
                       columns=sn.columns)

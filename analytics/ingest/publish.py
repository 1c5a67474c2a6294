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
from ..geo import haversine_km
from ..store import Store
from .formats.base import Derive
from .stage import (
    LOC,
    POLAR_SOUTH,
    REASON,
    SPREAD_KM,
    SWAP_SHARE,
    Staged,
    kept_where,
    located_profile,
    table_stats,
)
from .types import ImportReport, IngestError, Plan, Sniff


def publish(store: Store, cur: duckdb.DuckDBPyConnection, st: Staged, sn: Sniff, plan: Plan,
            *, name: str, source: Path, derive: Derive | None, params: Any, replace: bool,
            started: float) -> ImportReport:
    """Save the staged import as dataset ``name`` and return its report (``started``: the
    import's ``time.perf_counter()`` at the start, for ``seconds``)."""
    extra = _extra(sn, plan, st)
    stats, flags, located = st.stats, st.flags, st.located
    # where the staged rows lie (for a derived dataset: its input, e.g. GPS fixes)
    warnings = location_warnings(st.located, st.loc_dropped, st.loc_swapped, plan.mapping)
    view: str | None = None  # the derived events, registered on the cursor
    try:
        if derive is not None:
            view = st.name("events")
            cols = ", ".join(derive.inputs)
            located_only = f" AND {schema.LAT} IS NOT NULL" if schema.LAT in derive.inputs else ""
            rows = cur.execute(f"SELECT {cols} FROM {st.stage} WHERE {kept_where(st)}"
                               f"{located_only} ORDER BY {schema.USER}, {schema.TS}").df()
            events, summary = derive.events(rows, params)
            extra.update(summary)
            cur.register(view, events)
            stats, flags = table_stats(cur, view)
            flags["location_dropped"] = st.loc_dropped  # input rows without a valid location
            located = located_profile(cur, view, "TRUE", stats, SPREAD_KM)
        if stats["rows"] == 0:
            if warnings:  # e.g. every location dropped as latitude and longitude are swapped
                raise IngestError(" ".join(warnings), path=source)
            raise _nothing_kept(source, sn, st, derive)
        report = ImportReport(
            name=name, source=str(source), format=sn.format, rows_read=st.rows_read,
            rows_kept=stats["rows"], rows_rejected=sum(st.rejected.values()),
            rejected_by_reason={k: v for k, v in st.rejected.items() if v},
            examples=st.examples, flags=flags, users=stats["users"], items=stats["items"],
            time_min=stats["time_min"], time_max=stats["time_max"],
            has_coordinates=stats["min_lat"] is not None,
            seconds=time.perf_counter() - started, mapping=dict(plan.mapping), extra=extra,
            located_rows=located.get("rows", 0), located_items=located.get("items", 0),
            warnings=warnings, notes=_notes(sn, plan, st, derived=derive is not None))
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
    cur.execute(f"ALTER TABLE {s} DROP COLUMN {LOC}")


def _extra(sn: Sniff, plan: Plan, st: Staged) -> dict[str, Any]:
    """How the file was read, as data (not shown as such to the user: :func:`_notes`)."""
    extra: dict[str, Any] = {"variant": sn.variant, "time_format": plan.ts_kind}
    if st.native:
        extra["read_natively"] = st.native  # parsed by DuckDB's CSV reader, not SQL casts
    if st.local_time is not None:
        extra["local_time"] = st.local_time
    return extra


def _notes(sn: Sniff, plan: Plan, st: Staged, derived: bool) -> list[str]:
    """How the file was read and what was kept, in sentences for the user."""
    notes = [*sn.notes, *plan.notes]
    if sn.multiline or st.serial:
        notes.append("Some quoted values span several lines. The example line numbers count "
                     "one line per row, so after such a value they point a little too early.")
    if not st.strict:
        notes.append("Some lines break the CSV rules (mixed line endings or similar): rows "
                     "with too many fields were cut to the file's columns, not rejected.")
    if st.loc_dropped and derived:
        notes.append(f"{st.loc_dropped:,} {'row' if st.loc_dropped == 1 else 'rows'} without "
                     "valid coordinates (not numbers, out of range, only one of the two, "
                     "exactly 0,0) were left out: the events are derived from locations.")
    elif st.loc_dropped:
        notes.append(f"{st.loc_dropped:,} {_events(st.loc_dropped)} kept without a location: "
                     "their coordinates were invalid or implausible (not numbers, outside "
                     "±90° latitude or ±180° longitude, only one of the two, exactly 0,0, or "
                     "not a geohash).")
    return notes


def _events(n: int) -> str:
    return "event" if n == 1 else "events"


def _where(lat: float, lon: float) -> str:
    return f"{lat:.2f}, {lon:.2f}"


def location_warnings(located: dict[str, Any], dropped: int, swapped: int,
                      mapping: dict[str, str]) -> list[str]:
    """Warnings about where the located events lie: latitude and longitude swapped
    (:data:`SWAP_SHARE`), or points spread over continents (:data:`SPREAD_KM`)."""
    out = []
    located_rows = located.get("rows", 0)
    given = located_rows + dropped
    lat_col, lon_col = mapping.get(schema.LAT, ""), mapping.get(schema.LON, "")
    redo = (f"Re-import with the two columns swapped: latitude from {lon_col}, longitude "
            f"from {lat_col} (in the dashboard, the mapping form's Swap button; on the command "
            f"line, --map lat={lon_col} --map lon={lat_col})."
            if lat_col and lon_col and lat_col != lon_col else
            "Re-import with latitude and longitude swapped.")
    if given and swapped >= max(1, SWAP_SHARE * given):
        rows = "row" if given == 1 else "rows"
        out.append(f"Latitude and longitude look swapped: {swapped:,} of the {given:,} {rows} "
                   "with coordinates have a latitude beyond ±90° and a longitude that would be "
                   "a valid latitude; their locations were dropped. " + redo)
    elif located_rows and located.get("polar_swappable", 0) >= SWAP_SHARE * located_rows:
        lat, lon = located["lat_q"][1], located["lon_q"][1]
        out.append(f"Latitude and longitude look swapped: {located['polar_swappable']:,} of "
                   f"the {located_rows:,} located {_events(located_rows)} lie in "
                   f"{'Antarctica' if lat < POLAR_SOUTH else 'the high Arctic'} (typical "
                   f"point {_where(lat, lon)}); swapped they would lie around "
                   f"{_where(lon, lat)}. " + redo)
    if located_rows and "lat_q" in located:
        (la0, _, la1), (lo0, _, lo1) = located["lat_q"], located["lon_q"]
        km = float(haversine_km(la0, lo0, la1, lo1))
        if km > SPREAD_KM:
            out.append(f"The located events spread over {km:,.0f} km (the central 98% of "
                       f"them, from {_where(la0, lo0)} to {_where(la1, lo1)}). If the data "
                       "covers one city or region, some coordinates are wrong: check the "
                       "columns mapped to latitude and longitude (or the geohash column).")
    return out


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

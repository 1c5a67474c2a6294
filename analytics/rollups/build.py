"""Building a dataset's summary tables (tables.py describes them), explicitly.

:func:`after_import` is what an import calls once the events are stored (the web upload in
app/services/workspace.py and ``trailscope import`` in app/cli/main.py); :func:`ensure`
builds a stale or missing set on demand (the services call it before answering, so a
dataset imported before the tables existed, or under an older VERSION, gets them on first
use). :func:`rebuild` does the work in one transaction: first the SQL tables of
:func:`build_sql` (the sorted event table, then everything aggregated from it), then the
steps that need Python: densities on H3 cells, interest drift and per-user mobility (the
analyses themselves, so the numbers are the ones they give) and the pages' stored defaults
(defaults.py: replay paths, zones and flows), each computed from the tables
built before it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from .. import schema
from ..geo import has_coords_sql
from ..runs import index_lookup, run_ids, value_counts
from ..spacetime import WINDOW, solar_offset_min
from ..spatial import density as space
from ..spatial import mobility, zones_sql
from ..spatial.zones import POLYGON
from ..store import Store, content_fingerprint, drop_derived, events_table
from ..users import evolution
from . import batches, defaults, lookup
from . import spatial as answers_spatial
from . import users as answers_users
from .incremental import _exists
from .tables import (
    DENSITY_SPECS,
    DRIFT,
    EV_WITHOUT,
    HEAT_ROWS,
    PARTS,
    REGISTRY_SQL,
    SESSION_GAPS,
    USER_FREQS,
    VERSION,
    Rollup,
    fresh,
    info,
    part,
)

#: Events per batch of users whose mobility numpy computes at once (two batches at a time:
#: bounds the build's memory; 1M batches were 10% slower at 100M events, their overhead).
MOBILITY_BATCH = 2_000_000
#: Events per batch of users whose interest drift numpy computes at once (2M batches were
#: slower at 100M events: the sort of a batch grows faster than its size).
DRIFT_BATCH = 1_000_000
#: Events per batch of users whose gaps, sessions and hours numpy counts at once.
GAP_BATCH = 4_000_000
#: Events per batch of users whose ``rhythm`` rows numpy counts at once.
RHYTHM_BATCH = 2_000_000

_build_lock = threading.Lock()


def after_import(store: Store, name: str) -> float | None:
    """Build dataset ``name``'s summary tables right after its import, so the first page view
    does not pay for them: the seconds taken, or None where the workspace cannot hold them
    (read-only, or another writer: pages then read the raw table)."""
    t0 = time.perf_counter()
    cur = store.cursor()
    try:
        built = ensure(cur, name) is not None
    finally:
        cur.close()
    return time.perf_counter() - t0 if built else None


def ensure(con: Any, name: str) -> Rollup | None:
    """The fresh summary tables of dataset ``name``, (re)built first when stale or missing.

    None when the dataset does not exist, the workspace is read-only or another writer
    conflicts: callers then answer from the raw table.
    """
    ru = lookup.of(con, name)
    if ru is not None:
        return ru
    with _build_lock:  # one builder per process; the others wait and then read its tables
        if fresh(con, name):
            return Rollup(con, name)
        try:
            rebuild(con, name)
        except (duckdb.Error, LookupError):
            return None
    return Rollup(con, name) if fresh(con, name) else None


class Cancelled(Exception):  # noqa: N818 - reads as what happened
    """A build stopped because its ``cancel`` event was set; nothing of it is kept."""


def rebuild(con: Any, name: str, timings: dict[str, float] | None = None,
            cancel: threading.Event | None = None) -> float:
    """(Re)build dataset ``name``'s summary tables atomically; returns the seconds it took
    (``timings``, when given, gets the seconds of each step: :func:`build_all`).

    Skips the work (and only refreshes the registry) when the stored set already describes
    the same content (same fingerprint, e.g. the same file imported again). ``cancel``: once
    set, the running query is interrupted (or the next step does not start) and the build
    rolls back, raising :class:`Cancelled`: the tables stay as they were.
    """
    t0 = time.perf_counter()
    cur = con.cursor()
    try:
        cur.execute(REGISTRY_SQL)
        # one snapshot for the registry row, the fingerprint and the build: appends may commit
        # meanwhile (DuckDB is MVCC); their staged events stay for the next fold
        cur.execute("BEGIN TRANSACTION")
        try:
            reg = cur.execute("SELECT imported_at, rows FROM datasets WHERE name = ?",
                              [name]).fetchall()
            reg = reg[0] if reg else None
            if reg is None:
                raise LookupError(f"no dataset named {name!r}")
            fp = content_fingerprint(cur, name)
            old = info(cur, name)
            staged = part(name, "unfolded").strip('"')
            if old and old["fingerprint"] == fp and old["version"] == VERSION:
                cur.execute("DELETE FROM rollups WHERE name = ?", [name])
            else:
                # the staged events stay: appends committing beside a rebuild insert there,
                # and a dropped or renamed table would fail their commit
                drop_derived(cur, name, keep=(staged,))
                with lookup.building(cur, name), _interrupted_on(cancel, cur):
                    build_all(cur, name, timings, cancel)  # later steps read earlier tables
            # the events staged in this snapshot are in the tables just built (or were
            # already); those staged after it stay for the next fold
            if _exists(cur, staged):
                cur.execute(f'DELETE FROM "{staged}"')
            cur.execute("INSERT INTO rollups VALUES (?, ?, ?, ?, ?, now()::TIMESTAMP, ?)",
                        [name, VERSION, fp, reg[0], reg[1], time.perf_counter() - t0])
            cur.execute("COMMIT")
        except BaseException as exc:
            cur.execute("ROLLBACK")
            if isinstance(exc, duckdb.InterruptException) and cancel is not None \
                    and cancel.is_set():
                raise Cancelled(f"the summary build of {name!r} was cancelled") from None
            raise
    finally:
        cur.close()
    return time.perf_counter() - t0


@contextmanager
def _interrupted_on(cancel: threading.Event | None, cur: Any) -> Iterator[None]:
    """While the body runs, interrupt the query ``cur`` runs as soon as ``cancel`` is set (a
    watcher thread; an interrupt between two queries is lost, so :func:`build_all` also
    checks between its steps)."""
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(0.1):
                cur.interrupt()
                return

    watcher = threading.Thread(target=watch, name="trailscope-build-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def build_steps(cur: Any, name: str) -> list[tuple[str, Callable[[], None]]]:
    """The steps that create every summary table of dataset ``name``, in order: (the table
    or step, its call). The SQL tables first (:func:`build_sql`), then the steps computed
    from them."""
    ru = Rollup(cur, name)
    figures = _event_figures(cur, events_table(name))
    modes, from_rhythm = _rhythm_modes(cur, events_table(name), figures)
    steps: list[tuple[str, Callable[[], None]]] = []
    for what, sql in build_sql(name, cur, figures):
        steps.append((what, partial(_build_rhythm_cells, cur, name, modes)
                      if what == "rhythm_cells" and from_rhythm else partial(cur.execute, sql)))
        if what == "ev":  # then the tables counted in numpy over its batches of users
            steps += [("gaps", partial(_build_gaps, cur, name)),
                      ("rhythm", partial(_build_rhythm, cur, name))]
    return steps + [("density", partial(_build_density, cur, name)),
                    ("drift", partial(_build_drift, cur, name)),
                    ("churn", partial(answers_users.build_churn, ru)),
                    ("mobility", partial(_build_mobility, cur, name)),
                    ("page zones", partial(_build_page_zones, ru)),
                    ("page paths", partial(_build_page_paths, ru))]


def build_all(cur: Any, name: str, timings: dict[str, float] | None = None,
              cancel: threading.Event | None = None) -> None:
    """Create every summary table of dataset ``name`` (the caller holds the transaction);
    ``timings``, when given, gets the seconds of each step (:func:`build_steps`); a set
    ``cancel`` stops it before the next step (:class:`Cancelled`)."""
    for what, step in build_steps(cur, name):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"the summary build of {name!r} was cancelled before {what}")
        t = time.perf_counter()
        step()
        if timings is not None:
            timings[what] = time.perf_counter() - t


def _insert(cur: Any, table: str, rows: pd.DataFrame, tail: str = "") -> None:
    """Append ``rows`` (columns in the table's order) to ``table``; ``tail`` orders them."""
    cur.register("_build_rows", rows)
    try:
        cur.execute(f"INSERT INTO {table} SELECT * FROM _build_rows {tail}")
    finally:
        cur.unregister("_build_rows")


def _build_density(cur: Any, name: str) -> None:
    """The ``density`` table (every spec's densities, cell ids as text) and ``places_items``
    (per item: visits, users, unit-vector sums): ``spatial.density_counts``, one pass over
    the located events."""
    bbox = cur.execute("SELECT min_lat, max_lat, min_lon, max_lon FROM datasets WHERE name = ?",
                       [name]).fetchall()[0]
    specs = list(dict.fromkeys(DENSITY_SPECS + (("hex", space.auto_hex_resolution(
        None if bbox[0] is None else bbox), None),)))
    counted, place_sums = answers_spatial.density_counts(Rollup(cur, name), specs, True)
    cur.execute(f"CREATE TABLE {part(name, 'places_items')} ({schema.ITEM} VARCHAR, x DOUBLE, "
                f"y DOUBLE, z DOUBLE, {zones_sql.VISITS} BIGINT, {zones_sql.USERS} BIGINT)")
    if len(place_sums):
        _insert(cur, part(name, "places_items"), place_sums)
    frames = []
    for (kind, size, window), out in zip(specs, counted, strict=True):
        if window is None:
            out.insert(0, WINDOW, pd.Series(pd.NaT, index=out.index, dtype="datetime64[us]"))
        frames.append(out.assign(spec=space.density_key(kind, size, window),
                                 **{space.CELL: out[space.CELL].astype(str)}))
    cur.execute(f"CREATE TABLE {part(name, 'density')} (spec VARCHAR, {WINDOW} TIMESTAMP, "
                f"{space.CELL} VARCHAR, {space.COUNT} BIGINT, {space.USERS} BIGINT)")
    rows = pd.concat(frames, ignore_index=True)
    if len(rows):
        _insert(cur, part(name, "density"), rows[["spec", WINDOW, space.CELL, space.COUNT,
                                                  space.USERS]],
                f"ORDER BY spec, {WINDOW}, {space.CELL}")


def _build_drift(cur: Any, name: str) -> None:
    """``drift_<freq>``: ``evolution.interest_drift`` of every user's profiles per the Users
    page's window (``mobility.page_window``), keyed by user_idx: the same code
    (``evolution.drift_from_events``) run on the sorted events' integer columns, in batches
    of whole users (``DRIFT_BATCH`` events each), so the build's memory stays bounded at any
    size."""
    min_events, prior = DRIFT
    ru = Rollup(cur, name)
    s = ru.summary()
    if s["ts_p01"] is None:
        return
    freq = mobility.page_window(s["ts_p01"], s["ts_p99"])
    table = part(name, "drift_" + freq)
    cur.execute(f"CREATE TABLE {table} (user_idx INTEGER, {evolution.PREV_PERIOD} TIMESTAMP, "
                f"{evolution.PERIOD} TIMESTAMP, {evolution.PREV_EVENTS} BIGINT, "
                f"{evolution.EVENTS} BIGINT, {evolution.JS} DOUBLE, "
                f"{evolution.SHRUNK_JS} DOUBLE)")
    def rows(got: dict[str, np.ndarray]) -> dict[str, pa.Table]:
        out = evolution.drift_from_events(got["user_idx"], got["us"], got["cat_idx"], freq,
                                          min_events, prior)
        return {table: pa.table({
            "user_idx": out["user"], evolution.PREV_PERIOD: out["prev_period"].view(
                "datetime64[us]"), evolution.PERIOD: out["period"].view("datetime64[us]"),
            evolution.PREV_EVENTS: out["prev_events"], evolution.EVENTS: out["events"],
            evolution.JS: out["js"], evolution.SHRUNK_JS: out["shrunk_js"]})}

    _insert_batches(ru, DRIFT_BATCH, f"SELECT user_idx, us, cat_idx FROM {ru.t('ev')} "
                      "WHERE cat_idx IS NOT NULL AND user_idx BETWEEN {lo} AND {hi}", rows)
    for what, query in answers_users.drift_summaries_sql(ru, freq).items():
        cur.execute(f"CREATE TABLE {ru.t(what)} AS {query}")


def _insert_batches(ru: Rollup, events: int, query: str,
                    rows: Callable[[dict[str, np.ndarray]], dict[str, pa.Table]]) -> None:
    """``batches.map_user_batches`` whose batches' ``rows`` (a table -> its rows) are
    appended to their tables in batch order on ``ru.con`` (the build's cursor and
    transaction)."""
    def insert(tables: dict[str, pa.Table]) -> None:
        for table, frame in tables.items():
            _insert(ru.con, table, frame)

    batches.map_user_batches(ru, events, query, rows, insert)


def _build_mobility(cur: Any, name: str) -> None:
    """``mobility``: ``mobility.user_mobility`` of every user per window of the Users page
    for this dataset's span, keyed by user_idx, ``freq`` the window, home and work by
    item_idx: the same rules in numpy (``mobility.mobility_arrays``) over the sorted events'
    integer columns, in batches of whole users (``MOBILITY_BATCH`` events)."""
    ru = Rollup(cur, name)
    s = ru.summary()
    freq = mobility.page_window(s["ts_p01"], s["ts_p99"])
    table = part(name, "mobility")
    anchors = ", ".join(f"{a}_idx INTEGER, {a}_lat DOUBLE, {a}_lon DOUBLE, {a}_visits BIGINT"
                        for a in ("home", "work"))
    cur.execute(f"CREATE TABLE {table} (freq VARCHAR, user_idx INTEGER, {WINDOW} TIMESTAMP, "
                f"{mobility.EVENTS} BIGINT, {mobility.PLACES} BIGINT, {mobility.RG} DOUBLE, "
                f"{mobility.TRAVEL} DOUBLE, {anchors})")
    if s["ts_p01"] is None:
        return
    lat, lon = schema.LAT, schema.LON
    # whether any event has a coordinate, and whether every such event is located: then
    # each event's coordinates are its place's (looked up by coord_idx, not read per event)
    coords, stray = cur.execute(
        f"SELECT count({lat}) + count({lon}) > 0, count(*) FILTER (WHERE coord_idx IS NULL "
        f"AND ({lat} IS NOT NULL OR {lon} IS NOT NULL)) > 0 FROM {ru.t('ev')}").fetchall()[0]
    at_place = {}
    if coords and not stray:
        places = ru.df(f"SELECT coord_idx, {lat}, {lon} FROM {ru.t('places')}")
        at_place = {c: index_lookup(places["coord_idx"], places["coord_idx"],
                                    places[c].to_numpy("float64"), np.nan) for c in (lat, lon)}

    def rows(got: dict[str, np.ndarray]) -> dict[str, pa.Table]:
        place = np.ma.asarray(got["coord_idx"]).filled(-1) if coords else None

        def floats(col: str) -> np.ndarray:  # NaN where NULL (or no coordinates)
            if col in at_place:
                return at_place[col][place]
            return (np.ma.asarray(got[col]).astype(np.float64).filled(np.nan) if col in got
                    else np.full(len(got["us"]), np.nan))

        out = mobility.mobility_arrays(
            np.asarray(got["user_idx"]), np.asarray(got["us"]), np.asarray(got["item_idx"]),
            place >= 0 if coords else np.zeros(len(got["us"]), bool),
            floats(lat), floats(lon), floats(schema.TZ_OFFSET), freq, coords, place)
        cols: dict[str, Any] = {"freq": pa.array([freq] * len(out["user"])),
                                "user_idx": out["user"],
                                WINDOW: out[WINDOW].view("datetime64[us]")}
        for c in mobility.MOBILITY_ARRAYS[2:]:  # NULL: no distance, no anchor, no position
            v, anchor = out[c], c.split("_")[0]
            none = np.isnan(v) if v.dtype.kind == "f" else np.zeros(len(v), bool)
            if anchor in ("home", "work"):
                none |= out[f"{anchor}_visits"] == 0
            cols[c.replace("_item", "_idx")] = pa.array(v, mask=none)
        return {table: pa.table(cols)}

    read = ["user_idx", "us", "item_idx", schema.TZ_OFFSET] + (
        ["coord_idx"] if coords else []) + ([lat, lon] if stray else [])
    _insert_batches(ru, MOBILITY_BATCH, f"SELECT {', '.join(read)} FROM {ru.t('ev')} "
                      "WHERE user_idx BETWEEN {lo} AND {hi}", rows)


def _build_page_zones(ru: Rollup) -> None:
    """``zones`` / ``zone_activity`` / ``zone_places`` / ``zone_flows``: the Map page's zones
    of the whole dataset, found from the tables built before, and their 12 h flows."""
    params = defaults.page_params(ru)
    ru.con.execute(f"CREATE TABLE {ru.t('zone_params')} AS SELECT ? AS params",
                   [json.dumps(params)])
    found = zones_sql.find_zones_in(answers_spatial.StoredLocated(ru), **params) \
        if params["min_visits"] and ru.one(f"SELECT located FROM {ru.t('summary')}")[0] \
        else None
    if found is None or found.zones.empty:
        return
    zones = found.zones.assign(**{POLYGON: [json.dumps(r) for r in found.zones[POLYGON]]})
    moves = answers_spatial.flow_counts(ru, found.zones, zones_sql.PAGE_FLOW_GAP, False)
    for what, frame in (("zones", zones), ("zone_activity", found.activity),
                        ("zone_places", found.places), ("zone_flows", moves)):
        ru.con.register("_rows", frame)  # rows come back in this order (insertion order)
        try:
            ru.con.execute(f"CREATE TABLE {ru.t(what)} AS SELECT * FROM _rows")
        finally:
            ru.con.unregister("_rows")


def _build_page_paths(ru: Rollup) -> None:
    """``paths``: the Map page's default replay paths, one row per trip (point lists as JSON
    text)."""
    table = ru.t("paths")
    ru.con.execute(f"CREATE TABLE {table} ({schema.USER} VARCHAR, {mobility.TRIP} BIGINT, "
                   f"start TIMESTAMP, \"end\" TIMESTAMP, n_points BIGINT, length_km DOUBLE, "
                   f"duration_s DOUBLE, {mobility.PATH} VARCHAR, {mobility.TIMESTAMPS} VARCHAR, "
                   "reference TIMESTAMP)")
    first = ru.summary()["located_first"]
    if first is None:
        return
    got = answers_spatial.page_paths(ru.con, events_table(ru.name), defaults.PAGE_PATH_USERS,
                                     defaults.PAGE_PATH_POINTS, pd.Timestamp(first),
                                     stored=False)
    if got is None or got.empty:
        return
    _insert(ru.con, table, got.assign(**{c: [json.dumps(v) for v in got[c]]
                                         for c in (mobility.PATH, mobility.TIMESTAMPS)},
                                      reference=pd.Timestamp(first)))


def _event_figures(cur: Any, src: str) -> dict[str, Any]:
    """What the rhythm modes and the summary row need of the events, in one scan (the
    median is a sort's worth of work: done once): ``lon_median``, ``whole`` (every known
    offset whole hours), ``s_min`` (the first epoch second), ``tz_min`` (the lowest known
    offset, None without)."""
    row = cur.execute(
        f"SELECT median({schema.LON}), coalesce(bool_and({schema.TZ_OFFSET} % 60 = 0), TRUE), "
        f"min(CAST(EPOCH({schema.TS}) AS BIGINT)), min({schema.TZ_OFFSET}) FROM {src}"
    ).fetchall()[0]
    return dict(zip(("lon_median", "whole", "s_min", "tz_min"), row, strict=True))


def _rhythm_modes(cur: Any, src: str, figures: dict[str, Any] | None = None
                  ) -> tuple[list[tuple[str, int, str]], bool]:
    """The rhythm variants stored with their distinct users: UTC, local time with unknown
    offsets as UTC, and local time with the solar zone of the median longitude (what the
    dashboard uses for datasets without offsets). (mode, fallback minutes, offset SQL in
    minutes), and whether every offset is whole hours and no shifted time falls before 1970
    (the cells then follow from ``rhythm``'s hours of the week:
    :func:`_build_rhythm_cells`). Without any known offset a local mode's offset is its
    fallback, a constant (so the local mode with fallback 0 has UTC's cells)."""
    f = figures or _event_figures(cur, src)
    lon, whole, s_min, tz_min = f["lon_median"], f["whole"], f["s_min"], f["tz_min"]
    fallbacks = dict.fromkeys([0] + ([] if lon is None else [solar_offset_min(lon)]))
    modes = [("utc", 0, "0")] + [
        ("local", fb, str(fb) if tz_min is None else f"coalesce({schema.TZ_OFFSET}, {fb})")
        for fb in fallbacks]
    lowest = min([0, *fallbacks] + ([] if tz_min is None else [tz_min]))
    return modes, bool(whole) and s_min is not None and s_min + lowest * 60 >= 0


def _rhythm_cells(ev: str, modes: list[tuple[str, int, str]]) -> str:
    """The 7 x 24 cells (events, distinct users) of every rhythm mode counted over ``ev``:
    what the build stores when an offset is not whole hours or a shifted time falls before
    1970 (else :func:`_build_rhythm_cells` sums them from ``rhythm``). Modes with the same
    offset SQL are counted once (a materialised CTE each)."""
    offsets = list(dict.fromkeys(off for _, _, off in modes))
    cells = [
        "SELECT (x // 86400 + 3) % 7 AS weekday, (x % 86400) // 3600 AS hour, count(*) AS "
        f"events, count(DISTINCT user_idx) AS users FROM (SELECT user_idx, s + ({off}) * 60 "
        f"AS x FROM {ev}) GROUP BY ALL" for off in offsets]
    return ("WITH " + ", ".join(f"c{k} AS MATERIALIZED ({q})" for k, q in enumerate(cells))
            + " " + " UNION ALL ".join(
                f"SELECT '{mode}' AS mode, {fb} AS fallback, * FROM c{offsets.index(off)}"
                for mode, fb, off in modes))


def _build_rhythm_cells(cur: Any, name: str, modes: list[tuple[str, int, str]]) -> None:
    """``rhythm_cells`` from ``rhythm`` (whole-hour offsets, no time before 1970: a shifted
    time's hour of the week is ``how`` moved by the offset's hours): per mode, each cell's
    distinct users and summed events counted per batch of whole users
    (``batches.keyed_user_counts``: a cell's distinct users add up over the batches; the
    SQL's distinct count per cell took 14-21 s at 100M events)."""
    ru = Rollup(cur, name)
    tz = schema.TZ_OFFSET

    def keys(got: dict[str, np.ndarray]) -> list[batches.Keying]:
        how, events = np.asarray(got["how"]), np.asarray(got["events"], np.float64)
        known = ~np.ma.getmaskarray(got[tz])
        offset = np.ma.asarray(got[tz]).filled(0).astype(np.int64)
        out: list[batches.Keying] = []
        for mode, fb, _ in modes:
            off = np.zeros(len(how), np.int64) if mode == "utc" else np.where(known, offset, fb)
            lh = (how + off // 60) % 168
            out.append((lh, [events]))  # distinct users, and the events summed
        return out

    counted = batches.keyed_user_counts(ru, f"SELECT user_idx, {tz}, how, events FROM "
                                        f"{ru.t('rhythm')} WHERE user_idx BETWEEN {{lo}} AND "
                                        "{hi}", keys, RHYTHM_BATCH)
    cells = pd.concat([pd.DataFrame({
        "k": np.int32(k), "mode": mode, "fallback": np.int32(fb), "lh": lh, "users": users,
        "events": np.rint(events).astype(np.int64)}) for k, ((mode, fb, _), (lh, _, users, events))
        in enumerate(zip(modes, counted, strict=True))], ignore_index=True)
    cur.register("_rhythm_cell_rows", cells)
    try:
        cur.execute(f"CREATE TABLE {ru.t('rhythm_cells')} AS SELECT mode, CAST(fallback AS "
                    "INTEGER) AS fallback, (lh // 24 + 3) % 7 AS weekday, lh % 24 AS hour, "
                    "events, users FROM _rhythm_cell_rows WHERE events > 0 ORDER BY k, weekday, "
                    "hour")
    finally:
        cur.unregister("_rhythm_cell_rows")


def _build_gaps(cur: Any, name: str, source: str | None = None,
                order: str = "rowid") -> None:
    """From one read of ``ev`` in batches of whole users (``GAP_BATCH`` events), each event
    beside the user's previous one (numpy):
    ``hour_users`` (events and distinct users per hour: a user's first event of an hour is
    the one whose previous event fell in another hour) and ``hourly``, ``gaps`` (seconds
    between a user's consecutive events) and ``sessions`` (per idle gap of
    ``SESSION_GAPS``: sessions of one event, and durations of the others: the sum of their
    gaps). Each batch's counts go to temporary tables, summed by DuckDB at the end (its
    memory cap holds them, not Python's lists). A batch scanned out of ``ev``'s order is put
    back in it by ``order`` (the row id; ``source``: another relation to read, for the
    tests)."""
    ru = Rollup(cur, name)
    t = {w: part(name, w) for w in ("hour_users", "hourly", "gaps", "sessions")}
    temp = {"hour": "_gap_hours", "gap": "_gap_counts", "session": "_gap_sessions"}
    for what, cols in (("hour", "hour BIGINT, events BIGINT, users BIGINT"),
                       ("gap", "gap BIGINT, n BIGINT"),
                       ("session", "gap_limit INTEGER, duration BIGINT, single BOOLEAN, "
                                   "n BIGINT")):
        cur.execute(f"CREATE OR REPLACE TEMP TABLE {temp[what]} ({cols})")

    def rows(got: dict[str, np.ndarray]) -> dict[str, pa.Table]:
        got = batches.in_row_order(got, order)
        user, sec, us = (np.asarray(got[c]) for c in ("user_idx", "s", "us"))
        n = len(user)
        first = np.ones(n, bool)  # a batch starts with a user's first event
        first[1:] = user[1:] != user[:-1]
        gap = np.zeros(n, np.int64)
        gap[1:] = sec[1:] - sec[:-1]
        hour = us // 3_600_000_000
        new_hour = first.copy()
        new_hour[1:] |= hour[1:] != hour[:-1]
        hours, events, users = value_counts(hour, new_hour.astype(np.float64))
        gaps, gap_n, _ = value_counts(gap[~first])
        sessions: dict[str, list[np.ndarray]] = {"gap_limit": [], "duration": [],
                                                 "single": [], "n": []}
        for g in SESSION_GAPS:
            start = first | (gap > g)
            sid = run_ids(n, np.flatnonzero(start))
            cont = ~start
            steps = np.bincount(sid[cont], minlength=int(start.sum()))
            spans = np.bincount(sid[cont], weights=gap[cont], minlength=len(steps))
            durations, d_n, _ = value_counts(spans[steps > 0].astype(np.int64))
            for col, values in (("gap_limit", np.full(len(durations) + 1, g, np.int32)),
                                ("duration", np.r_[0, durations]),
                                ("single", np.r_[True, np.zeros(len(durations), bool)]),
                                ("n", np.r_[int((steps == 0).sum()), d_n])):
                sessions[col].append(values)
        return {temp["hour"]: pa.table({"hour": hours, "events": events,
                                        "users": users.astype(np.int64)}),
                temp["gap"]: pa.table({"gap": gaps, "n": gap_n}),
                temp["session"]: pa.table({c: np.concatenate(v) for c, v in
                                           sessions.items()})}

    try:
        _insert_batches(ru, GAP_BATCH, f"SELECT {order}, user_idx, s, us FROM "
                        f"{source or ru.t('ev')} WHERE user_idx BETWEEN {{lo}} AND {{hi}}", rows)
        cur.execute(f"CREATE TABLE {t['hour_users']} AS SELECT make_timestamp(hour * "
                    "3600000000) AS period, CAST(sum(events) AS BIGINT) AS events, "
                    f"CAST(sum(users) AS BIGINT) AS users FROM {temp['hour']} GROUP BY hour "
                    "ORDER BY period")
        cur.execute(f"CREATE TABLE {t['hourly']} AS SELECT period, events FROM "
                    f"{t['hour_users']} ORDER BY period")
        cur.execute(f"CREATE TABLE {t['gaps']} AS SELECT gap, CAST(sum(n) AS BIGINT) AS n "
                    f"FROM {temp['gap']} GROUP BY gap ORDER BY gap")
        cur.execute(f"CREATE TABLE {t['sessions']} AS SELECT gap_limit, duration, single, "
                    f"CAST(sum(n) AS BIGINT) AS n FROM {temp['session']} GROUP BY ALL HAVING "
                    "sum(n) > 0 ORDER BY ALL")
    finally:
        for table in temp.values():
            cur.execute(f"DROP TABLE IF EXISTS {table}")


def _build_rhythm(cur: Any, name: str) -> None:
    """``rhythm``: events per (user, offset, UTC hour of the week ``how`` = DuckDB's ``(s //
    3600) % 168``: truncated, so negative before 1970), counted in numpy over ``ev``'s
    columns in batches of whole users (``RHYTHM_BATCH`` events): one dense count per batch,
    its users' few offsets and hours side by side (the SQL's hash aggregate of ~0.9 groups
    per event took 13 s at 100M events), the rows in (user, offset, hour) order."""
    ru = Rollup(cur, name)
    table, tz = part(name, "rhythm"), schema.TZ_OFFSET
    cur.execute(f"CREATE TABLE {table} (user_idx INTEGER, {tz} INTEGER, how BIGINT, "
                "events BIGINT)")

    def rows(got: dict[str, np.ndarray]) -> dict[str, pa.Table]:
        user, sec = np.asarray(got["user_idx"]), np.asarray(got["s"])
        how = np.fmod(np.where(sec >= 0, sec // 3600, -((-sec) // 3600)), 168)
        known = ~np.ma.getmaskarray(got[tz])
        offset = np.ma.asarray(got[tz]).filled(0).astype(np.int64)
        lo, hi = (int(offset[known].min()), int(offset[known].max())) if known.any() else (0, 0)
        unknown = hi - lo + 1  # the code of an unknown offset, after every known one
        code = np.where(known, offset - lo, unknown)
        present = np.flatnonzero(np.bincount(code))  # the batch's offsets (codes), in order
        code = np.searchsorted(present, code)
        u0, h0 = int(user.min()), int(how.min())
        hours = int(how.max()) - h0 + 1
        key, counts, _ = value_counts(
            ((user - u0).astype(np.int64) * len(present) + code) * hours + (how - h0))
        code = present[key // hours % len(present)]
        return {table: pa.table({
            "user_idx": (key // hours // len(present) + u0).astype(np.int32),
            tz: pa.array((code + lo).astype(np.int32), mask=code == unknown),
            "how": key % hours + h0, "events": counts})}

    _insert_batches(ru, RHYTHM_BATCH, f"SELECT user_idx, s, {tz} FROM {ru.t('ev')} "
                      "WHERE user_idx BETWEEN {lo} AND {hi}", rows)


def build_sql(name: str, cur: Any, figures: dict[str, Any] | None = None
              ) -> list[tuple[str, str]]:
    """The CREATE TABLE statements of dataset ``name``'s summary tables, in order: (the
    table's part name, the statement); ``figures``: :func:`_event_figures` when known.
    (``build_steps`` computes the gaps, ``rhythm`` and, where it can, ``rhythm_cells`` in
    numpy instead.)"""
    src = events_table(name)
    p = {w: part(name, w) for w in PARTS}
    figures = figures or _event_figures(cur, src)
    lon_median = "NULL" if figures["lon_median"] is None else repr(float(figures["lon_median"]))
    u, i, ts, lat, lon, cat = (schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON,
                               schema.CATEGORY)
    located = has_coords_sql()
    # the user, item and category names stay in ``users`` / ``items`` / ``categories`` (their
    # integer ids are here): three string columns less to sort and write (a third of the
    # step at 100M events)
    canonical = ", ".join(f"e.{c}" for c in schema.COLUMNS if c not in EV_WITHOUT + (ts,))
    virtual = {ts: "make_timestamp(us)", "s": "CAST(EPOCH(make_timestamp(us)) AS BIGINT)"}
    types = {**schema.DUCKDB_TYPES, "user_idx": "INTEGER", "s": "BIGINT", "us": "BIGINT",
             "item_idx": "INTEGER", "coord_idx": "INTEGER", "cat_idx": "INTEGER",
             "h": "UBIGINT"}
    order = [c for c in schema.COLUMNS if c not in EV_WITHOUT] + [
        "user_idx", "s", "us", "item_idx", "coord_idx", "cat_idx", "h"]
    ev_columns = [f"{c} {types[c]}" + (f" GENERATED ALWAYS AS ({virtual[c]}) VIRTUAL"
                                       if c in virtual else "") for c in order]
    stored = [c for c in order if c not in virtual]
    # the tie order of (lat NULLS LAST, lon NULLS LAST) as one integer: the rank of every
    # distinct coordinate pair of the events (NULLs too), with its place (NULL unless
    # located); one join gives both and the sort compares four integer keys, not two doubles
    # (a 4-byte rank: the 8-byte one made the sort of 100M events a quarter slower)
    coords = (f"(SELECT d.{lat}, d.{lon}, pl.coord_idx, CAST(row_number() OVER (ORDER BY "
              f"d.{lat} NULLS LAST, d.{lon} NULLS LAST) AS INTEGER) AS ll FROM (SELECT DISTINCT "
              f"{lat}, {lon} FROM "
              f"{src}) d LEFT JOIN {p['places']} pl ON d.{lat} = pl.{lat} AND d.{lon} = "
              f"pl.{lon})")

    out = [
        f"CREATE TABLE {p['users']} AS SELECT CAST(row_number() OVER (ORDER BY {u}) - 1 "
        f"AS INTEGER) AS user_idx, {u}, events, located, first_ts, last_ts FROM (SELECT {u}, "
        f"count(*) AS events, count(*) FILTER (WHERE {located}) AS located, min({ts}) AS "
        f"first_ts, max({ts}) AS last_ts FROM {src} GROUP BY {u}) ORDER BY user_idx",
        f"CREATE TABLE {p['items']} AS SELECT CAST(row_number() OVER (ORDER BY {i}) - 1 AS "
        f"INTEGER) AS item_idx, {i} FROM (SELECT DISTINCT {i} FROM {src}) ORDER BY item_idx",
        f"CREATE TABLE {p['places']} AS SELECT CAST(row_number() OVER (ORDER BY {lat}, {lon}) "
        f"- 1 AS INTEGER) AS coord_idx, {lat}, {lon} FROM (SELECT DISTINCT {lat}, {lon} FROM "
        f"{src} WHERE {located}) ORDER BY coord_idx",
        f"CREATE TABLE {p['categories']} AS SELECT CAST(row_number() OVER (ORDER BY {cat}) - 1 "
        f"AS INTEGER) AS cat_idx, {cat} FROM (SELECT DISTINCT {cat} FROM {src} WHERE {cat} "
        f"IS NOT NULL) ORDER BY cat_idx",
        # every event, sorted by user and time, with the integer columns the queries use (and
        # the canonical ones but the names kept by id: ``EV_WITHOUT``); written in
        # parallel (no window over these wide rows: each event's previous one is found in
        # numpy, :func:`_build_gaps`). ``ts`` and ``s``
        # are virtual, computed from ``us`` when read: 16 bytes less per row to sort and
        # write (a sixth of the step at 100M events)
        f"CREATE TABLE {p['ev']} ({', '.join(ev_columns)}); INSERT INTO {p['ev']} "
        f"({', '.join(stored)}) SELECT {', '.join(stored)} FROM (SELECT {canonical}, "
        f"uu.user_idx, epoch_us({ts}) AS us, it.item_idx, pl.coord_idx, c.cat_idx, "
        f"hash(e.{u}, e.{ts}, e.{i}) AS h, pl.ll FROM {src} e JOIN "
        f"{p['users']} uu ON e.{u} = uu.{u} JOIN {p['items']} it ON e.{i} = it.{i} LEFT JOIN "
        f"{coords} pl ON e.{lat} IS NOT DISTINCT FROM pl.{lat} AND e.{lon} IS NOT DISTINCT "
        f"FROM pl.{lon} LEFT JOIN {p['categories']} c ON e.{cat} = c.{cat} "
        "ORDER BY user_idx, us, item_idx, ll)",
    ]
    # events per (period, user): days (USER_FREQS[0]) counted over ev, weeks and months
    # summed from the days (whole days each; a week may cross a month, so not from weeks)
    for f in USER_FREQS:
        out.append(f"CREATE TABLE {p['user_' + f]} AS SELECT date_trunc('{f}', {ts}) AS period, "
                   f"user_idx, count(*) AS events FROM {p['ev']} GROUP BY ALL "
                   "ORDER BY period, user_idx" if f == USER_FREQS[0] else
                   f"CREATE TABLE {p['user_' + f]} AS SELECT date_trunc('{f}', period) AS period, "
                   f"user_idx, CAST(sum(events) AS BIGINT) AS events FROM "
                   f"{p['user_' + USER_FREQS[0]]} GROUP BY ALL ORDER BY period, user_idx")
    out.append(f"CREATE TABLE {p['periods']} AS " + " UNION ALL ".join(
        f"SELECT '{f}' AS freq, period, CAST(sum(events) AS BIGINT) AS events, count(*) AS "
        f"users FROM {p['user_' + f]} GROUP BY period" for f in USER_FREQS)
        + " ORDER BY freq, period")
    out += [
        f"CREATE TABLE {p['rhythm_cells']} AS "
        + _rhythm_cells(p["ev"], _rhythm_modes(cur, src, figures)[0]),
        # the draw order's first located events: their hashes found first (one column), so
        # only those rows' other columns are read
        f"CREATE TABLE {p['heat']} AS SELECT e.{lat}, e.{lon}, e.{ts}, c.{cat}, e.h FROM (SELECT "
        f"{lat}, {lon}, {ts}, cat_idx, h FROM {p['ev']} WHERE coord_idx IS NOT NULL AND h <= "
        f"(SELECT max(h) FROM (SELECT h FROM {p['ev']} WHERE coord_idx IS NOT NULL ORDER BY h "
        f"LIMIT {HEAT_ROWS})) ORDER BY h LIMIT {HEAT_ROWS}) e LEFT JOIN {p['categories']} c ON "
        "e.cat_idx = c.cat_idx ORDER BY e.h",
        f"CREATE TABLE {p['values']} AS SELECT '{cat}' AS col, {cat} AS value, count(*) AS "
        f"events FROM {src} GROUP BY 1, 2 UNION ALL SELECT '{schema.BEHAVIOR}', "
        f"{schema.BEHAVIOR}, count(*) FROM {src} GROUP BY 1, 2",
        # the users, items, time span and located events from ``users`` and ``items`` (the
        # distinct counts over the events were a third of the step)
        # (both percentiles from one quantile call: one selection pass, not two; the median
        # longitude and whole hours from _event_figures: not scanned again)
        f"CREATE TABLE {p['summary']} AS SELECT e.events, u.users, i.items, u.first_ts, "
        "u.last_ts, u.located, e.located_first, e.located_last, e.q[1] AS ts_p01, e.q[2] AS "
        "ts_p99, e.tz_known, e.lon_median, e.tz_whole_hours, e.categorised FROM (SELECT "
        f"count(*) AS events, min({ts}) FILTER (WHERE {located}) AS located_first, max({ts}) "
        f"FILTER (WHERE {located}) AS located_last, quantile_disc({ts}, [0.01, 0.99]) AS q, "
        f"count({schema.TZ_OFFSET}) AS tz_known, CAST({lon_median} AS DOUBLE) AS lon_median, "
        f"{bool(figures['whole'])} AS tz_whole_hours, count({cat}) AS categorised FROM {src}) "
        f"e, (SELECT count({u}) AS "
        "users, min(first_ts) AS first_ts, max(last_ts) AS last_ts, CAST(coalesce(sum(located), "
        f"0) AS BIGINT) AS located FROM {p['users']}) u, (SELECT count({i}) AS items FROM "
        f"{p['items']}) i",
    ]
    return [(next(w for w, t in p.items() if sql.startswith(f"CREATE TABLE {t} ")), sql)
            for sql in out]

"""The one write path for streamed events: check a batch (:func:`validate`), then store it
(:func:`append`) in one transaction.

Events arrive one batch at a time (the HTTP API, Redis Streams) as JSON-like dicts::

    {"user_id": "u1", "item_id": "cafe-7", "ts": "2012-04-03T18:00:09-04:00",
     "lat": 40.74, "lon": -73.99, "behavior": "visit", "category": "Cafe", "value": 4.5,
     "event_id": "gw-19283"}

:func:`validate` applies the rules of a file import (analytics/ingest: the same time forms and
range, the same local-time rule, the same words for the same faults), but strictly: a fault
the importer would skip a row for is an error here, as is an unknown field (a typo must not
drop a value silently). It reports every fault of the batch at once (:class:`AppendError`,
``problems``: event index, field, reason), so a sender fixes them in one go; a batch with a
fault stores nothing.

:func:`append` stores a validated batch in one transaction:

1. events whose ``event_id`` was stored before, or comes twice in the batch, are dropped
   (a resent batch is stored once);
2. the rest go to the dataset's events table and to its live table
   ``"live__<name>__events"`` (canonical columns, ``event_id``, ``arrived_at``: what the Live
   page reads), a derived table of the store (analytics/store.py), dropped with the dataset;
3. the ``datasets`` registry row is updated from the batch alone: rows, time span, bounding
   box, and the users and items not seen before, found in the live id table
   ``"live__<name>__ids"`` (a primary key over kind and id, built from the events on the
   first append; ids this process stored or found there before need no look-up), so no
   append scans the events table;
4. ``analytics.rollups.incremental.stage(cur, name, batch)`` keeps the stored events for the
   summaries (``batch``: a view of exactly them, canonical columns and more); after the
   commit :func:`fold_summaries` applies everything staged in a second transaction
   (``incremental.fold``), at once for a direct call, on the writer's schedule in a server
   (app/services/writer.py), so many small batches cost one summary update.

A commit costs about six DuckDB statements (begin, the live insert, the events insert, the
stage insert, the registry update, commit; the id table only for unseen users or items): what
the last commit learnt of the dataset (its registered name and import time, that its live
and stage tables exist) is checked inside the transaction, not looked up (the registry
update matches that name and import time; a table gone fails its statement), and when it no
longer holds the transaction is rolled back and done again with every look-up.

Any failure rolls all of it back. A dataset's fingerprint (``Store.fingerprint``) is the
one fixed at import, so models trained before an append stay valid; the registry's row
count changes, and with it the services' cache stamp (app/services/cache.dataset_stamp).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import schema
from .ingest import localtime, timeparse
from .ingest.sql import category_sql
from .ingest.types import REASON_TEXT
from .rollups import incremental
from .spacetime import solar_offset_min
from .store import DatasetNotFound, Store, StoreError, derived_table, events_table

U, IT, T, LA, LO = schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON
B, C, V, TZ = schema.BEHAVIOR, schema.CATEGORY, schema.VALUE, schema.TZ_OFFSET
#: The optional id of an event, unique per dataset: a resent event is stored once.
EVENT_ID = "event_id"
#: When the live write path stored an event (naive UTC), in the live table.
ARRIVED_AT = "arrived_at"
#: The fields an event may have; anything else is an error.
FIELDS: tuple[str, ...] = (*schema.COLUMNS, EVENT_ID)
#: Longest user id, item id, behaviour and category, and longest event id, in characters.
TEXT_MAX_CHARS = 1000
EVENT_ID_MAX_CHARS = 200
#: Largest |tz_offset_min| accepted (UTC offsets run from -12:00 to +14:00).
TZ_MAX_MIN = 18 * 60
#: How many problems an AppendError lists (the rest are counted), and how many its message names.
MAX_PROBLEMS = 100
SHOWN_PROBLEMS = 5

#: The Arrow types of a batch (what DuckDB reads without a cast).
_ARROW = pa.schema([(U, pa.string()), (IT, pa.string()), (T, pa.timestamp("us")),
                    (LA, pa.float64()), (LO, pa.float64()), (B, pa.string()),
                    (C, pa.string()), (V, pa.float64()), (TZ, pa.int32()),
                    (EVENT_ID, pa.string())])

_TEXT_FIELDS = {U: REASON_TEXT["missing_user"], IT: REASON_TEXT["missing_item"]}
_TS_HELP = "use ISO 8601 such as 2012-04-03T18:00:09-04:00 (or ...Z), or unix seconds"


@dataclass(frozen=True)
class EventProblem:
    """What is wrong with one event of a batch: its 0-based ``index``, the ``field`` (empty
    when the event as a whole is wrong) and the ``reason`` in words."""

    index: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = "the batch" if self.index < 0 else f"event {self.index}"
        return f"{where}, field {self.field}: {self.reason}" if self.field else \
            f"{where}: {self.reason}"


class AppendError(ValueError):
    """A batch that cannot be stored as sent; nothing of it was stored. ``problems`` lists
    every fault found (at most :data:`MAX_PROBLEMS`; ``more`` counts the rest)."""

    def __init__(self, problems: list[EventProblem], more: int = 0) -> None:
        self.problems = list(problems)
        self.more = int(more)
        total = len(self.problems) + self.more
        shown = "; ".join(str(p) for p in self.problems[:SHOWN_PROBLEMS])
        rest = total - min(len(self.problems), SHOWN_PROBLEMS)
        tail = f" (and {rest} more)" if rest > 0 else ""
        noun = "problem" if total == 1 else "problems"
        super().__init__(f"nothing was stored: {total} {noun} in the batch: {shown}{tail}")


@dataclass(frozen=True)
class AppendResult:
    """What :func:`append` did: events ``stored``, ``duplicates`` dropped (an event id stored
    before or repeated in the batch), the dataset's ``rows`` after the commit, and per event
    of the batch whether it was stored (``kept``, for a caller that merged several batches)."""

    stored: int
    duplicates: int
    rows: int
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False,
                             compare=False)


# -- validate ------------------------------------------------------------------------------
class _Problems:
    """Collects problems up to MAX_PROBLEMS and counts the rest."""

    def __init__(self) -> None:
        self.items: list[EventProblem] = []
        self.more = 0

    def add(self, index: int, fld: str, reason: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(EventProblem(index, fld, reason))
        else:
            self.more += 1

    def raise_if_any(self) -> None:
        if self.items:
            order = {f: k for k, f in enumerate(("", *FIELDS))}
            self.items.sort(key=lambda p: (p.index, order.get(p.field, len(order)), p.field))
            raise AppendError(self.items, self.more)


def _kind(x: Any) -> str:
    """A JSON-ish type name of ``x`` for messages."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true/false"
    if isinstance(x, dict):
        return "an object"
    if isinstance(x, list | tuple):
        return "a list"
    return type(x).__name__


def _number_text(x: int | float) -> str | None:
    """An int or a finite float as text (``12.0`` -> ``12``), None when not finite."""
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return None
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


def _text(p: _Problems, i: int, fld: str, x: Any, limit: int = TEXT_MAX_CHARS,
          numbers: bool = True) -> str | None:
    """Field ``fld`` of event ``i`` as text (numbers become text when ``numbers``); None for
    a missing or empty value; a problem when it is neither."""
    if x is None:
        return None
    if isinstance(x, str):
        if len(x) > limit:
            p.add(i, fld, f"longer than {limit} characters ({len(x)})")
            return None
        return x if x.strip() else None
    if numbers and isinstance(x, int | float) and not isinstance(x, bool):
        s = _number_text(x) if abs(x) < 10 ** 30 else None  # (no id has 31 digits)
        if s is None:
            p.add(i, fld, f"{str(x)[:40]} is not a usable id: give a finite number under "
                          "31 digits, or text")
        return s
    p.add(i, fld, f"must be text{' or a number' if numbers else ''}, not {_kind(x)}")
    return None


def _float(p: _Problems, i: int, fld: str, x: Any) -> float | None:
    """Field ``fld`` of event ``i`` as a finite float (numbers or numeric text), else None
    (a problem unless missing)."""
    if x is None or (isinstance(x, str) and not x.strip()):
        return None
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        p.add(i, fld, f"must be a number, not {_kind(x)}")
        return None
    try:
        v = float(x)
    except (ValueError, OverflowError):
        p.add(i, fld, f"{str(x)[:40]!r} is not a number")
        return None
    if not math.isfinite(v):
        p.add(i, fld, f"{str(x)[:40]!r} is not a finite number")
        return None
    return v


def _time(p: _Problems, i: int, x: Any) -> tuple[str | None, str | None]:
    """(ISO text, unix text) of event ``i``'s time: one of them set, or a problem."""
    if x is None or (isinstance(x, str) and not x.strip()):
        p.add(i, T, REASON_TEXT["missing_time"])
        return None, None
    if isinstance(x, int | float) and not isinstance(x, bool):
        s = _number_text(x) if abs(x) < timeparse.MAX_UNIX_MS else None
        if s is None:
            p.add(i, T, f"{REASON_TEXT['bad_time']}: {str(x)[:40]} ({_TS_HELP})")
            return None, None
        return None, s
    if not isinstance(x, str):
        p.add(i, T, f"{REASON_TEXT['bad_time']}: {_kind(x)} ({_TS_HELP})")
        return None, None
    s = x.strip()
    if timeparse.matches("unix", s) and len(s) < 40 and abs(float(s)) < timeparse.MAX_UNIX_MS:
        return None, s
    if timeparse.matches("iso", s):
        return s, None
    p.add(i, T, f"{REASON_TEXT['bad_time']}: {x[:40]!r} ({_TS_HELP})")
    return None, None


def _location(p: _Problems, i: int, rec: dict) -> tuple[float | None, float | None]:
    """(lat, lon) of event ``i``: both or neither, in range and not 0,0."""
    given = [f for f in (LA, LO) if rec.get(f) is not None
             and not (isinstance(rec.get(f), str) and not rec[f].strip())]
    if len(given) == 1:
        other = LO if given[0] == LA else LA
        p.add(i, other, f"{given[0]} is given without {other}: give both or neither")
        return None, None
    la, lo = _float(p, i, LA, rec.get(LA)), _float(p, i, LO, rec.get(LO))
    bad = False
    if la is not None and not -90 <= la <= 90:
        p.add(i, LA, f"{la} is out of range (-90 to 90)")
        bad = True
    if lo is not None and not -180 <= lo <= 180:
        p.add(i, LO, f"{lo} is out of range (-180 to 180)")
        bad = True
    if la == 0 and lo == 0:
        p.add(i, LA, "0, 0 is no place (a missing location): leave lat and lon out")
        bad = True
    return (None, None) if bad or la is None or lo is None else (la, lo)


def _tz(p: _Problems, i: int, x: Any) -> int | None:
    if x is None:
        return None
    v = _float(p, i, TZ, x)
    if v is None:
        return None
    if not v.is_integer() or abs(v) > TZ_MAX_MIN:
        p.add(i, TZ, f"{x} is not a UTC offset in whole minutes (-{TZ_MAX_MIN} to "
                     f"{TZ_MAX_MIN})")
        return None
    return int(v)


def _columns(records: list[Any], p: _Problems) -> dict[str, list[Any]]:
    """The batch's raw columns (Python values), checking everything that needs no parsing."""
    cols: dict[str, list[Any]] = {k: [] for k in (U, IT, "t", "e", LA, LO, B, C, V, TZ,
                                                  EVENT_ID)}
    allowed = set(FIELDS)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            p.add(i, "", f"must be an object with {U}, {IT} and {T}, not {_kind(rec)}")
            for values in cols.values():
                values.append(None)
            continue
        for key in rec:
            if key not in allowed:
                p.add(i, str(key)[:80], f"unknown field; the fields are {', '.join(FIELDS)}")
        for fld, missing in _TEXT_FIELDS.items():
            before = len(p.items) + p.more
            v = _text(p, i, fld, rec.get(fld))
            if v is None and len(p.items) + p.more == before:  # missing, not malformed
                p.add(i, fld, missing)
            cols[fld].append(v)
        t, e = _time(p, i, rec.get(T))
        cols["t"].append(t)
        cols["e"].append(e)
        la, lo = _location(p, i, rec)
        cols[LA].append(la)
        cols[LO].append(lo)
        cols[B].append(_text(p, i, B, rec.get(B), numbers=False))
        cols[C].append(_text(p, i, C, rec.get(C)))
        cols[V].append(_float(p, i, V, rec.get(V)))
        cols[TZ].append(_tz(p, i, rec.get(TZ)))
        eid = rec.get(EVENT_ID)
        if isinstance(eid, str) and not eid.strip():
            p.add(i, EVENT_ID, "is empty: leave it out, or give the event's unique id")
            eid = None
        cols[EVENT_ID].append(_text(p, i, EVENT_ID, eid, limit=EVENT_ID_MAX_CHARS))
    return cols


_parser_lock = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None
_local = threading.local()


def _parser_cursor() -> duckdb.DuckDBPyConnection:
    """This thread's cursor on the process's in-memory DuckDB that parses batches with the
    importer's SQL (one thread: batches are small; session time zone UTC)."""
    global _parser
    cur = getattr(_local, "cur", None)
    if cur is None:
        with _parser_lock:
            if _parser is None:
                _parser = duckdb.connect(":memory:", config={"threads": 1})
                _parser.execute("SET enable_progress_bar = false")
            cur = _parser.cursor()
        cur.execute(timeparse.SESSION_SQL)
        _local.cur = cur
    return cur


def validate(records: list[dict]) -> pd.DataFrame:
    """The events of ``records`` in canonical columns plus ``event_id``, in their order
    (pandas dtypes of ``schema.PANDAS_DTYPES``); :func:`validate_batch` says the rules."""
    return validate_batch(records).to_pandas(types_mapper=_PANDAS_TYPES.get)


#: Arrow -> pandas dtypes of a validated frame (schema.PANDAS_DTYPES; times stay in us).
_PANDAS_TYPES = {pa.string(): pd.StringDtype(), pa.int32(): pd.Int32Dtype()}


def validate_batch(records: list[dict]) -> pa.Table:
    """The events of ``records`` as the Arrow batch :func:`append` stores (canonical columns
    plus ``event_id``, in their order): what :func:`validate` returns, without pandas.

    The rules of a file import, strictly: ``user_id`` and ``item_id`` required (numbers become
    text); ``ts`` required, ISO 8601 (an offset or ``Z`` is converted to UTC; a non-zero
    offset is also the event's local offset, ``Z``/``+00:00`` only marks UTC) or unix seconds
    (milliseconds from 1e11 on, as in an import), inside the years an import accepts;
    ``lat``/``lon`` both or neither, finite, in range; ``behavior`` (default
    ``schema.DEFAULT_BEHAVIOR``), ``category``, ``value`` (a finite number),
    ``tz_offset_min`` and ``event_id`` optional; no other field. Events with coordinates and
    no offset get the offset of their place at their time, as imported events do
    (analytics/ingest/localtime.py). Raises :class:`AppendError` listing every problem."""
    got = validate_columns(records)
    return got if isinstance(got, pa.Table) else _table(got.values)


class Columns:
    """A small validated batch as Python lists, one per column of the Arrow batch (what the
    event-by-event path of :func:`validate_columns` makes before Arrow): :func:`merge_batches`
    turns the batches of one group commit into one Arrow table, so many one-event posts pay
    for one Arrow conversion, not one each."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, list[Any]]) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values[U])


def validate_columns(records: list[dict]) -> pa.Table | Columns:
    """:func:`validate_batch` (the same rules, the same :class:`AppendError`), leaving a batch
    checked event by event (under :data:`FAST_MIN_EVENTS` events, or one the column-wise path
    declines) as :class:`Columns`: the server's writer merges those of a group with
    :func:`merge_batches` and converts them to Arrow once."""
    p = _Problems()
    if not isinstance(records, list | tuple):
        p.add(-1, "", f"must be a list of event objects, not {_kind(records)}")
        p.raise_if_any()
    if not records:
        return _ARROW.empty_table()
    fast = _fast_batch(records) if len(records) >= FAST_MIN_EVENTS else None
    if fast is not None:
        return fast
    cols = _columns(list(records), p)
    ts, tz_ts, status, category = _times(cols)
    for k, st in enumerate(status):
        if st == "ok" or st == "none":
            continue
        shown = str(records[k].get(T))[:40]
        if st == "bad":
            p.add(k, T, f"{REASON_TEXT['bad_time']}: {shown!r} ({_TS_HELP})")
        else:
            p.add(k, T, f"{REASON_TEXT['time_out_of_range']}: {shown!r}")
    for k, (given, in_ts) in enumerate(zip(cols[TZ], tz_ts, strict=True)):
        if given is not None and in_ts is not None and given != in_ts:
            p.add(k, TZ, f"{given} differs from the offset in {T} ({in_ts} minutes)")
    p.raise_if_any()  # every problem, from both checks
    tz = [g if g is not None else o for g, o in zip(cols[TZ], tz_ts, strict=True)]
    _place_offsets(ts, cols[LA], cols[LO], tz)
    values = {U: cols[U], IT: cols[IT], T: ts, LA: cols[LA], LO: cols[LO],
              B: [b if b is not None else schema.DEFAULT_BEHAVIOR for b in cols[B]],
              C: category, V: cols[V], TZ: tz, EVENT_ID: cols[EVENT_ID]}
    return Columns(values)


def merge_batches(parts: list[pa.Table | Columns]) -> pa.Table:
    """The batches ``parts`` (:func:`validate_columns`' results) as one Arrow table in one
    chunk, in their order: consecutive :class:`Columns` are joined as lists and converted
    once; DuckDB scans one chunk of many rows faster than many chunks of one."""
    tables: list[pa.Table] = []
    run: list[Columns] = []

    def flush() -> None:
        if run:
            tables.append(_table({f: [x for c in run for x in c.values[f]] for f in _ARROW.names}
                                 if len(run) > 1 else run[0].values))
            run.clear()

    for part in parts:
        if isinstance(part, Columns):
            run.append(part)
        else:
            flush()
            tables.append(part)
    flush()
    if not tables:
        return _ARROW.empty_table()
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return table.combine_chunks() if table.column(0).num_chunks > 1 else table


# -- the common batch, column by column ----------------------------------------------------
#: From this many events on a batch is first read a column at a time (below, Arrow's fixed
#: costs outweigh the per-event Python they save).
FAST_MIN_EVENTS = 16
_FIELD_SET = frozenset(FIELDS)
_NUMBER = (int, float)  # exact types: a bool is neither


def _fast_batch(records: list[Any] | tuple[Any, ...]) -> pa.Table | None:
    """The batch :func:`validate_batch` makes of ``records`` when every event is of the common,
    clean kind, checked a column at a time: text ids, an ISO time Python reads as DuckDB does,
    numbers as JSON numbers, no blank or overlong text, nothing out of range. None as soon as
    anything is not (a fault, numbers as text, unix times, category lists, ...): the event by
    event path then decides, so the result and every problem reported are the same either way
    (tests/analytics/test_append.py compares the two paths)."""
    if not all(type(r) is dict for r in records) or \
            not all(map(_FIELD_SET.issuperset, records)):
        return None
    n = len(records)
    users = [r.get(U) for r in records]
    items = [r.get(IT) for r in records]
    if not (_all_text(users, TEXT_MAX_CHARS) and _all_text(items, TEXT_MAX_CHARS)):
        return None
    behavior = [r.get(B) for r in records]
    category = [r.get(C) for r in records]
    event_id = [r.get(EVENT_ID) for r in records]
    if not (_text_or_none(behavior) and _text_or_none(category)
            and _text_or_none(event_id, EVENT_ID_MAX_CHARS, blank_ok=False)):
        return None
    if any(c is not None and c.lstrip().startswith("[{") for c in category):
        return None  # a list of categories: the importer's SQL reads it
    behavior = [b if b is not None and b.strip() else schema.DEFAULT_BEHAVIOR
                for b in behavior]
    category = [c if c is not None and c.strip() else None for c in category]
    value = [r.get(V) for r in records]
    lat = [r.get(LA) for r in records]
    lon = [r.get(LO) for r in records]
    given_tz = [r.get(TZ) for r in records]
    if not (_numbers_or_none(value) and _numbers_or_none(lat) and _numbers_or_none(lon)):
        return None
    if not all(g is None or (type(g) is int and abs(g) <= TZ_MAX_MIN) for g in given_tz):
        return None
    try:
        value = [None if v is None else float(v) for v in value]
        lat = [None if v is None else float(v) for v in lat]
        lon = [None if v is None else float(v) for v in lon]
    except OverflowError:  # an int past the float range: the event path says which
        return None
    if not (all(map(_finite, value)) and all(map(_finite, lat)) and all(map(_finite, lon))):
        return None
    for la, lo in zip(lat, lon, strict=True):
        if (la is None) != (lo is None) or (la is not None and (
                not -90 <= la <= 90 or not -180 <= lo <= 180 or (la == 0 and lo == 0))):
            return None
    times = [r.get(T) for r in records]
    tz: list[int | None] = list(given_tz)
    plain = _plain_utc(times)
    if plain is not None:  # all of the one common form: no offset to check
        if any(g is None and la is not None for g, la in zip(tz, lat, strict=True)):
            _place_offsets(plain.to_pylist(), lat, lon, tz)
        return _table({U: users, IT: items, T: plain, LA: lat, LO: lon, B: behavior,
                       C: category, V: value, TZ: tz, EVENT_ID: event_id})
    ts: list[datetime | None] = [None] * n
    for k, t in enumerate(times):
        if type(t) is not str or t != t.strip() or timeparse.matches("unix", t) or \
                not timeparse.matches("iso", t):
            return None
        got = _iso(t)
        if got is None or not _T_MIN <= got[0] < _T_MAX:
            return None
        ts[k] = got[0]
        if got[1] is not None:
            if tz[k] is not None and tz[k] != got[1]:
                return None
            tz[k] = got[1]
    _place_offsets(ts, lat, lon, tz)
    return _table({U: users, IT: items, T: ts, LA: lat, LO: lon, B: behavior, C: category,
                   V: value, TZ: tz, EVENT_ID: event_id})


#: The commonest time form, ``2012-04-03T18:00:09Z``, with fields in range (the date itself
#: is checked by the parse): read a column at a time, as Python's fromisoformat reads it.
_PLAIN_UTC = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:"
              r"[0-5]\dZ$")


def _plain_utc(times: list[Any]) -> pa.Array | None:
    """``times`` as UTC timestamps when every one is of the form of :data:`_PLAIN_UTC`, a real
    date and inside the years an import accepts; else None."""
    if not all(type(t) is str for t in times):
        return None
    raw = pa.array(times, type=pa.string())
    if not pc.all(pc.match_substring_regex(raw, _PLAIN_UTC)).as_py():
        return None
    try:
        ts = pc.strptime(raw, format="%Y-%m-%dT%H:%M:%SZ", unit="us")
    except pa.ArrowInvalid:
        return None
    # a day that does not exist (2012-02-30) rolls over in the parse: the event path says which
    if not pc.all(pc.equal(pc.strftime(ts, format="%Y-%m-%d"),
                           pc.utf8_slice_codeunits(raw, 0, 10))).as_py():
        return None
    span = pc.min_max(ts)
    if span["min"].as_py() < _T_MIN or span["max"].as_py() >= _T_MAX:
        return None
    return ts


def _table(values: dict[str, Any]) -> pa.Table:
    """The Arrow batch of validated columns (lists or arrays)."""
    return pa.Table.from_arrays([pa.array(values[f.name], type=f.type) for f in _ARROW],
                                schema=_ARROW)


def _all_text(col: list[Any], limit: int) -> bool:
    """Every value text, not blank, at most ``limit`` characters."""
    return (all(type(x) is str for x in col) and all(map(str.strip, col))
            and max(map(len, col)) <= limit)


def _text_or_none(col: list[Any], limit: int = TEXT_MAX_CHARS, blank_ok: bool = True) -> bool:
    """Every value missing or text of at most ``limit`` characters (and not blank, unless
    ``blank_ok``: a blank optional field counts as missing)."""
    return all(x is None or (type(x) is str and len(x) <= limit and (blank_ok or x.strip()))
               for x in col)


def _numbers_or_none(col: list[Any]) -> bool:
    return all(x is None or type(x) in _NUMBER for x in col)


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


# -- times and local offsets ---------------------------------------------------------------
# The importer's SQL (timeparse, localtime, sql.category_sql) is the reference; evaluating it
# costs DuckDB a few milliseconds per query whatever the batch size, so the common forms are
# read in Python with the same result (tests/analytics/test_append.py compares the two on
# every form), and only the rest goes to one query.
_EPOCH = datetime(1970, 1, 1)
_T_MIN = datetime.fromisoformat(timeparse.TIME_MIN)
_T_MAX = datetime.fromisoformat(timeparse.TIME_MAX)
#: ISO text Python may read differently from DuckDB: more than 6 decimals, a lower-case z,
#: a blank before the offset (one-digit fields: Python refuses those anyway)
_SQL_ONLY = re.compile(r"\.\d{7}|z$|\s[+\-Zz]")
#: Cached lookups (bounded: cleared when full): zone of a 0.01-degree cell, and the offset
#: of a zone in a UTC minute (clock changes fall on whole minutes since 1970).
_CACHE_MAX = 200_000
_zone_cache: dict[tuple[int, int], str | None] = {}
_offset_cache: dict[tuple[str, int], int] = {}


def _half_up(x: float) -> int:
    """DuckDB's round() of a DOUBLE: halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _unix(e: str) -> datetime | None:
    """timeparse.unix_sql in Python (None: outside the years Python can hold)."""
    x = float(e)
    us = _half_up(x * 1_000_000) if abs(x) < timeparse.MS_THRESHOLD else _half_up(x * 1000)
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        return None


def _iso(t: str) -> tuple[datetime | None, int | None] | None:
    """timeparse.iso_sql and offset_minutes_sql in Python: (naive UTC time, non-zero offset in
    minutes or None); None when only the SQL can tell."""
    if _SQL_ONLY.search(t):
        return None
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        return None
    off = d.utcoffset()
    if off is None:
        return d, None
    minutes = off.total_seconds() / 60
    if minutes != int(minutes):
        return None
    return (d - off).replace(tzinfo=None), int(minutes) or None


def _times(cols: dict[str, list[Any]]) -> tuple[list[datetime | None], list[int | None],
                                                 list[str], list[str | None]]:
    """(UTC time, offset given in ts, status, category) per event; status: ok, none (no
    usable time given: already a problem), bad (unreadable) or range (outside the years)."""
    n = len(cols[U])
    ts: list[datetime | None] = [None] * n
    tz_ts: list[int | None] = [None] * n
    status = ["none"] * n
    category = list(cols[C])
    slow: list[int] = []
    for k, (t, e) in enumerate(zip(cols["t"], cols["e"], strict=True)):
        if e is not None:
            ts[k] = _unix(e)
            status[k] = "range" if ts[k] is None else "ok"
        elif t is not None:
            got = _iso(t)
            if got is None:
                slow.append(k)
            else:
                ts[k], tz_ts[k] = got
                status[k] = "ok"
    lists = [k for k, c in enumerate(category) if c is not None and c.lstrip().startswith("[{")]
    if slow or lists:
        _times_sql(cols, sorted(set(slow) | set(lists)), ts, tz_ts, status, category)
    for k, d in enumerate(ts):
        if d is None and status[k] == "ok":
            status[k] = "bad"
        elif d is not None and not _T_MIN <= d < _T_MAX:
            status[k], ts[k] = "range", None
    return ts, tz_ts, status, category


def _times_sql(cols: dict[str, list[Any]], rows: list[int], ts: list[datetime | None],
               tz_ts: list[int | None], status: list[str], category: list[str | None]) -> None:
    """The importer's SQL on events ``rows``: their ISO times (and offsets) and categories."""
    raw = pa.table({"k": pa.array(rows, type=pa.int64()),
                    "t": pa.array([cols["t"][k] for k in rows], type=pa.string()),
                    C: pa.array([cols[C][k] for k in rows], type=pa.string())})
    cur = _parser_cursor()
    view = f"_ts_raw_{uuid.uuid4().hex[:10]}"
    cur.register(view, raw)
    try:
        got = cur.execute(
            f"SELECT k, {timeparse.iso_sql('t')}, "
            f"nullif({timeparse.offset_minutes_sql('t')}, 0), {category_sql(C)} "
            f"FROM {view}").fetchall()
    finally:
        cur.unregister(view)
    for k, d, off, c in got:
        category[k] = c
        if cols["t"][k] is not None:
            ts[k], tz_ts[k], status[k] = d, off, "ok"


def _place_offsets(ts: list[datetime | None], lat: list[float | None],
                   lon: list[float | None], tz: list[int | None]) -> None:
    """Fill ``tz`` of the located events without one as an import does (localtime.py): the
    offset at the event's instant of the zone of its 0.01-degree cell, else (at sea) the
    longitude rule (spacetime.solar_offset_min)."""
    need = [k for k in range(len(ts)) if tz[k] is None and lat[k] is not None
            and ts[k] is not None]
    if not need:
        return
    step = localtime.CELLS_PER_DEGREE
    cells = {k: (_half_up(lat[k] * step), _half_up(lon[k] * step)) for k in need}
    zones = {c: _zone_cache.get(c, "?") for c in set(cells.values())}  # "?": not cached
    missing = sorted(c for c, z in zones.items() if z == "?")
    if missing:
        names = localtime.zone_names(np.array([c[0] / step for c in missing]),
                                     np.array([c[1] / step for c in missing]),
                                     localtime._known_zones(_parser_cursor()))
        zones.update(zip(missing, names.tolist(), strict=True))
        if len(_zone_cache) > _CACHE_MAX:
            _zone_cache.clear()
        _zone_cache.update((c, zones[c]) for c in missing)
    ask: dict[tuple[str, int], datetime] = {}
    keys: dict[int, tuple[str, int]] = {}
    offsets: dict[tuple[str, int], int] = {}
    for k in need:
        zone = zones[cells[k]]
        if zone is None:
            tz[k] = int(solar_offset_min(lon[k]))
            continue
        d = ts[k]
        # after 1970 every clock change falls on a whole minute; before, ask for the instant
        us = (d - _EPOCH) // timedelta(microseconds=1)
        key = (zone, us // 60_000_000) if d.year >= 1970 else (zone, -(1 << 62) - us)
        keys[k] = key
        if key not in offsets:
            cached = _offset_cache.get(key)
            if cached is not None:
                offsets[key] = cached
            else:
                ask[key] = d if d.year < 1970 else _EPOCH + timedelta(minutes=key[1])
    if ask:
        offsets.update(_zone_offsets(ask))
    for k, key in keys.items():
        tz[k] = offsets[key]


def _zone_offsets(ask: dict[tuple[str, int], datetime]) -> dict[tuple[str, int], int]:
    """localtime.offset_sql for each (zone, time) of ``ask`` (also kept in the cache)."""
    raw = pa.table({"z": pa.array([z for z, _ in ask], type=pa.string()),
                    "t": pa.array(list(ask.values()), type=pa.timestamp("us"))})
    cur = _parser_cursor()
    view = f"_ts_zone_{uuid.uuid4().hex[:10]}"
    cur.register(view, raw)
    try:
        got = [r[0] for r in cur.execute(
            f"SELECT {localtime.offset_sql('z', 't')} FROM {view}").fetchall()]
    finally:
        cur.unregister(view)
    out = dict(zip(ask, (int(o) for o in got), strict=True))
    if len(_offset_cache) > _CACHE_MAX:
        _offset_cache.clear()
    _offset_cache.update(out)
    return out


# -- append --------------------------------------------------------------------------------
#: Appends of this process run one at a time (the server has one writer thread anyway; this
#: keeps direct callers, e.g. tests and the CLI, from colliding in DuckDB's optimistic
#: concurrency, where the second commit of the same registry row would fail).
_append_lock = threading.Lock()
#: Folds run one at a time, but beside appends: a fold writes the summary tables, the
#: ``rollups`` row and deletes the staged rows its snapshot saw, an append inserts events,
#: stages new rows and updates the ``datasets`` row, so their transactions touch no row in
#: common and both commit (tests/analytics/test_append.py checks the counts stay exact).
_fold_lock = threading.Lock()
log = logging.getLogger(__name__)


@contextmanager
def write_lock() -> Iterator[None]:
    """Hold the fold lock, then the append lock (one order everywhere: no deadlock), for a
    caller that must keep appends and folds out while it rewrites what they update (a drop by
    the server's writer)."""
    with _fold_lock, _append_lock:
        yield


#: For the background summary rebuild (app/services/live.rebuild_if_needed): it builds from
#: one snapshot of the events and replaces the tables a fold updates, so folds wait, but
#: appends commit beside it (what they stage after its snapshot waits for the fold after it).
fold_lock = _fold_lock


def live_table(name: str) -> str:
    """Quoted name of dataset ``name``'s live table (appended events, ids, arrival times)."""
    return derived_table("live", name, "events")


def _ids_table(name: str) -> str:
    """Quoted name of dataset ``name``'s known ids: (kind 'u' user / 'i' item, id)."""
    return derived_table("live", name, "ids")


#: What this process learnt of each dataset it appended to, per (workspace, lower-case name),
#: set after each commit (:class:`_Seen`). A commit that has it skips the look-ups (the
#: registry row, the live and stage tables' existence) and checks inside its transaction
#: instead: the registry update matches the name and import time it remembers, and a missing
#: table fails a statement; either way the transaction is rolled back and the batch is
#: committed again, this time looking everything up (nothing is stored twice: the first
#: attempt left nothing).
KNOWN_MAX = 500_000


@dataclass(eq=False)
class _Seen:
    name: str                          # the registered spelling
    imported_at: Any                   # the import this describes (a re-import is another)
    staged: bool = False               # its stage table existed at the last commit
    #: users and items in its committed id table ('u' | 'i', id): no look-up for them
    ids: set[tuple[str, str]] = field(default_factory=set)


_seen: dict[tuple[str, str], _Seen] = {}


class _Stale(Exception):
    """What a commit remembered of a dataset no longer holds (dropped, re-imported)."""


def _ensure_live(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    """Create the live table and the id tables of ``name`` if missing (the id tables filled
    from the stored events: one scan, on the dataset's first append only)."""
    have = {t for (t,) in cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema() "
        "AND starts_with(table_name, ?)", [f"live__{name}__"]).fetchall()}
    if live_table(name).strip('"') not in have:
        cols = ", ".join(f"{c} {schema.DUCKDB_TYPES[c]}" for c in schema.COLUMNS)
        cur.execute(f"CREATE TABLE {live_table(name)} ({cols}, {EVENT_ID} VARCHAR UNIQUE, "
                    f"{ARRIVED_AT} TIMESTAMP)")
    if _ids_table(name).strip('"') not in have:
        cur.execute(f"CREATE TABLE {_ids_table(name)} (kind VARCHAR, id VARCHAR, "
                    "PRIMARY KEY (kind, id))")
        cur.execute(f"INSERT INTO {_ids_table(name)} {_ids_sql(events_table(name))}")


def _ids_sql(table: str) -> str:
    """SELECT the distinct (kind, id) of the users and items of ``table``."""
    return (f"SELECT DISTINCT 'u', {U} FROM {table} WHERE {U} IS NOT NULL UNION ALL "
            f"SELECT DISTINCT 'i', {IT} FROM {table} WHERE {IT} IS NOT NULL")


def as_batch(frame: pd.DataFrame | pa.Table) -> pa.Table:
    """``frame`` (canonical columns, event_id optional; :func:`validate`'s result) as the
    Arrow table :func:`append` works on (DuckDB scans it directly). A caller that merges
    batches converts each in its own thread and concatenates them (``pa.concat_tables``)."""
    if isinstance(frame, pa.Table) and frame.schema.equals(_ARROW):
        table = frame
    else:
        if isinstance(frame, pa.Table):
            frame = frame.to_pandas()
        missing = [c for c in schema.COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"the batch lacks the columns {missing}: pass it through "
                             "validate()")
        arrays = []
        for f in _ARROW:
            if f.name not in frame.columns:  # event_id
                arrays.append(pa.nulls(len(frame), f.type))
                continue
            a = pa.array(frame[f.name], from_pandas=True)
            # other dtypes than validate's (numbers as ids, nanoseconds, float offsets): cast
            arrays.append(a if a.type.equals(f.type) else a.cast(f.type, safe=False))
        table = pa.Table.from_arrays(arrays, schema=_ARROW)
    for col in schema.REQUIRED:
        if table.column(col).null_count:
            raise ValueError(f"the batch has events without {col}: pass it through validate()")
    return table


def append(store: Store, name: str, frame: pd.DataFrame | pa.Table, *,
           fold: bool = True) -> AppendResult:
    """Store the validated events of ``frame`` (:func:`validate`, or :func:`as_batch` of it)
    in dataset ``name``, in one transaction (see the module's docstring). Raises
    DatasetNotFound for an unknown dataset and StoreError when the dataset is being imported,
    the workspace is read-only or the write failed (nothing is stored then).

    ``fold``: fold the staged events into the summaries right after (:func:`fold_summaries`);
    the server's writer passes False and folds on its own schedule."""
    name = schema.clean_dataset_name(name)
    if store.read_only:
        raise StoreError(f"the workspace {store.path.name} is open read-only: events cannot "
                         "be stored")
    batch = as_batch(frame)
    ids = batch.column(EVENT_ID)
    if ids.null_count == len(batch):
        first = np.ones(len(batch), dtype=bool)
    else:  # False: a repeat of an event id earlier in the batch
        seen: set[str] = set()
        first = np.ones(len(batch), dtype=bool)
        for k, eid in enumerate(ids.to_pylist()):
            if eid is not None:
                first[k] = eid not in seen
                seen.add(eid)
    key = (store.key, name.lower())
    with _append_lock:
        known = _seen.get(key) if len(batch) else None
        try:
            kept, rows, info = _commit(store, name, batch, first, known)
        except (_Stale, duckdb.Error):
            if known is None:
                raise
            _seen.pop(key, None)  # look everything up this time
            kept, rows, info = _commit(store, name, batch, first, None)
        except BaseException:
            _seen.pop(key, None)
            raise
        if info is not None:
            _seen[key] = info
    if fold and kept.any():
        fold_summaries(store, name)
    stored = int(kept.sum())
    return AppendResult(stored=stored, duplicates=len(batch) - stored, rows=int(rows),
                        kept=kept)


def _commit(store: Store, name: str, batch: pa.Table, first: np.ndarray, known: _Seen | None
            ) -> tuple[np.ndarray, int, _Seen | None]:
    """One transaction storing ``batch`` (see :func:`append`); ``known``: what the last
    commit learnt of the dataset (no look-ups: :class:`_Stale` or a DuckDB error when it no
    longer holds, with everything rolled back). Returns (stored mask, the dataset's rows
    after, what this commit learnt: None for an empty batch). DuckDB errors become
    StoreError when nothing was assumed."""
    cur = store.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        try:
            if known is None:
                stored_name, rows, imported_at = _registered(cur, store, name)
                if not len(batch):
                    cur.execute("COMMIT")
                    return np.zeros(0, dtype=bool), rows, None
                _ensure_live(cur, stored_name)
                info = _Seen(stored_name, imported_at)
            else:
                if store.claimed(known.name):
                    raise StoreError(f"dataset {known.name!r} is being imported right now; "
                                     "send the events again when the import has finished")
                info = _Seen(known.name, known.imported_at, known.staged, known.ids)
            kept, rows, keys, info.staged = _write(cur, info, batch, first, known is not None)
            cur.execute("COMMIT")
        except duckdb.Error as exc:
            _rollback(cur)
            if known is not None:
                raise
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"could not store the events in dataset {name!r} "
                             f"({first_line}); nothing was stored: send them again") from exc
        except BaseException:
            _rollback(cur)
            raise
    finally:
        cur.close()
    if keys:  # (committed: the set may grow in place)
        if len(info.ids) + len(keys) > KNOWN_MAX:
            info.ids = set()
        info.ids.update(keys)
    return kept, rows, info


def fold_summaries(store: Store, name: str) -> int:
    """Fold the events appended to dataset ``name`` and staged since the last fold into its
    summary tables (analytics.rollups.incremental.fold), one fold at a time (appends may
    commit meanwhile; their events wait for the next fold); the number folded. A failure is
    logged, not raised: the events are stored, the staged ones wait for the next fold."""
    with _fold_lock:
        return _fold(store, name)


def _fold(store: Store, name: str) -> int:
    try:
        return incremental.fold(store, schema.clean_dataset_name(name))
    except (duckdb.Error, StoreError):
        log.exception("could not fold the appended events of %s into its summaries", name)
        return 0


def _registered(cur: duckdb.DuckDBPyConnection, store: Store,
                name: str) -> tuple[str, int, Any]:
    """(the registered spelling of ``name``, its rows, its import time); refusals as the
    module says."""
    row = cur.execute("SELECT name, rows, imported_at FROM datasets "
                      "WHERE lower(name) = lower(?)", [name]).fetchall()
    row = row[0] if row else None
    if row is None:
        raise DatasetNotFound(f"no dataset named {name!r}: import it first (events are "
                              "appended to an imported dataset)")
    if store.claimed(row[0]):
        raise StoreError(f"dataset {row[0]!r} is being imported right now; send the events "
                         "again when the import has finished")
    return str(row[0]), int(row[1]), row[2]


def _write(cur: duckdb.DuckDBPyConnection, info: _Seen, batch: pa.Table, first: np.ndarray,
           assumed: bool) -> tuple[np.ndarray, int, set[tuple[str, str]], bool]:
    """The transaction's writes: the live table (event ids stored once), the events table,
    the stage, the registry row (checked against ``info`` when ``assumed``). Returns (stored
    mask over ``batch``, rows after, the users and items of the stored events not in
    ``info.ids``, whether the stage table exists)."""
    name = info.name
    tag = uuid.uuid4().hex[:10]
    view = f"_ts_append_{tag}"  # the stored events, read by DuckDB from Arrow (no copy)
    cand = batch if first.all() else batch.filter(pa.array(first))
    cols = ", ".join(schema.COLUMNS)
    cur.register(view, cand)
    try:
        arrived = datetime.now(UTC).replace(tzinfo=None)
        ids = cand.column(EVENT_ID)
        if ids.null_count == len(cand):  # no event ids: nothing to look up
            cur.execute(f"INSERT INTO {live_table(name)} SELECT {cols}, {EVENT_ID}, ? "
                        f"FROM {view}", [arrived])
            keep = np.ones(len(cand), dtype=bool)
        else:
            accepted = pa.array([r[0] for r in cur.execute(
                f"INSERT OR IGNORE INTO {live_table(name)} SELECT {cols}, {EVENT_ID}, ? "
                f"FROM {view} RETURNING {EVENT_ID}", [arrived]).fetchall()], pa.string())
            keep = pc.or_kleene(pc.is_null(ids), pc.is_in(ids, value_set=accepted)) \
                .to_numpy().astype(bool, copy=False)
        kept = np.zeros(len(batch), dtype=bool)
        kept[np.flatnonzero(first)[keep]] = True
        if not keep.any():
            return kept, _rows(cur, info, assumed), set(), info.staged
        new = cand if keep.all() else cand.filter(pa.array(keep))
        if new is not cand:
            cur.unregister(view)
            cur.register(view, new)
        cur.execute(f"INSERT INTO {events_table(name)} SELECT {cols} FROM {view}")
        keys, added = _new_ids(cur, name, new, info.ids, tag)
        staged = incremental.stage(cur, name, view, known=info.staged and assumed)
        rows = _registry(cur, info, new, added, assumed)
    finally:
        cur.unregister(view)
    return kept, rows, keys, staged


def _rows(cur: duckdb.DuckDBPyConnection, info: _Seen, assumed: bool) -> int:
    """The dataset's registered rows (:class:`_Stale` when ``assumed`` and it changed)."""
    got = cur.execute("SELECT rows FROM datasets WHERE name = ? AND imported_at IS NOT "
                      "DISTINCT FROM ?", [info.name, info.imported_at]).fetchall()
    if not got:
        raise _Stale(info.name)
    return int(got[0][0])


def _new_ids(cur: duckdb.DuckDBPyConnection, name: str, new: pa.Table,
             known: set[tuple[str, str]], tag: str) -> tuple[set[tuple[str, str]], dict[str, int]]:
    """The users and items of ``new`` missing from ``known`` as ('u'|'i', id), and how many
    of each are new to the dataset (added to its id table here)."""
    keys = ({("u", u) for u in pc.unique(new.column(U)).to_pylist()}
            | {("i", i) for i in pc.unique(new.column(IT)).to_pylist()})
    missing = keys - known
    if not missing:
        return missing, {U: 0, IT: 0}
    ids = f"_ts_ids_{tag}"
    cur.register(ids, pa.table({"kind": [k for k, _ in missing],
                                "id": [i for _, i in missing]}))
    try:
        kinds = [k for (k,) in cur.execute(f"INSERT OR IGNORE INTO {_ids_table(name)} "
                                           f"SELECT kind, id FROM {ids} "
                                           "RETURNING kind").fetchall()]
    finally:
        cur.unregister(ids)
    return missing, {U: kinds.count("u"), IT: kinds.count("i")}


def _registry(cur: duckdb.DuckDBPyConnection, info: _Seen, new: pa.Table,
              added: dict[str, int], assumed: bool) -> int:
    """Update the dataset's registry row from the stored events ``new`` (rows, span, box, new
    users and items); its rows after (:class:`_Stale` when ``assumed`` and the row is not the
    one ``info`` describes)."""
    span = pc.min_max(new.column(T))
    lat, lon = pc.min_max(new.column(LA)), pc.min_max(new.column(LO))
    got = cur.execute(
        "UPDATE datasets SET rows = rows + ?, users = users + ?, items = items + ?, "
        "time_min = least(time_min, ?), time_max = greatest(time_max, ?), "
        "min_lat = least(min_lat, ?), max_lat = greatest(max_lat, ?), "
        "min_lon = least(min_lon, ?), max_lon = greatest(max_lon, ?), "
        "has_coordinates = coalesce(has_coordinates, false) OR ? WHERE name = ? "
        "AND imported_at IS NOT DISTINCT FROM ? RETURNING rows",
        [len(new), added[U], added[IT], span["min"].as_py(), span["max"].as_py(),
         lat["min"].as_py(), lat["max"].as_py(), lon["min"].as_py(), lon["max"].as_py(),
         lat["min"].as_py() is not None, info.name, info.imported_at]).fetchall()
    if not got:
        if assumed:
            raise _Stale(info.name)
        raise StoreError(f"dataset {info.name!r} changed while the events were stored; "
                         "nothing was stored: send them again")
    return int(got[0][0])


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:
        pass  # the transaction already ended

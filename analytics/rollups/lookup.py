"""Finding the fresh summary tables that can answer a request; read-only, never builds.

A request is answerable from a dataset's summary tables when it asks about exactly a stored
dataset's events table on DuckDB: an Ibis table with no filter or derived column
(:func:`for_events`) or the quoted table name with no ``where`` (:func:`for_sql`). Spark,
DataFrames, filtered tables, read-only workspaces that were never summarised and stale sets
get None: the caller answers from the raw events. :func:`disabled` forces that (tests compare
both paths). analytics/rollups/build.py makes the tables fresh.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .tables import Rollup, fresh

_off: contextvars.ContextVar[bool] = contextvars.ContextVar("rollups_off", default=False)
#: (cursor, name) of the set being built: its finished tables answer the later build steps.
_building: contextvars.ContextVar[tuple[Any, str] | None] = contextvars.ContextVar(
    "rollup_building", default=None)


@contextmanager
def disabled() -> Iterator[None]:
    """Inside the block every lookup finds nothing: answers come from the raw events."""
    token = _off.set(True)
    try:
        yield
    finally:
        _off.reset(token)


def enabled() -> bool:
    """Whether summary tables may answer (not :func:`disabled`, not TRAILSCOPE_ROLLUPS=0)."""
    return not _off.get() and os.environ.get("TRAILSCOPE_ROLLUPS", "1") != "0"


@contextmanager
def building(cur: Any, name: str) -> Iterator[None]:
    """Inside the block, lookups of dataset ``name`` find the set being built on ``cur``
    (its tables made so far answer the build's later steps)."""
    token = _building.set((cur, name))
    try:
        yield
    finally:
        _building.reset(token)


def of(con: Any, name: str) -> Rollup | None:
    """The fresh summary tables of dataset ``name`` read through ``con``, or None."""
    now = _building.get()
    if now is not None and now[1] == name:
        return Rollup(now[0], name)
    return Rollup(con, name) if fresh(con, name) else None


def stored_name(events: Any) -> tuple[Any, str] | None:
    """(DuckDB connection, dataset name) when ``events`` is exactly a stored dataset's table
    on DuckDB (no filter, no derived columns), else None."""
    import ibis

    if not isinstance(events, ibis.expr.types.Table):
        return None
    op = events.op()
    if type(op).__name__ != "DatabaseTable" or getattr(op.source, "name", "") != "duckdb":
        return None
    m = re.fullmatch(r"events__([\w-]+)", str(op.name))
    return (op.source.con, m.group(1)) if m else None


def for_events(events: Any) -> Rollup | None:
    """The fresh summary tables answering for Ibis table ``events``, or None."""
    if not enabled():
        return None
    found = stored_name(events)
    return None if found is None else of(*found)


def for_sql(con: Any, table: str, where: str | None = None) -> Rollup | None:
    """The fresh summary tables of SQL table ``table`` (``Store.table(name)``) when no
    ``where`` narrows it, or None."""
    if not enabled() or where:
        return None
    m = re.fullmatch(r'"events__([\w-]+)"', table.strip())
    return None if m is None else of(con, m.group(1))

"""DuckDB helpers the SQL analyses of a stored events table share (density, zones, flows).

* :func:`registered`: a DataFrame as a uniquely named view for one ``with`` block (lookup
  tables computed in Python, joined back in SQL);
* :func:`located_sql`: the subquery of a table's located events, optionally filtered;
* :func:`zone_lookup`: the zone of each distinct place, noise left out, ready to join.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pandas as pd

from ..geo import has_coords_sql
from .zones import NOISE, ZONE, assign_zones


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, df: pd.DataFrame,
               prefix: str) -> Iterator[str]:
    """Register ``df`` as a uniquely named view on ``con`` for the ``with`` block.

    The unique name lets threads share a connection; the view is dropped afterwards.
    """
    view = f"_ts_{prefix}_{uuid.uuid4().hex}"
    con.register(view, df)
    try:
        yield view
    finally:
        con.unregister(view)


def located_sql(table: str, where: str | None, columns: list[str]) -> str:
    """Subquery of the located events of ``table`` (optionally filtered by ``where``)."""
    cond = has_coords_sql() + (f" AND ({where})" if where else "")
    return f"(SELECT {', '.join(columns)} FROM {table} WHERE {cond})"


def zone_lookup(coords: pd.DataFrame, zones: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """``key`` columns and the zone of each place of ``coords`` (``lat``/``lon`` plus
    ``key``), places outside every zone left out."""
    lookup = coords.assign(**{ZONE: assign_zones(coords, zones).to_numpy("int64")})
    return lookup.loc[lookup[ZONE] != NOISE, key + [ZONE]]

"""Heavy aggregations on an engine of the user's choice: the embedded DuckDB or Apache Spark.

When a dataset outgrows one machine, its events go to shared storage as Parquet
(``export_parquet`` or any pipeline that writes the canonical columns) and a Spark cluster
runs the very same Ibis aggregations as the embedded store (analytics.engine). Nothing here
re-implements an engine: Ibis compiles, DuckDB or Spark executes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from . import engine, schema
from .store import Store
from .temporal import activity as temporal
from .temporal import cohorts

#: name -> function(events table, freq) -> DataFrame; the aggregations the CLI exposes.
AGGREGATIONS: dict[str, Callable[[Any, str], pd.DataFrame]] = {
    "kpis": lambda t, freq: temporal.kpis(t),
    "trend": lambda t, freq: temporal.activity_series(t, freq, users="exact"),
    "active-users": lambda t, freq: temporal.active_users(t, freq),
    "rhythm": lambda t, freq: temporal.rhythm_matrix(t),
    "cohorts": lambda t, freq: cohorts.cohort_retention(t, freq),
}


def export_parquet(store: Store, name: str, path: str | Path) -> Path:
    """Write dataset ``name`` in the canonical schema to one Parquet file (sorted by time)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(schema.COLUMNS)
    cur = store.cursor()
    try:
        cur.execute(
            f"COPY (SELECT {cols} FROM {store.table(name)} ORDER BY {schema.TS}) "
            "TO ? (FORMAT parquet, COMPRESSION zstd)", [str(out)])
    finally:
        cur.close()
    return out


def _backend(engine_name: str, store: Store | None, master: str | None) -> Any:
    if engine_name == "duckdb":
        if store is None:
            store = Store()
        return engine.duckdb_backend(store)
    if engine_name == "spark":
        return engine.spark_backend(master=master or "local[2]")
    raise ValueError(f"unknown engine {engine_name!r}; use 'duckdb' or 'spark'")


def events_source(backend: Any, source: str) -> Any:
    """An events table from a dataset name, or from Parquet file(s)/a glob/a URL Spark reads."""
    looks_like_path = any(ch in source for ch in "/\\*.:")
    if not looks_like_path:
        return engine.events_table(backend, source)
    if not any(ch in source for ch in "*:") and not Path(source).exists():
        raise FileNotFoundError(f"{source}: no such Parquet file or folder")
    return engine.events_table(backend, backend.read_parquet(source))


def run_aggregation(what: str, source: str, *, engine_name: str = "duckdb",
                    master: str | None = None, freq: str = "day",
                    store: Store | None = None) -> pd.DataFrame:
    """Run aggregation ``what`` over ``source`` (dataset name or Parquet path) on an engine."""
    if what not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {what!r}; choose from {', '.join(AGGREGATIONS)}")
    backend = _backend(engine_name, store, master)
    return AGGREGATIONS[what](events_source(backend, source), freq)

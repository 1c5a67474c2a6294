"""Load real datasets into a store for model tests, through the project's importer.

``nyc`` and ``taobao`` are the slices committed in tests/data/. ``ml`` (MovieLens 100K, of
which no slice may be committed) and ``nyc_full`` are the complete files in $TRAILSCOPE_DATA:
``real_workspace`` loads them only when that folder exists, so a module can share one workspace
while its tests that use them are marked ``full_data`` (skipped without the folder).
"""

from __future__ import annotations

from pathlib import Path

from trailscope.analytics import schema
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.store import Store

from tests.conftest import FULL_NYC, MOVIELENS, NYC, TAOBAO, has_full_data

_COLS = ", ".join(schema.COLUMNS)

#: The files ``real_workspace`` loads, by dataset name.
PATHS = {"nyc": NYC, "ml": MOVIELENS, "taobao": TAOBAO, "nyc_full": FULL_NYC}
#: Those read from $TRAILSCOPE_DATA (complete files), loaded only when it exists.
FULL = {"ml", "nyc_full"}


def load(store: Store, path: Path, name: str) -> str:
    """Import ``path`` as dataset ``name`` with the project's importer."""
    import_file(store, path, name=name)
    return name


def slice_dataset(store: Store, source: str, name: str, n_users: int) -> str:
    """Dataset ``name`` with the events of the first ``n_users`` users (by id) of ``source``."""
    table = store.table(source)
    sql = (f"SELECT {_COLS} FROM {table} WHERE {schema.USER} IN (SELECT DISTINCT {schema.USER} "
           f"FROM {table} ORDER BY {schema.USER} LIMIT {int(n_users)})")
    store.save_dataset(name, sql, source=source, fmt="slice", report={}, replace=True)
    return name


def save_frame(store: Store, name: str, df, replace: bool = False) -> str:
    """Save a pandas frame with (some of) the canonical columns as dataset ``name``."""
    frame = df.copy()
    for col in schema.COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    con = store.cursor()
    con.register("frame_in", frame[list(schema.COLUMNS)])
    casts = ", ".join(f"CAST({c} AS {schema.DUCKDB_TYPES[c]})" for c in schema.COLUMNS)
    store.save_dataset(name, f"SELECT {casts} FROM frame_in", source="test", fmt="frame",
                       report={}, replace=replace, con=con)
    con.close()
    return name


def real_workspace(folder: Path, *datasets: str) -> Store:
    """A store in ``folder`` with the named datasets of ``PATHS`` loaded; those in ``FULL``
    only when $TRAILSCOPE_DATA exists (tests that use them are marked ``full_data``)."""
    store = Store(Path(folder) / "trailscope.duckdb")
    for name in datasets:
        if name not in FULL or has_full_data():
            load(store, PATHS[name], name)
    return store

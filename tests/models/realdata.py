"""Load the shared real datasets into a store for model tests.

Uses ``analytics.ingest.import_file`` when that module exists; until then each file is read
straight into the canonical schema with DuckDB and saved with ``Store.save_dataset``.
"""

from __future__ import annotations

from pathlib import Path

from trailscope.analytics import schema
from trailscope.analytics.store import Store

from tests.conftest import MOVIELENS, NYC, TAOBAO

_COLS = ", ".join(schema.COLUMNS)


def _select(path: Path) -> tuple[str, str]:
    """(SELECT in canonical column order, format name) for one of the shared files."""
    if path == NYC:
        poi = path.parent / "NYC_POI_raw.csv"
        return (f"""SELECT CAST(c.user_id AS VARCHAR) AS {schema.USER},
                   CAST(c.stan_poi_id AS VARCHAR) AS {schema.ITEM},
                   CAST(c.utc_time_minute AS TIMESTAMP) AS {schema.TS},
                   coalesce(c.latitude, p.latitude) AS {schema.LAT},
                   coalesce(c.longitude, p.longitude) AS {schema.LON},
                   'visit' AS {schema.BEHAVIOR}, c.venue_category AS {schema.CATEGORY},
                   CAST(NULL AS DOUBLE) AS {schema.VALUE},
                   CAST(NULL AS INTEGER) AS {schema.TZ_OFFSET}
                FROM read_csv('{path}') c
                LEFT JOIN read_csv('{poi}') p USING (stan_poi_id)""", "foursquare-nyc")
    if path == MOVIELENS:
        return (f"""SELECT CAST(column0 AS VARCHAR), CAST(column1 AS VARCHAR),
                   to_timestamp(column3)::TIMESTAMP, NULL::DOUBLE, NULL::DOUBLE, 'rate',
                   NULL::VARCHAR, CAST(column2 AS DOUBLE), NULL::INTEGER
                FROM read_csv('{path}', delim='\t', header=false)""", "movielens")
    if path == TAOBAO:
        return (f"""SELECT CAST(column0 AS VARCHAR), CAST(column1 AS VARCHAR),
                   to_timestamp(column4)::TIMESTAMP, NULL::DOUBLE, NULL::DOUBLE, column3,
                   CAST(column2 AS VARCHAR), NULL::DOUBLE, 480
                FROM read_csv('{path}', header=false)""", "taobao")
    raise ValueError(f"no loader for {path}")


def load(store: Store, path: Path, name: str) -> str:
    """Import ``path`` as dataset ``name`` (via analytics.ingest if available)."""
    try:
        from trailscope.analytics.ingest.pipeline import import_file
    except ImportError:
        import_file = None
    if import_file is not None:
        import_file(store, path, name=name)
        return name
    sql, fmt = _select(path)
    # duckdb TIMESTAMPTZ -> naive UTC: to_timestamp is tz-aware; session tz pinned to UTC
    con = store.cursor()
    con.execute("SET TimeZone = 'UTC'")
    store.save_dataset(name, sql, source=str(path), fmt=fmt, report={}, con=con)
    con.close()
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
    """A store in ``folder`` with the named shared datasets loaded ("nyc", "ml", "taobao")."""
    paths = {"nyc": NYC, "ml": MOVIELENS, "taobao": TAOBAO}
    store = Store(Path(folder) / "trailscope.duckdb")
    for name in datasets:
        load(store, paths[name], name)
    return store

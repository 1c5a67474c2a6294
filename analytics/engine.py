"""Where aggregations run: the embedded DuckDB store by default, Apache Spark when asked.

The time and evolution analytics (analytics.temporal, .sessions, .cohorts, .evolution, .churn)
are written once as Ibis expressions over an events table in the canonical schema; Ibis
compiles them to DuckDB SQL or Spark SQL. Only the small, already aggregated results come
back to pandas, where the cheap post-processing (filling empty periods, shares, models) runs.

Typical use::

    store = Store()
    events = events_table(duckdb_backend(store), "nyc")     # the stored dataset "nyc"
    temporal.activity_series(events, "day")

    spark = spark_backend()                                  # local[2] by default
    events = events_table(spark, store.events("nyc"))        # a DataFrame shipped to Spark

Plain pandas DataFrames are accepted by every aggregation too (they run on an in-memory
DuckDB through ``ibis.memtable``), which is what the tiny hand-computed tests use.

Ibis, DuckDB and PySpark are imported inside the functions so ``import analytics`` stays
light; ``spark_backend`` needs Java 17+ on the PATH.
"""

from __future__ import annotations

import itertools
import os
import shutil
import warnings
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import schema

if TYPE_CHECKING:  # pragma: no cover - typing only
    import ibis.expr.types as ir

    from .store import Store

_view_ids = itertools.count()

# Ibis 12 and PySpark 4.3 predate pandas 3 / DuckDB 2 and warn on every query about APIs
# they still use successfully (pandas' future.infer_string option, DuckDB's
# fetch_arrow_table, "pandas >= 3 not fully supported"). Silence exactly those sources.
_QUIET_MODULES = r"(ibis|pyspark)(\.|$)"
warnings.filterwarnings("ignore", category=DeprecationWarning, module=_QUIET_MODULES)
warnings.filterwarnings("ignore", category=FutureWarning, module=_QUIET_MODULES)

#: Seconds in the units the aggregations bucket by.
SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400}

#: ``freq`` names accepted by the aggregations and their Ibis truncation units.
FREQ_UNITS = {"hour": "h", "day": "D", "week": "W", "month": "M"}


class EngineError(RuntimeError):
    """An engine that cannot be used as asked; the message says why and what to do."""


def load_duckdb_backend() -> None:
    """Import Ibis and its DuckDB backend now: about 1.2 s on a 2-core machine (2 s under
    load), which the first page view of a server process paid otherwise (the Overview at 100M
    events: 4.2 s cold, 2.1 s of it this import). The server calls it before it serves."""
    import ibis

    ibis.duckdb  # noqa: B018 - the attribute loads the backend module


def duckdb_backend(store: Store) -> Any:
    """An Ibis DuckDB backend on a new cursor of the workspace's DuckDB connection.

    The cursor sees every dataset in the store (``events__<name>`` tables) and any write the
    store commits; it belongs to the caller's thread, like ``Store.cursor()``.
    """
    import ibis

    return ibis.duckdb.from_connection(store.cursor())


def spark_backend(master: str = "local[2]", app_name: str = "trailscope",
                  shuffle_partitions: int = 4) -> Any:
    """An Ibis PySpark backend on a (reused) SparkSession in UTC.

    The session time zone is pinned to UTC because ``ts`` holds naive UTC timestamps; with
    any other zone Spark would shift them when converting to epoch seconds. The UI is off and
    shuffle partitions are few, as fits the small results these aggregations produce.
    """
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EngineError(
            "Spark needs Java 17 or newer, and no `java` is on the PATH (JAVA_HOME is unset); "
            "install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) or use the DuckDB "
            "engine"
        )
    try:
        import ibis
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineError(
            f"the Spark engine needs pyspark ({exc}); install it with `pip install pyspark`"
        ) from exc
    session = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return ibis.pyspark.connect(session)


def _is_spark(backend: Any) -> bool:
    return getattr(backend, "name", "") == "pyspark"


def events_table(backend: Any, name_or_table: Any) -> ir.Table:
    """An Ibis table of events in the canonical schema on ``backend``.

    ``name_or_table`` is a dataset name (the store's ``events__<name>`` table, which must
    exist on that backend), a pandas DataFrame of canonical events (registered as a
    temporary table or view), or an Ibis table already bound to a backend (returned as is).
    """
    import ibis

    if isinstance(name_or_table, str):
        schema.check_dataset_name(name_or_table)
        # backend.table() rather than list_tables(): Ibis 12's DuckDB list_tables() calls
        # fetch_arrow_table() on a connection, which DuckDB 2 no longer has.
        try:
            return _check_columns(backend.table(f"events__{name_or_table}"))
        except ibis.common.exceptions.TableNotFound as exc:
            raise EngineError(
                f"no dataset named {name_or_table!r} on the {backend.name} engine; import it "
                "first (`trailscope import`), or pass its events as a DataFrame"
            ) from exc
    if isinstance(name_or_table, pd.DataFrame):
        frame = conform(name_or_table)
        view = f"ts_events_{os.getpid()}_{next(_view_ids)}"
        if _is_spark(backend):
            return _check_columns(backend.create_view(view, ibis.memtable(frame),
                                                      overwrite=True))
        return _duckdb_temp_table(backend, view, frame)
    if isinstance(name_or_table, ibis.expr.types.Table):
        return _check_columns(name_or_table)
    raise TypeError(
        "events must be a dataset name, a pandas DataFrame or an Ibis table, "
        f"not {type(name_or_table).__name__}"
    )


def _duckdb_temp_table(backend: Any, view: str, frame: pd.DataFrame) -> ir.Table:
    """Copy ``frame`` into a temporary DuckDB table in the canonical types.

    Plain DuckDB rather than ``backend.create_table``: with sqlglot 30, Ibis 12 emits a
    ``DROP VIEW IF EXISTS`` without a name after copying an in-memory frame, which DuckDB
    rejects.
    """
    con = backend.con
    staging = f"{view}_src"
    con.register(staging, frame)
    try:
        cols = ", ".join(f"CAST({c} AS {schema.DUCKDB_TYPES[c]}) AS {c}" for c in schema.COLUMNS)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS SELECT {cols} FROM {staging}")
    finally:
        con.unregister(staging)
    return _check_columns(backend.table(view))


def conform(events: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``events`` with every canonical column, in order, in the canonical dtypes.

    Missing optional columns are added as nulls so expressions can refer to them; a missing
    required column is an error naming it.
    """
    missing = [c for c in schema.REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(
            f"events lack the required column(s) {missing}; map your columns to "
            f"{list(schema.REQUIRED)} when importing"
        )
    out = pd.DataFrame(index=events.index)
    for col in schema.COLUMNS:
        dtype = schema.PANDAS_DTYPES[col]
        if col in events.columns:
            out[col] = events[col].astype(dtype)
        else:
            out[col] = pd.Series(pd.NA if dtype in ("string", "Int32") else float("nan"),
                                 index=events.index, dtype=dtype)
    return out.reset_index(drop=True)


def as_table(events: Any) -> ir.Table:
    """``events`` as an Ibis table: Ibis tables pass through, DataFrames become memtables."""
    import ibis

    if isinstance(events, ibis.expr.types.Table):
        return _check_columns(events)
    if isinstance(events, pd.DataFrame):
        return ibis.memtable(conform(events))
    raise TypeError(
        "events must be an Ibis table (see analytics.engine.events_table) or a pandas "
        f"DataFrame, not {type(events).__name__}"
    )


def _check_columns(table: ir.Table) -> ir.Table:
    missing = [c for c in schema.REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(
            f"the events table lacks the required column(s) {missing}; it must follow the "
            "canonical schema in analytics/schema.py"
        )
    return table


def execute(expr: Any) -> pd.DataFrame:
    """Run an Ibis expression on its backend and return a fresh pandas DataFrame."""
    out = expr.execute()
    if isinstance(out, pd.Series):
        out = out.to_frame()
    return out.reset_index(drop=True)


def check_freq(freq: str) -> str:
    """``freq`` if it is one of hour/day/week/month, else a ValueError listing them."""
    if freq not in FREQ_UNITS:
        raise ValueError(f"unknown granularity {freq!r}; use one of {sorted(FREQ_UNITS)}")
    return freq


def pandas_freq(freq: str) -> str:
    """The pandas offset alias of a period start at ``freq`` (weeks start on Monday)."""
    return {"hour": "h", "day": "D", "week": "W-MON", "month": "MS"}[check_freq(freq)]


def epoch_seconds(table: ir.Table, tz_fallback_min: int | None = None,
                  local: bool = False) -> ir.IntegerValue:
    """Seconds since 1970 of ``ts``; shifted to local time when ``local`` is true.

    Local time adds ``tz_offset_min`` minutes, or ``tz_fallback_min`` where the offset is
    null (0, i.e. UTC, when no fallback is given). Plain integer arithmetic, so DuckDB and
    Spark agree to the second.
    """
    secs = table[schema.TS].epoch_seconds().cast("int64")
    if not local:
        return secs
    fallback = 0 if tz_fallback_min is None else int(tz_fallback_min)
    if schema.TZ_OFFSET in table.columns:
        offset = table[schema.TZ_OFFSET].cast("int64").fill_null(fallback)
    else:
        import ibis

        offset = ibis.literal(fallback, type="int64")
    return secs + offset * 60


def period_start(table: ir.Table, freq: str) -> ir.TimestampValue:
    """``ts`` truncated to the start of its hour / day / week (Monday) / month, in UTC."""
    return table[schema.TS].truncate(FREQ_UNITS[check_freq(freq)])


def periods_between(start: ir.TimestampValue, end: ir.TimestampValue,
                    freq: str) -> ir.IntegerValue:
    """Whole ``freq`` periods from period start ``start`` to period start ``end``."""
    if check_freq(freq) == "month":
        return (end.year() - start.year()) * 12 + (end.month() - start.month())
    secs = end.epoch_seconds().cast("int64") - start.epoch_seconds().cast("int64")
    return (secs // SECONDS[freq]).cast("int64")


# -- names of the derived columns the aggregations return (event columns: analytics.schema) --
PERIOD = "period"            # start of the hour / day / week / month, UTC
EVENTS = "events"            # number of events
USERS = "users"              # number of distinct users

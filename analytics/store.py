"""The workspace store: one DuckDB file holding every dataset and a registry describing them.

Layout inside ``$TRAILSCOPE_HOME/trailscope.duckdb`` (default ``~/.trailscope``):

* ``datasets``: one row per dataset (name, source, format, counts, time span, bounding box,
  import time, import report as JSON, the fingerprint fixed at import: :meth:`Store.fingerprint`);
* ``"events__<name>"``: the dataset's events in the canonical schema (analytics/schema.py);
* tables derived from a dataset, ``"<kind>__<name>__<part>"`` (:data:`DERIVED_KINDS`): its
  summary tables and what the live write path keeps (analytics/append.py).

Streamed events are appended to an imported dataset by analytics/append.py, which updates the
registry row from each batch; the counts stay exact, the fingerprint stays the import's.

Names are compared case-insensitively (DuckDB's identifiers ignore case, so ``NYC`` and ``nyc``
would share one events table) and stripped of surrounding blanks. An import claims its name
(:meth:`Store.claim`) so that a second import to the same name is told it is being imported.
Files an import unpacks (zip members, transcoded text) go to the workspace's own temp folder,
``<workspace folder>/tmp`` (:func:`make_work_dir`), which a writable Store cleans when it opens.

Each dataset gets its own events table rather than sharing one table with a ``dataset``
column: dropping or replacing a dataset is then a cheap ``DROP TABLE`` inside the same
transaction as the registry update, and queries need no extra filter. A dataset appears whole
or not at all: ``save_dataset`` writes the table and the registry row in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from . import schema

DB_FILENAME = "trailscope.duckdb"
#: The workspace's temp folder (beside the workspace file) and the prefix of what imports
#: unpack there; only entries with the prefix are ever removed.
TMP_DIRNAME = "tmp"
WORK_PREFIX = "import-"

_claims_lock = threading.Lock()
_claims: set[tuple[str, str]] = set()  # (workspace file, lower-case name) being imported
_work_lock = threading.Lock()
_work_dirs: set[str] = set()  # work folders of this process's running imports

_REGISTRY_SQL = """
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY,
    source VARCHAR,
    format VARCHAR,
    rows BIGINT,
    users BIGINT,
    items BIGINT,
    time_min TIMESTAMP,
    time_max TIMESTAMP,
    min_lat DOUBLE, max_lat DOUBLE, min_lon DOUBLE, max_lon DOUBLE,
    has_coordinates BOOLEAN,
    imported_at TIMESTAMP,
    report VARCHAR,
    fingerprint VARCHAR
)
"""
#: Registry columns in order (``fingerprint``, added later, is appended to older workspaces
#: when they are opened for writing: :meth:`Store._upgrade_registry`).
_REGISTRY_COLUMNS = ("name", "source", "format", "rows", "users", "items", "time_min",
                     "time_max", "min_lat", "max_lat", "min_lon", "max_lon", "has_coordinates",
                     "imported_at", "report", "fingerprint")


class StoreError(RuntimeError):
    """A store operation that cannot proceed; the message says why and what to do."""


class DatasetNotFound(StoreError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


def home_dir() -> Path:
    """The workspace folder: ``$TRAILSCOPE_HOME`` or ``~/.trailscope``."""
    return Path(os.environ.get("TRAILSCOPE_HOME") or Path.home() / ".trailscope").expanduser()


def temp_root(db_path: Path | None = None) -> Path:
    """The workspace temp folder: beside ``db_path`` (default ``$TRAILSCOPE_HOME/tmp``)."""
    if db_path is None or str(db_path) == ":memory:":
        return home_dir() / TMP_DIRNAME
    return Path(db_path).parent / TMP_DIRNAME


def make_work_dir(root: Path | None = None) -> Path:
    """A fresh folder for one import's unpacked files inside the temp folder ``root``
    (:func:`temp_root` by default); remove it with :func:`remove_work_dir`."""
    root = temp_root() if root is None else Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _work_lock:
        work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=root))
        _work_dirs.add(str(work))
    return work


def remove_work_dir(work: Path) -> None:
    """Delete an import's work folder and everything in it."""
    try:
        shutil.rmtree(work, ignore_errors=True)
    finally:
        with _work_lock:
            _work_dirs.discard(str(work))


def clean_temp(root: Path) -> int:
    """Remove what imports left in the temp folder ``root`` (a killed import's unpacked
    member), except the work folders of imports running in this process; returns how many."""
    if not root.is_dir():
        return 0
    removed = 0
    with _work_lock:
        for entry in root.iterdir():
            if not entry.name.startswith(WORK_PREFIX) or str(entry) in _work_dirs:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def events_table(name: str) -> str:
    """Quoted SQL identifier of a dataset's events table."""
    schema.check_dataset_name(name)
    return f'"events__{name}"'


#: Kinds of tables derived from a dataset: ``rollup``, the dashboard's summary tables (rebuilt
#: from the events at will); ``live``, what the live write path keeps (analytics/append.py:
#: the appended events with their event ids and arrival times, the known user and item ids),
#: which nothing can rebuild. A derived table is
#: named ``"<kind>__<dataset>__<part>"`` with no double underscore in the kind or the part, so
#: the dataset of every derived table is unambiguous even for names holding ``__``; a kind may
#: keep one row per dataset in its registry table ``<kind>s`` (column ``name``). The store owns
#: this rule so that ``Store.drop`` removes whatever was derived without knowing who built it.
DERIVED_KINDS = ("rollup", "live")
#: The kinds :func:`drop_derived` drops by default: the summaries, which a rebuild replaces.
SUMMARY_KINDS = ("rollup",)


def derived_table(kind: str, name: str, part: str) -> str:
    """Quoted SQL identifier of table ``part`` derived from dataset ``name``."""
    schema.check_dataset_name(name)
    if kind not in DERIVED_KINDS or "__" in part or not part:
        raise ValueError(f"not a derived table: kind {kind!r}, part {part!r}")
    return f'"{kind}__{name}__{part}"'


def drop_derived(cur: duckdb.DuckDBPyConnection, name: str,
                 kinds: tuple[str, ...] = SUMMARY_KINDS, keep: tuple[str, ...] = ()) -> None:
    """Drop the tables of ``kinds`` derived from dataset ``name`` but those named in ``keep``
    (unquoted table names), and their registry rows, on ``cur`` (inside the caller's
    transaction: no statement here may fail). By default the summary tables only (what a
    summary rebuild replaces, keeping the events staged for it); ``Store.drop`` and a
    re-import pass :data:`DERIVED_KINDS`."""
    tables = {t for (t,) in cur.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = current_schema()"
    ).fetchall()}
    for kind in kinds:
        head = f"{kind}__{name}__"
        for t in sorted(tables):
            if t.startswith(head) and "__" not in t[len(head):] and t not in keep:
                cur.execute(f'DROP TABLE IF EXISTS "{t}"')
        if f"{kind}s" in tables:
            cur.execute(f"DELETE FROM {kind}s WHERE name = ?", [name])


def content_fingerprint(cur: duckdb.DuckDBPyConnection, name: str) -> str:
    """A short content hash of dataset ``name`` (rows, span, id hashes), on cursor ``cur``."""
    row = cur.execute(
        f"SELECT count(*), min({schema.TS}), max({schema.TS}), "
        f"sum(hash({schema.USER}) % 1000003), sum(hash({schema.ITEM}) % 1000003) "
        f"FROM {events_table(name)}"
    ).fetchone()
    return hashlib.sha1(repr(row).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str
    format: str
    rows: int
    users: int
    items: int
    time_min: datetime | None
    time_max: datetime | None
    bbox: tuple[float, float, float, float] | None  # (min_lat, max_lat, min_lon, max_lon)
    has_coordinates: bool
    imported_at: datetime
    report: dict[str, Any]


class Store:
    """A DuckDB workspace. Safe to share between threads: each call uses its own cursor."""

    def __init__(self, path: str | Path | None = None, read_only: bool = False) -> None:
        if path is None:
            home = home_dir()
            home.mkdir(parents=True, exist_ok=True)
            path = home / DB_FILENAME
        self.path = Path(path)
        self.read_only = read_only
        # claims are per database file, however its path is spelt (an in-memory one: per Store)
        self._claim_root = (f":memory:{id(self)}" if str(path) == ":memory:"
                            else str(self.path.resolve()))
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():  # a missing folder, no permission, a full disk
                raise StoreError(f"cannot open the workspace {self.path}: {exc}") from exc
            raise StoreError(
                f"cannot open the workspace {self.path}: {exc}. Another TrailScope process "
                "(a running dashboard?) may hold it; stop it or import through the dashboard."
            ) from exc
        self._lock = threading.Lock()
        # DuckDB draws a progress bar on long queries; it would garble CLI output and logs.
        self._con.execute("SET enable_progress_bar = false")
        if not read_only:
            self._con.execute(_REGISTRY_SQL)
            self._upgrade_registry()
            clean_temp(self.temp_dir)  # a writer holds the file: no other process imports

    def _upgrade_registry(self) -> None:
        """Give a workspace from before the ``fingerprint`` column that column, filled with
        each dataset's content fingerprint as it is now (what its models were bound to)."""
        cur = self.cursor()
        try:
            cur.execute("ALTER TABLE datasets ADD COLUMN IF NOT EXISTS fingerprint VARCHAR")
            for (name,) in cur.execute(
                    "SELECT name FROM datasets WHERE fingerprint IS NULL").fetchall():
                try:
                    cur.execute("UPDATE datasets SET fingerprint = ? WHERE name = ?",
                                [content_fingerprint(cur, name), name])
                except duckdb.Error:
                    pass  # no events table: fingerprint() says so when asked
        finally:
            cur.close()

    @property
    def key(self) -> str:
        """What names this workspace file in this process, however its path is spelt (an
        in-memory workspace: this Store)."""
        return self._claim_root

    @property
    def temp_dir(self) -> Path:
        """The workspace's temp folder, for the files an import unpacks."""
        return temp_root(self.path)

    # -- claims ------------------------------------------------------------------------
    @contextmanager
    def claim(self, name: str) -> Iterator[str]:
        """Hold dataset ``name`` (case-insensitive) for one import; StoreError at once when
        another import in this process holds it. Yields the name as cleaned."""
        name = schema.clean_dataset_name(name)
        key = (self._claim_root, name.lower())
        with _claims_lock:
            if key in _claims:
                raise StoreError(f"dataset {name!r} is being imported by another import right "
                                 "now; wait for it to finish, or import under another name")
            _claims.add(key)
        try:
            yield name
        finally:
            with _claims_lock:
                _claims.discard(key)

    def claimed(self, name: str) -> bool:
        """True while an import holds dataset ``name``."""
        with _claims_lock:
            return (self._claim_root, name.strip().lower()) in _claims

    # -- connections -------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the workspace connection, for one thread's queries."""
        with self._lock:
            return self._con.cursor()

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query_df(self, sql: str, params: list | None = None) -> pd.DataFrame:
        cur = self.cursor()
        try:
            return cur.execute(sql, params or []).df()
        finally:
            cur.close()

    # -- registry ----------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        """True if a dataset of that name exists (case-insensitive, blanks stripped)."""
        return self._stored_name(name) is not None

    def _stored_name(self, name: str) -> str | None:
        """The registered spelling of dataset ``name`` (compared case-insensitively), or None."""
        if not isinstance(name, str):
            return None
        cur = self.cursor()
        try:
            row = cur.execute("SELECT name FROM datasets WHERE lower(name) = lower(?)",
                              [name.strip()]).fetchone()
        finally:
            cur.close()
        return None if row is None else str(row[0])

    _LIST_SQL = ("SELECT name, source, format, rows, users, items, time_min, time_max, "
                 "min_lat, max_lat, min_lon, max_lon, has_coordinates, imported_at "
                 "FROM datasets ORDER BY imported_at DESC, name")

    def list_datasets(self) -> pd.DataFrame:
        """One row per dataset with its stats, newest import first (no report column)."""
        return self.query_df(self._LIST_SQL)

    def dataset_records(self) -> list[dict[str, Any]]:
        """:meth:`list_datasets` as plain rows (SQL NULL as None), without pandas: what the
        API and the dataset picker read on every request (a tenth of the frame's cost)."""
        cur = self.cursor()
        try:
            cur.execute(self._LIST_SQL)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    def info(self, name: str) -> DatasetInfo:
        cur = self.cursor()
        try:
            row = cur.execute(
                "SELECT name, source, format, rows, users, items, time_min, time_max, min_lat, "
                "max_lat, min_lon, max_lon, has_coordinates, imported_at, report "
                "FROM datasets WHERE lower(name) = lower(?)",
                [name.strip() if isinstance(name, str) else name],
            ).fetchone()
        finally:
            cur.close()
        if row is None:
            raise DatasetNotFound(
                f"no dataset named {name!r}; `trailscope datasets` lists the ones imported"
            )
        bbox = None if row[8] is None else (row[8], row[9], row[10], row[11])
        return DatasetInfo(
            name=row[0], source=row[1], format=row[2], rows=row[3], users=row[4], items=row[5],
            time_min=row[6], time_max=row[7], bbox=bbox, has_coordinates=bool(row[12]),
            imported_at=row[13], report=json.loads(row[14] or "{}"),
        )

    def table(self, name: str) -> str:
        """Quoted events table of an existing dataset (raises DatasetNotFound)."""
        stored = self._stored_name(name)
        if stored is None:
            self.info(name)  # raises with the helpful message
        return events_table(stored or name)

    def events(self, name: str, columns: list[str] | None = None,
               where: str | None = None, params: list | None = None) -> pd.DataFrame:
        """A dataset's events as a DataFrame ordered by user and time."""
        cols = ", ".join(columns or schema.COLUMNS)
        sql = f"SELECT {cols} FROM {self.table(name)}"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {schema.USER}, {schema.TS}"
        return self.query_df(sql, params)

    def user_events(self, name: str, user: str, columns: list[str],
                    newest: int | None = None) -> dict[str, np.ndarray]:
        """One user's events as a numpy array per column, oldest first (events of the same
        time in the order they were stored); ``newest``: only that many of the latest. SQL
        NULL reads as NaN in a number column and None in a text one.

        What a recommendation reads on every request, so it is one query and no pandas: the
        dataset's spelling is resolved (one more query, :meth:`table`) only when the name as
        given names no events table (DuckDB matches quoted names case-insensitively)."""
        sql = (f"SELECT {', '.join(columns)} FROM {{table}} WHERE {schema.USER} = ? "
               f"ORDER BY {schema.TS} DESC, rowid DESC"
               + (f" LIMIT {int(newest)}" if newest is not None else ""))
        cur = self.cursor()
        try:
            try:
                got = cur.execute(sql.format(table=events_table(name)), [str(user)]).fetchnumpy()
            except (duckdb.CatalogException, ValueError):  # another spelling, or no dataset
                got = cur.execute(sql.format(table=self.table(name)), [str(user)]).fetchnumpy()
        finally:
            cur.close()
        out = {}
        for col, arr in got.items():
            if isinstance(arr, np.ma.MaskedArray):  # NULLs present
                mask = np.ma.getmaskarray(arr)
                if arr.dtype == object:  # (filled(None) would use the mask's "?")
                    arr = np.array(arr.data, dtype=object)
                    arr[mask] = None
                else:
                    arr = (arr.astype(np.float64).filled(np.nan) if arr.dtype.kind in "iuf"
                           else arr.filled())
            out[col] = np.ascontiguousarray(arr[::-1])
        return out

    # -- writing -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside BEGIN/COMMIT; any exception rolls everything back."""
        if self.read_only:
            raise StoreError(f"the workspace {self.path} is open read-only")
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            cur.close()
            raise
        cur.execute("COMMIT")
        cur.close()

    def save_dataset(self, name: str, select_sql: str | None = None, *, source: str, fmt: str,
                     report: dict[str, Any], replace: bool = False,
                     params: list | None = None,
                     con: duckdb.DuckDBPyConnection | None = None,
                     staged: str | None = None,
                     prepare: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                     stats: dict[str, Any] | None = None) -> DatasetInfo:
        """Create dataset ``name`` from ``select_sql`` (canonical columns, in order) atomically.

        ``con`` lets a caller run the select on the cursor where its staging temp tables live;
        the whole write then happens inside one transaction on that cursor.

        Instead of ``select_sql``, ``staged`` may name a committed table of this workspace that
        already holds the rows (the importer's staging table): inside the transaction
        ``prepare(cur)`` runs first (e.g. deletes rejected rows, drops helper columns), then
        the table, which must now have exactly the canonical columns, is renamed to the
        dataset's table. On failure it is left as it was, for the caller to drop.

        ``stats`` (keys rows, users, items, time_min, time_max, min_lat, max_lat, min_lon,
        max_lon, as computed over the final rows) spares the scan that computes them.
        """
        name = schema.clean_dataset_name(name)
        if self.read_only:
            raise StoreError(f"the workspace {self.path} is open read-only")
        if (select_sql is None) == (staged is None):
            raise ValueError("pass exactly one of select_sql and staged")
        if staged is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", staged):
            raise ValueError(f"staged must be a plain table name, not {staged!r}")
        table = events_table(name)
        cur = con if con is not None else self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            row = cur.execute("SELECT name FROM datasets WHERE lower(name) = lower(?)",
                              [name]).fetchone()
            old = None if row is None else str(row[0])
            if old is not None and not replace:
                same = "" if old == name else f" (as {old!r}: names ignore case)"
                raise StoreError(
                    f"dataset {name!r} already exists{same}; pass --replace to overwrite it "
                    "or --name to import under another name"
                )
            if old is not None:
                cur.execute(f"DROP TABLE IF EXISTS {events_table(old)}")
                cur.execute("DELETE FROM datasets WHERE name = ?", [old])
                # the summaries of the same name are rebuilt when stale; what the live path
                # kept (event ids, known ids) describes the old events and goes with them
                drop_derived(cur, old, DERIVED_KINDS if old != name else ("live",))
            if staged is None:
                cur.execute(schema.create_table_sql(table))
                cur.execute(f"INSERT INTO {table} {select_sql}", params or [])
            else:
                if prepare is not None:
                    prepare(cur)
                cols = cur.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                    "AND schema_name = 'main' ORDER BY column_index", [staged]).fetchall()
                want = [(c, schema.DUCKDB_TYPES[c]) for c in schema.COLUMNS]
                if cols != want:
                    raise StoreError(f"staged table {staged} has columns {cols}, not the "
                                     f"canonical {want}")
                cur.execute(f"ALTER TABLE {staged} RENAME TO {table}")
            keys = ("rows", "users", "items", "time_min", "time_max", "min_lat", "max_lat",
                    "min_lon", "max_lon")
            if stats is not None:
                s = [stats[k] for k in keys]
            else:
                s = cur.execute(
                    f"SELECT count(*), count(DISTINCT {schema.USER}), "
                    f"count(DISTINCT {schema.ITEM}), min({schema.TS}), max({schema.TS}), "
                    f"min({schema.LAT}), max({schema.LAT}), min({schema.LON}), "
                    f"max({schema.LON}) FROM {table}"
                ).fetchone()
            if not s[0]:
                raise StoreError(
                    f"no usable rows to import into {name!r}; the import report says why "
                    f"each row was rejected: {json.dumps(report.get('rejected_by_reason', {}))}"
                )
            has_coords = s[5] is not None
            cur.execute(
                f"INSERT INTO datasets ({', '.join(_REGISTRY_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_REGISTRY_COLUMNS))})",
                [name, source, fmt, s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8],
                 has_coords, datetime.now(UTC).replace(tzinfo=None),
                 json.dumps(report, default=str), content_fingerprint(cur, name)],
            )
            cur.execute("COMMIT")
        except duckdb.Error as exc:
            _rollback(cur)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"could not save dataset {name!r} ({first}); the workspace is "
                             "unchanged: try the import again") from exc
        except BaseException:
            _rollback(cur)
            raise
        finally:
            if con is None:
                cur.close()
        return self.info(name)

    def update_report(self, name: str, report: dict[str, Any]) -> None:
        """Replace the import report kept in dataset ``name``'s registry row."""
        self.info(name)  # raises DatasetNotFound with a helpful message
        cur = self.cursor()
        try:
            cur.execute("UPDATE datasets SET report = ? WHERE name = ?",
                        [json.dumps(report, default=str), name])
        finally:
            cur.close()

    def drop(self, name: str) -> str:
        """Delete dataset ``name`` (case-insensitive): its events, registry row and every table
        derived from it (``drop_derived``), in one transaction, then the per-dataset folders
        other layers cache beside the workspace (``cache/<kind>/<name>``, e.g. the models'
        prepared columns); returns the name dropped."""
        name = self.info(name).name  # raises DatasetNotFound with a helpful message
        if self.claimed(name):
            raise StoreError(f"dataset {name!r} is being imported right now; drop it when the "
                             "import has finished")
        with self.transaction() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {events_table(name)}")
            cur.execute("DELETE FROM datasets WHERE name = ?", [name])
            drop_derived(cur, name, DERIVED_KINDS)
        self._drop_cache_folders(name)
        return name

    def _drop_cache_folders(self, name: str) -> None:
        if str(self.path) == ":memory:":
            return
        root = self.path.parent / "cache"
        for kind in (root.iterdir() if root.is_dir() else ()):
            folder = kind / name
            if kind.is_dir() and folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)

    def fingerprint(self, name: str) -> str:
        """The fingerprint that binds models to dataset ``name``: its content fingerprint
        (rows, span, id hashes) fixed when it was imported, kept in the registry. Events
        appended since (analytics/append.py) leave it as it is, so models trained before
        stay valid; a re-import of other data changes it. Raises DatasetNotFound."""
        cur = self.cursor()
        try:
            row = cur.execute("SELECT name, fingerprint FROM datasets "
                              "WHERE lower(name) = lower(?)",
                              [name.strip() if isinstance(name, str) else name]).fetchone()
            if row is None:
                self.info(name)  # raises with the helpful message
            # a workspace from before the column, opened read-only: the content as it is
            return row[1] if row[1] is not None else content_fingerprint(cur, row[0])
        except duckdb.BinderException:  # read-only workspace without the column at all
            return content_fingerprint(cur, name)
        finally:
            cur.close()

    def content_fingerprint(self, name: str) -> str:
        """A short hash of what dataset ``name`` holds now (appended events included): for
        whoever needs the content itself, e.g. to tell that a run's input changed."""
        stored = self.info(name).name  # raises DatasetNotFound with a helpful message
        cur = self.cursor()
        try:
            return content_fingerprint(cur, stored)
        finally:
            cur.close()


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    """ROLLBACK, tolerating a transaction DuckDB already ended."""
    try:
        cur.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction left to roll back

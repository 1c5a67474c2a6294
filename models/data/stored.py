"""The store-backed data path: k-core and indexing in DuckDB, columns cached on disk, memory-mapped.

``build_dataset`` (models/data/dataset.py) takes this path for large datasets. It gives the
same ``Events``, vocabularies, filter report and split parts as the in-memory path (pandas
``load_events`` -> ``kcore_filter`` -> ``encode``), without holding the events in memory:

1. **k-core in SQL**: each round keeps the items with >= ``min_item`` events among the kept
   users and items, then the users with >= ``min_user`` events among those (temp tables of
   kept ids), until a round removes nothing (``kcore_filter``'s rule, round for round);
2. **indexing in SQL**: users, items, categories and behaviours numbered from 1 in sorted id
   order (0 = padding / unknown category);
3. **events by user range**: the filtered events are read a range of users at a time (about
   ``BUCKET_EVENTS`` events each, sorted by user, time, item, behaviour in DuckDB), turned into
   the per-event columns (local time, coordinates) and written into ``.npy`` files opened as
   ``np.lib.format.open_memmap``; nothing of the size of the dataset is held in memory;
4. **cache**: those files, the vocabularies and the item attributes go to a folder under the
   workspace (``<workspace>/cache/models-data/<dataset>/<key>``), keyed by the dataset's
   content (its import fingerprint, import time and content fingerprint, which an append
   changes) and the filter settings; each split (split, ``max_len``) is a subfolder with its
   example arrays, training lengths, report, popularity and repeat rate. A folder is written
   under a temporary name and renamed in, so a reader never sees half of one. A new version of
   a dataset's data removes the folders of its older versions.

The cached arrays are opened with ``mmap_mode='r'``: ``SeqDataset.batch`` reads only the rows
it cuts and the OS pages them in and out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import duckdb
import numpy as np

from ...analytics import schema
from ...analytics.store import Store
from . import splits as sp
from .features import estimate_offset_min, local_hour_weekday
from .items import ItemSums, runs

#: Bump when what the cache holds or how it is computed changes: old folders are ignored.
CACHE_VERSION = 1
#: About this many events are sorted by DuckDB per query (a range of users).
BUCKET_EVENTS = 2_000_000
#: Rows per Arrow batch fetched from DuckDB and per numpy pass over the cached columns.
CHUNK_EVENTS = 1_000_000
CACHE_DIR = ("cache", "models-data")
#: A temporary folder this old is what a killed build left: the next build removes it.
STALE_S = 24 * 3600.0

#: The per-event columns and their dtypes, in ``Events`` field order.
EVENT_COLUMNS: dict[str, str] = {
    "user": "int64", "item": "int64", "ts": "float64", "lat": "float32", "lon": "float32",
    "geo": "bool", "hour": "int64", "weekday": "int64", "cat": "int64", "beh": "int64",
    "offset_min": "int64"}
_EXAMPLE_FIELDS = ("user", "pos", "start")
_PARTS = ("train", "valid", "test")


def cache_root(store: Store) -> Path | None:
    """The models' data cache of the workspace, None for an in-memory workspace."""
    if str(store.path) == ":memory:":
        return None
    return store.path.parent.joinpath(*CACHE_DIR)


def data_key(store: Store, name: str, min_user: int, min_item: int,
             iterative: bool) -> tuple[str, str]:
    """(data part, settings part) of a cache folder name: the first changes with the dataset's
    content (a re-import, an append), the second with the filter settings."""
    info = store.info(name)
    data = json.dumps([CACHE_VERSION, store.fingerprint(name), store.content_fingerprint(name),
                       str(info.imported_at), info.rows])
    settings = json.dumps([min_user, min_item, iterative])
    return (hashlib.sha1(data.encode()).hexdigest()[:16],
            hashlib.sha1(settings.encode()).hexdigest()[:8])


def _publish(tmp: Path, final: Path) -> Path:
    """Rename the written folder ``tmp`` to ``final``; another process's finished folder wins."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "done.json").exists():
            raise
    return final


def _tmp_dir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))


def _open(folder: Path, column: str) -> np.ndarray:
    """A cached column, memory-mapped read-only (a plain ndarray view on the map)."""
    return np.asarray(np.load(folder / f"{column}.npy", mmap_mode="r"))


# -- 1. k-core in SQL ---------------------------------------------------------------------
class _Temp:
    """Uniquely named temp tables on one cursor, dropped at the end."""

    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur, self.tag, self.names = cur, uuid.uuid4().hex[:8], []

    def __call__(self, part: str) -> str:
        name = f"kc_{part}_{self.tag}"
        if name not in self.names:
            self.names.append(name)
        return name

    def make(self, part: str, sql: str, params: list | None = None) -> str:
        name = self(part)
        self.cur.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", params or [])
        return name

    def drop(self) -> None:
        for name in self.names:
            try:
                self.cur.execute(f"DROP TABLE IF EXISTS {name}")
            except duckdb.Error:
                pass  # the cursor is gone: its temp tables went with it


def _one(cur: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return cur.execute(sql).fetchone()


def sql_kcore(tmp: _Temp, table: str, min_user: int, min_item: int,
              iterative: bool) -> tuple[dict[str, int], int, str, str]:
    """Run the k-core filter on ``table``; (before counts, rounds, users table (k, n), items
    table (k)) where ``n`` is the user's number of kept events. An item of the table may have
    lost every event with the last users removed: the kept events are those of both."""
    u, i = schema.USER, schema.ITEM
    cur = tmp.cur
    events, users, items = _one(cur, f"SELECT count(*), count(DISTINCT {u}), "
                                     f"count(DISTINCT {i}) FROM {table}")
    before = {"events": events, "users": users, "items": items}
    kept_u = kept_i = None
    rounds, n_prev = 0, events
    while True:
        rounds += 1
        where = " AND ".join(
            [f"{u} IN (SELECT k FROM {kept_u})"] * (kept_u is not None)
            + [f"{i} IN (SELECT k FROM {kept_i})"] * (kept_i is not None)) or "TRUE"
        new_i = tmp.make("items_next", f"SELECT {i} AS k FROM {table} WHERE {where} "
                                       f"GROUP BY {i} HAVING count(*) >= {int(min_item)}")
        where_u = " AND ".join([f"{u} IN (SELECT k FROM {kept_u})"] * (kept_u is not None)
                               + [f"{i} IN (SELECT k FROM {new_i})"])
        new_u = tmp.make("users_next", f"SELECT {u} AS k, count(*) AS n FROM {table} "
                                       f"WHERE {where_u} GROUP BY {u} "
                                       f"HAVING count(*) >= {int(min_user)}")
        kept_i = tmp.make("items", f"SELECT k FROM {new_i}")
        kept_u = tmp.make("users", f"SELECT k, n FROM {new_u}")
        n = int(_one(cur, f"SELECT coalesce(sum(n), 0) FROM {kept_u}")[0])
        if not iterative or n == n_prev:
            break
        n_prev = n
    if n == 0:
        raise ValueError(kcore_empty_message(min_user, min_item, events))
    return before, rounds, kept_u, kept_i


def kcore_empty_message(min_user: int, min_item: int, events: int) -> str:
    """What a k-core filter that kept nothing of ``events`` says (here and in pandas,
    models/data/dataset.kcore_filter)."""
    return (f"no events left after keeping users with >= {min_user} and items with >= "
            f"{min_item} events ({events} events before); lower min_user/min_item (e.g. "
            "`--set min_user=2 --set min_item=2` on `trailscope train`)")


# -- 2.-3. indexing and the per-event columns ---------------------------------------------
def _codes_table(tmp: _Temp, part: str, sql_values: str) -> tuple[str, tuple[str, ...]]:
    """A (k, code) table numbering the distinct values of ``sql_values`` from 1 in sorted
    order, and those values in that order."""
    name = tmp.make(part, f"SELECT k, row_number() OVER (ORDER BY k) AS code "
                          f"FROM ({sql_values}) WHERE k IS NOT NULL")
    vocab = tuple(v for (v,) in tmp.cur.execute(f"SELECT k FROM {name} ORDER BY code")
                  .fetchall())
    return name, vocab


def _user_chunks(user_start: np.ndarray, target: int) -> Iterator[tuple[int, int, int, int]]:
    """(first user, end user, first event, end event) of consecutive user ranges of about
    ``target`` events (at least one user each); ``user_start`` as in ``Events``."""
    n_users = len(user_start) - 2
    ua = 1
    while ua <= n_users:
        s = int(user_start[ua])
        ub = int(np.searchsorted(user_start, s + target, side="right")) - 1
        ub = min(max(ub, ua + 1), n_users + 1)
        yield ua, ub, s, int(user_start[ub])
        ua = ub


def _event_columns(u: np.ndarray, i: np.ndarray, us: np.ndarray, lat: np.ndarray,
                   lon: np.ndarray, tz: np.ndarray, c: np.ndarray,
                   b: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ``Events`` columns of a chunk (``encode``'s rules) and where its offsets came from
    (0 tz_offset_min, 1 longitude estimate, 2 UTC)."""
    ts = us.astype(np.int64) / 1e6
    geo = ~(np.isnan(lat) | np.isnan(lon))
    tz_known = ~np.isnan(tz)
    offset = np.where(tz_known, np.nan_to_num(tz), estimate_offset_min(lon)).astype(np.int64)
    hour, weekday = local_hour_weekday(ts, offset)
    cols = {"user": u.astype(np.int64), "item": i.astype(np.int64), "ts": ts,
            "lat": np.where(geo, lat, 0).astype(np.float32),
            "lon": np.where(geo, lon, 0).astype(np.float32), "geo": geo,
            "hour": hour + 1, "weekday": weekday + 1, "cat": c.astype(np.int64),
            "beh": b.astype(np.int64), "offset_min": offset}
    source = np.where(tz_known, 0, np.where(geo, 1, 2))
    return cols, source


class _Column:
    """A ``.npy`` file of ``n`` values written front to back a chunk at a time (plain writes:
    no mapped pages pile up in the process while the columns are written)."""

    def __init__(self, path: Path, dtype: np.dtype, n: int) -> None:
        self.f, self.dtype, self.rows = path.open("wb"), dtype, 0
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                     "shape": (n,)})

    def write(self, a: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(a, dtype=self.dtype).tobytes())
        self.rows += len(a)

    def close(self) -> None:
        self.f.close()


def _floats(batch, column: str) -> np.ndarray:
    return batch.column(column).to_numpy(zero_copy_only=False).astype(np.float64)


def write_events(tmp: _Temp, table: str, users: str, items: str, folder: Path
                 ) -> tuple[dict, np.ndarray]:
    """Index and write the filtered events of ``table`` into ``folder``; (vocabularies,
    user_start)."""
    cur = tmp.cur
    u_sql, i_sql = schema.USER, schema.ITEM
    beh = f"coalesce({schema.BEHAVIOR}, '{schema.DEFAULT_BEHAVIOR}')"
    # the kept events' (item, category, behaviour) combinations, in one scan
    keys = tmp.make("keys", f"SELECT DISTINCT {i_sql} AS i, {schema.CATEGORY} AS c, {beh} AS b "
                            f"FROM {table} WHERE {u_sql} IN (SELECT k FROM {users}) "
                            f"AND {i_sql} IN (SELECT k FROM {items})")
    user_codes, user_ids = _codes_table(tmp, "user_codes", f"SELECT k FROM {users}")
    item_codes, item_ids = _codes_table(tmp, "item_codes", f"SELECT DISTINCT i AS k FROM {keys}")
    cat_codes, cat_names = _codes_table(tmp, "cat_codes", f"SELECT DISTINCT c AS k FROM {keys}")
    beh_codes, beh_names = _codes_table(tmp, "beh_codes", f"SELECT DISTINCT b AS k FROM {keys}")
    counts = np.array([n for (n,) in cur.execute(
        f"SELECT n FROM {users} JOIN {user_codes} USING (k) ORDER BY code").fetchall()],
        dtype=np.int64)
    user_start = np.concatenate([[0, 0], np.cumsum(counts)]).astype(np.int64)
    n_events = int(user_start[-1])
    out = {c: _Column(folder / f"{c}.npy", np.dtype(d), n_events)
           for c, d in EVENT_COLUMNS.items()}
    sources = np.zeros(3, dtype=np.int64)
    try:
        for ua, ub, _, _ in _user_chunks(user_start, BUCKET_EVENTS):
            # the events of users ua..ub-1, in load_events's order (NULL behaviours last),
            # ties on every remaining column broken the same way each time; the id range
            # lets DuckDB skip the row groups of other users
            sql = f"""
                SELECT uc.code AS u, ic.code AS i, epoch_us(e.{schema.TS}) AS us,
                       e.{schema.LAT} AS lat, e.{schema.LON} AS lon,
                       e.{schema.TZ_OFFSET} AS tz, coalesce(cc.code, 0) AS c, bc.code AS b
                FROM {table} e
                JOIN {user_codes} uc ON e.{u_sql} = uc.k
                JOIN {item_codes} ic ON e.{i_sql} = ic.k
                LEFT JOIN {cat_codes} cc ON e.{schema.CATEGORY} = cc.k
                JOIN {beh_codes} bc ON {beh} = bc.k
                WHERE e.{u_sql} >= $lo AND e.{u_sql} <= $hi
                ORDER BY u, us, i, e.{schema.BEHAVIOR} IS NULL, b, lat NULLS LAST,
                         lon NULLS LAST, c, tz NULLS LAST"""
            reader = cur.sql(sql, params={"lo": user_ids[ua - 1], "hi": user_ids[ub - 2]}
                             ).to_arrow_reader(CHUNK_EVENTS)
            for batch in reader:
                cols, source = _event_columns(
                    batch.column("u").to_numpy(), batch.column("i").to_numpy(),
                    batch.column("us").to_numpy(), _floats(batch, "lat"),
                    _floats(batch, "lon"), _floats(batch, "tz"),
                    batch.column("c").to_numpy(), batch.column("b").to_numpy())
                for c, a in cols.items():
                    out[c].write(a)
                sources += np.bincount(source, minlength=3)
    finally:
        for col in out.values():
            col.close()
    written = {col.rows for col in out.values()}
    if written != {n_events}:
        raise RuntimeError(f"the events of the dataset changed while it was being read "
                           f"({min(written)} read, {n_events} counted); build it again")
    vocab = {"user_ids": user_ids, "item_ids": item_ids, "category_names": cat_names,
             "behavior_names": beh_names,
             "local_time_from": {"tz_offset_min": int(sources[0]),
                                 "longitude estimate": int(sources[1]),
                                 "UTC (no offset, no coordinates)": int(sources[2])}}
    return vocab, user_start


def _read(folder: Path, column: str, s: int, e: int) -> np.ndarray:
    """Rows ``s:e`` of a cached column, copied from a map that is closed at once (a pass over
    every row leaves no mapped pages behind)."""
    m = np.load(folder / f"{column}.npy", mmap_mode="r")
    try:
        return np.array(m[s:e])
    finally:
        m._mmap.close()


def item_attributes(folder: Path, user_start: np.ndarray,
                    n_items: int) -> tuple[np.ndarray, ...]:
    """``items.item_attributes`` over the columns a user range at a time (the same sums in
    the same order as over all events at once)."""
    sums = ItemSums(n_items)
    for _, _, s, e in _user_chunks(user_start, CHUNK_EVENTS):
        sums.add(*(_read(folder, c, s, e) for c in ("item", "lat", "lon", "geo", "cat")))
    return sums.result()


def train_counts(folder: Path, user_start: np.ndarray, res: sp.SplitResult,
                 n_items: int) -> tuple[float, np.ndarray]:
    """(repeat rate, training events per item index) of a split, a user range at a time: a
    user's events lie in one range, so repeated (user, item) pairs are counted exactly."""
    pop = np.zeros(n_items + 1, dtype=np.int64)
    n_train = n_repeat = 0
    for ua, ub, s, e in _user_chunks(user_start, CHUNK_EVENTS):
        if res.train_mask is not None:
            mask = res.train_mask[s:e]
        else:  # leave-last: a user's first train_len events
            mask = sp.prefix_mask(user_start, res.train_len, ua, ub)
        item = _read(folder, "item", s, e)[mask]
        pop += np.bincount(item, minlength=n_items + 1)
        pairs = _read(folder, "user", s, e)[mask] * (n_items + 1) + item
        n_train += len(pairs)
        n_repeat += len(pairs) - len(runs(pairs)[0])
    return (n_repeat / n_train if n_train else 0.0), pop[1:]


# -- 4. the cache --------------------------------------------------------------------------
def _save_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


def build_events(store: Store, name: str, min_user: int, min_item: int,
                 iterative: bool) -> Path:
    """The cache folder of dataset ``name``'s filtered, indexed events, built if missing."""
    root = cache_root(store)
    if root is None:
        raise ValueError("the store-backed data path needs a workspace file; this workspace "
                         "is in memory")
    stored = store.info(name).name
    data, settings = data_key(store, stored, min_user, min_item, iterative)
    parent = root / stored
    final = parent / f"{data}-{settings}"
    if (final / "done.json").exists():
        return final
    folder = _tmp_dir(parent)
    cur = store.cursor()
    tmp = _Temp(cur)
    try:
        table = store.table(stored)
        before, rounds, users, items = sql_kcore(tmp, table, min_user, min_item, iterative)
        vocab, user_start = write_events(tmp, table, users, items, folder)
        np.save(folder / "user_start.npy", user_start)
        report = {"min_user": min_user, "min_item": min_item, "iterative": iterative,
                  "rounds": rounds, "events_before": before["events"],
                  "events_after": int(user_start[-1]), "users_before": before["users"],
                  "users_after": len(vocab["user_ids"]), "items_before": before["items"],
                  "items_after": len(vocab["item_ids"])}
        _save_json(folder / "vocab.json", vocab)
        _save_json(folder / "filter.json", report)
        attrs = item_attributes(folder, user_start, len(vocab["item_ids"]))
        for col, a in zip(("item_lat", "item_lon", "item_cat"), attrs, strict=True):
            np.save(folder / f"{col}.npy", a)
        _save_json(folder / "done.json", {"dataset": stored, "version": CACHE_VERSION})
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        tmp.drop()
        cur.close()
    final = _publish(folder, final)
    for old in parent.iterdir():  # older versions of this dataset's data, killed builds' files
        if old.is_dir() and not old.name.startswith((data, ".tmp-")) or (
                old.name.startswith(".tmp-") and time.time() - old.stat().st_mtime > STALE_S):
            shutil.rmtree(old, ignore_errors=True)
    return final


def open_columns(folder: Path) -> dict[str, np.ndarray]:
    """The cached per-event columns and ``user_start`` of ``folder``, memory-mapped."""
    return {c: _open(folder, c) for c in (*EVENT_COLUMNS, "user_start")}


def build_split(folder: Path, ev, split: str, max_len: int, n_items: int) -> Path:
    """The cache subfolder of one split of the events in ``folder``, built if missing."""
    final = folder / f"split-{split}-{int(max_len)}"
    if (final / "done.json").exists():
        return final
    res = sp.split_events(split, ev.user_start, ev.ts, ev.item, max_len, with_mask=False)
    rate, pop = train_counts(folder, ev.user_start, res, n_items)
    out = _tmp_dir(folder)
    try:
        for part in _PARTS:
            ex = getattr(res, part)
            for f in _EXAMPLE_FIELDS:
                np.save(out / f"{part}_{f}.npy", np.asarray(getattr(ex, f), dtype=np.int64))
        np.save(out / "train_len.npy", res.train_len.astype(np.int64))
        np.save(out / "popularity.npy", pop.astype(np.int64))
        _save_json(out / "report.json", {**asdict(res.report), "repeat_rate": rate})
        _save_json(out / "done.json", {"split": split, "max_len": max_len})
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return _publish(out, final)


def open_split(folder: Path) -> tuple[dict[str, sp.Examples], np.ndarray, sp.SplitReport,
                                      float, np.ndarray]:
    """(parts, train_len, report, repeat rate, popularity) of a cached split."""
    parts = {p: sp.Examples(*(_open(folder, f"{p}_{f}") for f in _EXAMPLE_FIELDS))
             for p in _PARTS}
    rep = json.loads((folder / "report.json").read_text())
    rate = rep.pop("repeat_rate")
    rep["cuts"] = tuple(rep["cuts"])
    return (parts, np.load(folder / "train_len.npy"), sp.SplitReport(**rep), rate,
            np.load(folder / "popularity.npy"))


def load_cached(folder: Path) -> tuple[dict, dict, np.ndarray, np.ndarray, np.ndarray]:
    """(vocabularies, filter report fields, item lat, lon, category) of an events folder."""
    vocab = json.loads((folder / "vocab.json").read_text())
    for k in ("user_ids", "item_ids", "category_names", "behavior_names"):
        vocab[k] = tuple(vocab[k])
    return (vocab,
            json.loads((folder / "filter.json").read_text()),
            np.load(folder / "item_lat.npy"), np.load(folder / "item_lon.npy"),
            np.load(folder / "item_cat.npy"))

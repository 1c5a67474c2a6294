"""From a stored dataset to model batches: filtering, indexing, splits, padded tensors.

``build_dataset(store, name, split)`` reads the canonical events (analytics.schema), applies
the k-core filter (reported in a ``FilterReport``; the caller prints it), indexes users,
items, categories and behaviours from 1 (0 = padding), derives local hour/weekday, splits
(models.splits) and returns a ``SeqDataset`` whose ``batches()`` yield exactly the batch keys
documented in models/base.py, left-padded to ``max_len``.

Two paths give the same result: in memory (pandas: ``load_events``, ``kcore_filter``,
``encode``) for small datasets, and store-backed (models/data/stored.py: the filter and the
indexing in DuckDB, the columns in an on-disk cache, memory-mapped) from
``STORE_BACKED_MIN_EVENTS`` events on, or as ``backing`` says.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from ...analytics import schema
from ...analytics.store import Store
from ..base import Batch, DataMeta
from . import splits as sp
from . import stored
from .features import estimate_offset_min, local_hour_weekday
from .items import item_attributes

ExcludeSeen = bool | Literal["auto"]
Backing = Literal["auto", "memory", "store"]
#: ``backing="auto"`` takes the store-backed path from this many stored events on
STORE_BACKED_MIN_EVENTS = 1_000_000
#: Environment setting that overrides ``backing="auto"``: ``memory`` or ``store``.
BACKING_ENV = "TRAILSCOPE_DATA_BACKING"
#: below this share of repeat events, already-seen items are excluded from recommendations
REPEAT_RATE_THRESHOLD = 0.05
TRAJECTORY_MIN_COUNT = 10
#: ``progress(step, steps, what)``: step ``step`` of ``steps`` (1-based) starts; user-facing
StepProgress = Callable[[int, int, str], None]
#: the steps ``build_dataset`` reports, in memory and store-backed
MEMORY_STEPS = ("reading the events", "keeping users and items with enough events",
                "numbering users and items, local times", "splitting each user's history",
                "item places, categories and popularity")
STORE_STEPS = ("filtering, numbering and caching the events in the store",
               "opening the cached events", "splitting each user's history",
               "opening the split")


@dataclass(frozen=True)
class FilterReport:
    """The k-core filter's effect: counts before/after and how many rounds it took."""

    min_user: int
    min_item: int
    iterative: bool
    rounds: int
    events_before: int
    events_after: int
    users_before: int
    users_after: int
    items_before: int
    items_after: int

    @property
    def removed(self) -> dict[str, int]:
        return {"events": self.events_before - self.events_after,
                "users": self.users_before - self.users_after,
                "items": self.items_before - self.items_after}

    def __str__(self) -> str:
        r = self.removed
        kind = f"{self.rounds}-round iterative" if self.iterative else "single-pass"
        return (f"{kind} filter (users >= {self.min_user}, items >= {self.min_item} events) "
                f"removed {r['events']} of {self.events_before} events, {r['users']} of "
                f"{self.users_before} users, {r['items']} of {self.items_before} items")


def kcore_filter(df: pd.DataFrame, min_user: int = 5, min_item: int = 5,
                 iterative: bool = True) -> tuple[pd.DataFrame, FilterReport]:
    """Drop users with < ``min_user`` and items with < ``min_item`` events.

    Iterative (default) repeats until both hold, since removing items can push a user below
    the threshold; ``iterative=False`` is the one-pass filter of published next-POI protocols.
    """
    before = (len(df), df[schema.USER].nunique(), df[schema.ITEM].nunique())
    rounds = 0
    while True:
        rounds += 1
        n = len(df)
        df = df[df.groupby(schema.ITEM)[schema.ITEM].transform("size") >= min_item]
        df = df[df.groupby(schema.USER)[schema.USER].transform("size") >= min_user]
        if not iterative or len(df) == n:
            break
    if df.empty:
        raise ValueError(stored.kcore_empty_message(min_user, min_item, before[0]))
    report = FilterReport(min_user, min_item, iterative, rounds, before[0], len(df), before[1],
                          df[schema.USER].nunique(), before[2], df[schema.ITEM].nunique())
    return df.reset_index(drop=True), report


@dataclass(frozen=True)
class Events:
    """Flat per-event arrays sorted by user then time; user u owns [user_start[u], [u+1])."""

    user: np.ndarray      # int64, 1..n_users
    item: np.ndarray      # int64, 1..n_items
    ts: np.ndarray        # float64 unix seconds
    lat: np.ndarray       # float32, 0 where unknown
    lon: np.ndarray
    geo: np.ndarray       # bool
    hour: np.ndarray      # int64 1..24
    weekday: np.ndarray   # int64 1..7
    cat: np.ndarray       # int64, 0 = unknown
    beh: np.ndarray       # int64 1..n_behaviors
    offset_min: np.ndarray  # int64 UTC offset used for local time
    user_start: np.ndarray  # int64 (n_users + 2,)
    #: the cache folder the arrays are memory-mapped from (store-backed path), else None
    folder: Path | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def __reduce__(self):
        """Memory-mapped events pickle as their folder (distributed training's workers map
        the same files); in-memory ones as their arrays."""
        if self.folder is not None:
            return (open_cached_events, (self.folder,))
        return super().__reduce__()


def open_cached_events(folder: Path) -> Events:
    """The ``Events`` cached in ``folder`` (models/data/stored.py), memory-mapped."""
    return Events(**stored.open_columns(folder), folder=folder)


def _codes(values: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """1-based codes of a string column (0 = missing) and the sorted vocabulary."""
    vocab = tuple(sorted(values.dropna().unique().tolist()))
    codes = pd.Categorical(values, categories=list(vocab)).codes.astype(np.int64) + 1
    return codes, vocab


def load_events(store: Store, name: str) -> pd.DataFrame:
    """The dataset's events in a deterministic order (user, time, item, behaviour)."""
    df = store.events(name)
    return df.sort_values([schema.USER, schema.TS, schema.ITEM, schema.BEHAVIOR],
                          kind="stable").reset_index(drop=True)


def encode(df: pd.DataFrame) -> tuple[Events, dict]:
    """Index a filtered, sorted events frame; returns the arrays and the vocabularies."""
    user, user_ids = _codes(df[schema.USER])
    item, item_ids = _codes(df[schema.ITEM])
    cat, cat_names = _codes(df[schema.CATEGORY])
    beh_col = df[schema.BEHAVIOR].fillna(schema.DEFAULT_BEHAVIOR)
    beh, beh_names = _codes(beh_col)
    ts = df[schema.TS].to_numpy("datetime64[us]").astype(np.int64) / 1e6
    lat = df[schema.LAT].to_numpy(dtype=np.float64, na_value=np.nan)
    lon = df[schema.LON].to_numpy(dtype=np.float64, na_value=np.nan)
    geo = ~(np.isnan(lat) | np.isnan(lon))
    tz = df[schema.TZ_OFFSET].to_numpy(dtype=np.float64, na_value=np.nan)
    tz_known = ~np.isnan(tz)
    offset = np.where(tz_known, np.nan_to_num(tz), estimate_offset_min(lon)).astype(np.int64)
    hour, weekday = local_hour_weekday(ts, offset)
    if np.any(np.diff(user) < 0):
        raise ValueError("events must be sorted by user (use load_events)")
    counts = np.bincount(user, minlength=len(user_ids) + 1)
    user_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ev = Events(user, item, ts, np.where(geo, lat, 0).astype(np.float32),
                np.where(geo, lon, 0).astype(np.float32), geo, hour + 1, weekday + 1, cat, beh,
                offset, user_start)
    vocab = {"user_ids": user_ids, "item_ids": item_ids, "category_names": cat_names,
             "behavior_names": beh_names,
             "local_time_from": {"tz_offset_min": int(tz_known.sum()),
                                 "longitude estimate": int((~tz_known & geo).sum()),
                                 "UTC (no offset, no coordinates)": int((~tz_known & ~geo).sum())}}
    return ev, vocab


def repeat_rate(user: np.ndarray, item: np.ndarray) -> float:
    """Share of events whose item the same user had already interacted with before."""
    if len(user) == 0:
        return 0.0
    return float(pd.DataFrame({"u": user, "i": item}).duplicated().mean())


def resolve_exclude_seen(setting: ExcludeSeen, rate: float) -> tuple[bool, str]:
    """(exclude?, message). ``auto`` excludes seen items when repeats are rare."""
    if setting == "auto":
        ex = rate < REPEAT_RATE_THRESHOLD
        return ex, (f"repeat rate {rate:.3f} {'<' if ex else '>='} {REPEAT_RATE_THRESHOLD}: "
                    f"already-seen items are {'excluded from' if ex else 'allowed in'} "
                    "recommendations (exclude_seen=auto)")
    if not isinstance(setting, bool):
        raise ValueError(f"exclude_seen must be True, False or 'auto', got {setting!r}")
    return setting, (f"repeat rate {rate:.3f}; already-seen items "
                     f"{'excluded' if setting else 'allowed'} (exclude_seen={setting})")


@dataclass
class SeqDataset:
    """Indexed events + split examples; ``batches`` turns examples into padded tensors."""

    name: str
    meta: DataMeta
    events: Events
    parts: dict[str, sp.Examples]
    train_len: np.ndarray
    filter_report: FilterReport
    split_report: sp.SplitReport
    exclude_seen: bool
    repeat_rate: float
    messages: list[str] = field(default_factory=list)

    @property
    def max_len(self) -> int:
        return self.meta.max_len

    def batch(self, ex: sp.Examples, idx: np.ndarray | None = None) -> Batch:
        """Padded batch for the examples ``ex`` (or the subset ``idx``)."""
        if idx is not None:
            ex = ex.subset(idx)
        ev, n = self.events, self.meta.max_len
        pos = ex.pos[:, None] + np.arange(-n, 0)[None, :]          # (B, L) positions
        real = pos >= np.maximum(ex.start, ex.pos - n)[:, None]
        p = np.where(real, pos, 0)

        def take(a: np.ndarray, fill: float | int = 0) -> np.ndarray:
            return np.where(real, a[p], fill)

        nxt = np.where(real, ev.item[np.where(real, pos + 1, 0)], 0)   # pos + 1 <= target
        t = ex.pos
        return Batch(
            user=torch.from_numpy(ex.user.copy()),
            item_seq=torch.from_numpy(take(ev.item)),
            time_seq=torch.from_numpy(take(ev.ts).astype(np.float64)),
            lat_seq=torch.from_numpy(take(ev.lat).astype(np.float32)),
            lon_seq=torch.from_numpy(take(ev.lon).astype(np.float32)),
            geo_mask=torch.from_numpy(take(ev.geo, False).astype(bool)),
            hour_seq=torch.from_numpy(take(ev.hour)),
            weekday_seq=torch.from_numpy(take(ev.weekday)),
            cat_seq=torch.from_numpy(take(ev.cat)),
            beh_seq=torch.from_numpy(take(ev.beh)),
            target=torch.from_numpy(ev.item[t].copy()),
            target_time=torch.from_numpy(ev.ts[t].copy()),
            target_hour=torch.from_numpy(ev.hour[t].copy()),
            target_weekday=torch.from_numpy(ev.weekday[t].copy()),
            target_seq=torch.from_numpy(nxt),
            len=torch.from_numpy(real.sum(1).astype(np.int64)),
        )

    def batches(self, part: str, batch_size: int = 256, shuffle: bool = False,
                seed: int = 0) -> Iterator[Batch]:
        """Batches of one part (``train``/``valid``/``test``); shuffled with ``seed``."""
        if part not in self.parts:
            raise KeyError(f"unknown part {part!r}; choose one of {sorted(self.parts)}")
        ex = self.parts[part]
        order = (np.random.default_rng(seed).permutation(len(ex)) if shuffle
                 else np.arange(len(ex)))
        for i in range(0, len(ex), batch_size):
            yield self.batch(ex, order[i:i + batch_size])

    def history_items(self, ex: sp.Examples) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs of every item in each example's full history (not only L)."""
        lens = ex.pos - ex.start
        rows = np.repeat(np.arange(len(ex)), lens)
        first = np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.repeat(ex.start, lens) + np.arange(int(lens.sum())) - first
        return rows, self.events.item[pos]


def _filter_settings(split: str, min_user: int, min_item: int) -> tuple[int, int, bool]:
    if split == "trajectory":  # the published protocol: one pass, >= 10 check-ins each
        return TRAJECTORY_MIN_COUNT, TRAJECTORY_MIN_COUNT, False
    return min_user, min_item, True


def use_store(store: Store, name: str, backing: Backing) -> bool:
    """Whether ``build_dataset`` takes the store-backed path: ``backing``, or for ``auto``
    what $TRAILSCOPE_DATA_BACKING says, else at least ``STORE_BACKED_MIN_EVENTS`` stored
    events (``auto`` keeps an in-memory workspace in memory: it has no cache folder)."""
    if backing not in ("auto", "memory", "store"):
        raise ValueError(f"backing must be 'auto', 'memory' or 'store', got {backing!r}")
    if backing != "auto":
        return backing == "store"
    if stored.cache_root(store) is None:
        return False
    env = os.environ.get(BACKING_ENV, "").strip().lower()
    if env not in ("", "auto", "memory", "store"):
        raise ValueError(f"the environment setting {BACKING_ENV} must be auto, memory or "
                         f"store, not {env!r}")
    if env in ("memory", "store"):
        return env == "store"
    return store.info(name).rows >= STORE_BACKED_MIN_EVENTS


def build_dataset(store: Store, name: str, split: str = "leave-last", max_len: int = 50,
                  min_user: int = 5, min_item: int = 5,
                  exclude_seen: ExcludeSeen = "auto", *,
                  backing: Backing = "auto",
                  progress: StepProgress | None = None) -> SeqDataset:
    """Filter, index and split dataset ``name``; reports are in ``.messages`` (print them).

    ``backing``: ``memory`` (pandas), ``store`` (models/data/stored.py: DuckDB, an on-disk
    cache, memory-mapped columns) or ``auto`` (the store from ``STORE_BACKED_MIN_EVENTS``
    events on); both give the same dataset. ``progress`` hears of each step as it starts
    (``MEMORY_STEPS`` or ``STORE_STEPS``).
    """
    if split not in sp.SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(sp.SPLITS)}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    k_user, k_item, iterative = _filter_settings(split, min_user, min_item)
    on_store = use_store(store, name, backing)
    steps = STORE_STEPS if on_store else MEMORY_STEPS

    def step(k: int) -> None:
        if progress is not None:
            progress(k + 1, len(steps), steps[k])

    if on_store:
        step(0)
        folder = stored.build_events(store, name, k_user, k_item, iterative)
        step(1)
        ev = open_cached_events(folder)
        vocab, frep_fields, item_lat, item_lon, item_cat = stored.load_cached(folder)
        frep = FilterReport(**frep_fields)
        n_items = len(vocab["item_ids"])
        step(2)
        split_folder = stored.build_split(folder, ev, split, max_len, n_items)
        step(3)
        parts, train_len, report, rate, pop = stored.open_split(split_folder)
    else:
        step(0)
        events = load_events(store, name)
        step(1)
        df, frep = kcore_filter(events, k_user, k_item, iterative)
        del events
        step(2)
        ev, vocab = encode(df)
        del df
        step(3)
        res = sp.split_events(split, ev.user_start, ev.ts, ev.item, max_len)
        parts = {"train": res.train, "valid": res.valid, "test": res.test}
        train_len, report = res.train_len, res.report
        step(4)
        rate = repeat_rate(ev.user[res.train_mask], ev.item[res.train_mask])
        n_items = len(vocab["item_ids"])
        pop = np.bincount(ev.item[res.train_mask], minlength=n_items + 1)[1:]
        item_lat, item_lon, item_cat = item_attributes(ev.item, ev.lat, ev.lon, ev.geo,
                                                       ev.cat, n_items)
    if len(parts["test"]) == 0 or len(parts["train"]) == 0:
        raise ValueError(f"split {split!r} of {name!r} leaves no training or test examples "
                         f"({report}); use more data or another split")
    excl, excl_msg = resolve_exclude_seen(exclude_seen, rate)
    meta = DataMeta(
        n_items=n_items, n_users=len(vocab["user_ids"]),
        n_categories=len(vocab["category_names"]), n_behaviors=len(vocab["behavior_names"]),
        max_len=max_len, item_ids=vocab["item_ids"],
        item_lat=tuple(item_lat.tolist()), item_lon=tuple(item_lon.tolist()),
        item_category=tuple(item_cat.tolist()),
        item_popularity=tuple(int(c) for c in pop),
        # an item has a mean position iff one of its events has coordinates
        has_coordinates=bool(np.isfinite(item_lat).any()),
        extra={"dataset": name, "split": split, "exclude_seen": excl, "repeat_rate": rate,
               "user_ids": vocab["user_ids"], "category_names": vocab["category_names"],
               "behavior_names": vocab["behavior_names"], "min_user": frep.min_user,
               "min_item": frep.min_item, "cuts": report.cuts,
               "local_time_from": vocab["local_time_from"]},
    )
    lt = ", ".join(f"{k}: {v}" for k, v in vocab["local_time_from"].items() if v)
    messages = [str(frep), str(report), excl_msg, f"local time from {lt}"]
    return SeqDataset(name, meta, ev, parts, train_len, frep, report, excl, rate, messages)

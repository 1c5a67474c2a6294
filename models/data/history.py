"""One user's history as a model batch, mapped through a trained model's own vocabularies.

Training indexes the filtered data; at inference the store may hold events the model never
saw (items filtered out, new events). The history is mapped through the checkpoint's item /
category / behaviour ids; unknown items are skipped and counted, never guessed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import torch

from ...analytics import schema
from ...analytics.store import Store
from ..base import Batch, DataMeta
from .features import estimate_offset_min, local_hour_weekday


class UnknownUser(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class History:
    batch: Batch
    items: np.ndarray      # known item indices of the events read (the full history: ``seen``)
    skipped: int           # events among the ones used whose item the model does not know
    at: float              # target time (unix seconds)


#: The columns a history reads, and what it reads them as
COLUMNS = [schema.ITEM, schema.TS, schema.LAT, schema.LON, schema.TZ_OFFSET, schema.CATEGORY,
           schema.BEHAVIOR]


def _lookup(positions: dict[str, int], values: np.ndarray, default: str | None = None
            ) -> np.ndarray:
    """1-based index of each value in a vocabulary (``DataMeta.index_of``), 0 where absent;
    a missing value (not a string) reads as ``default``."""
    get = positions.get
    return np.fromiter((get(v if isinstance(v, str) else default, 0) for v in values),
                       dtype=np.int64, count=len(values))


def to_seconds(at: datetime | str | float | int | pd.Timestamp) -> float:
    """Unix seconds of a time given as a datetime/ISO string (naive = UTC) or a number."""
    if isinstance(at, (int, float)):
        return float(at)
    ts = pd.Timestamp(at)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.value / 1e9


def user_index(meta: DataMeta, user: str) -> int:
    users = meta.extra.get("user_ids", ())
    idx = meta.index_of("user_ids").get(str(user), 0)
    if idx == 0:
        raise UnknownUser(
            f"user {user!r} is not among the {len(users)} users this model was trained on "
            f"(users need >= {meta.extra.get('min_user', '?')} events to be kept); pick a user "
            "from the dataset's user list or retrain with a lower min_user (e.g. "
            "`trailscope train NAME --set min_user=2`)")
    return idx


def user_history(store: Store, name: str, user: str, meta: DataMeta,
                 at: datetime | str | float | None = None, lat: float | None = None,
                 lon: float | None = None, *, seen: bool = False) -> History:
    """:func:`history_batch` of ``user``'s latest events read from the store: twice the
    model's ``max_len`` of them, or all when fewer than ``max_len`` of those are of items the
    model knows. ``seen`` (a model that never recommends seen items): ``History.items`` holds
    every known item of the user's whole history (one more query when the read was cut).

    A recommendation reads this on every request: a user with 5,000 events costs what one
    with 100 does."""
    uidx = user_index(meta, user)  # unknown users fail before touching the store
    limit = 2 * meta.max_len
    cols = store.user_events(name, user, COLUMNS, newest=limit)
    every = _lookup(meta.index_of("item_ids"), cols[schema.ITEM])
    cut = len(every) == limit
    if cut and int((every > 0).sum()) < meta.max_len:  # mostly items the model does not know
        cols = store.user_events(name, user, COLUMNS)
        every, cut = _lookup(meta.index_of("item_ids"), cols[schema.ITEM]), False
    hist = _history(cols, meta, uidx, user, at, lat, lon, every)
    if seen and cut:
        every = store.user_events(name, user, [schema.ITEM])[schema.ITEM]
        known = _lookup(meta.index_of("item_ids"), every)
        hist = dataclasses.replace(hist, items=np.unique(known[known > 0]))
    return hist


def history_batch(events: pd.DataFrame, meta: DataMeta, user: str,
                  at: datetime | str | float | None = None,
                  lat: float | None = None, lon: float | None = None) -> History:
    """A batch of one: the user's most recent ``max_len`` known events of ``events`` (a
    frame of the user's events, any order) and the target slot."""
    uidx = user_index(meta, user)
    df = events.sort_values(schema.TS, kind="stable")
    cols = {schema.ITEM: df[schema.ITEM].to_numpy(object),
            schema.TS: df[schema.TS].to_numpy("datetime64[us]"),
            schema.CATEGORY: df[schema.CATEGORY].to_numpy(object, na_value=None),
            schema.BEHAVIOR: df[schema.BEHAVIOR].to_numpy(object, na_value=None),
            **{c: df[c].to_numpy(np.float64, na_value=np.nan)
               for c in (schema.LAT, schema.LON, schema.TZ_OFFSET)}}
    return _history(cols, meta, uidx, user, at, lat, lon)


def _history(cols: dict[str, np.ndarray], meta: DataMeta, uidx: int, user: str,
             at: datetime | str | float | None, lat: float | None, lon: float | None,
             every: np.ndarray | None = None) -> History:
    """The batch of one from a user's events given as arrays per column, oldest first
    (``uidx``: the user's index, :func:`user_index`); ``every``: their item indices when the
    caller has looked them up."""
    if every is None:
        every = _lookup(meta.index_of("item_ids"), cols[schema.ITEM])
    if len(every) == 0:
        raise UnknownUser(f"user {user!r} has no events in the dataset")
    known = every > 0
    n = meta.max_len
    if not known.any():
        raise UnknownUser(f"none of user {user!r}'s items are known to this model; retrain it")
    first = np.flatnonzero(known)[-n:][0]   # the oldest event used
    skipped = int((~known[first:]).sum())
    sel = known.copy()
    sel[:first] = False
    item = every[sel]
    ts = cols[schema.TS][sel].astype("datetime64[us]").astype(np.int64) / 1e6
    elat = np.asarray(cols[schema.LAT][sel], dtype=np.float64)
    elon = np.asarray(cols[schema.LON][sel], dtype=np.float64)
    geo = ~(np.isnan(elat) | np.isnan(elon))
    tz = np.asarray(cols[schema.TZ_OFFSET][sel], dtype=np.float64)
    offset = np.where(np.isnan(tz), estimate_offset_min(elon), np.nan_to_num(tz)).astype(np.int64)
    hour, wday = local_hour_weekday(ts, offset)
    cat = _lookup(meta.index_of("category_names"), cols[schema.CATEGORY][sel])
    beh = _lookup(meta.index_of("behavior_names"), cols[schema.BEHAVIOR][sel],
                  schema.DEFAULT_BEHAVIOR)
    # default: the time of the user's latest event, also when its item is unknown to the model
    # (an event just posted of a new place): the recommendation is as of their last action
    t_at = (float(np.datetime64(cols[schema.TS][-1], "us").astype(np.int64)) / 1e6
            if at is None else to_seconds(at))
    t_off = (estimate_offset_min(np.array([lon]))[0] if lon is not None and np.isnan(tz[-1])
             else offset[-1])
    t_hour, t_wday = local_hour_weekday(np.array([t_at]), np.array([t_off]))
    m = len(item)

    def pad(a: np.ndarray, dtype: type) -> torch.Tensor:
        out = np.zeros((1, n), dtype=dtype)                                # (1, L)
        out[0, n - m:] = a
        return torch.from_numpy(out)

    def one(x: float | int, dtype: type = np.int64) -> torch.Tensor:
        return torch.from_numpy(np.array([x], dtype=dtype))                 # (1,)

    # numpy arrays, one torch.from_numpy each: a recommendation builds this batch on every
    # request, and each torch operation lets other threads take the GIL (a wait of up to
    # the switch interval under load); from_numpy does not
    nxt = np.r_[item[1:], 0]
    batch = Batch(
        user=one(uidx),
        item_seq=pad(item, np.int64),
        time_seq=pad(ts, np.float64),
        lat_seq=pad(np.where(geo, elat, 0.0), np.float32),
        lon_seq=pad(np.where(geo, elon, 0.0), np.float32),
        geo_mask=pad(geo, np.bool_),
        hour_seq=pad(hour + 1, np.int64),
        weekday_seq=pad(wday + 1, np.int64),
        cat_seq=pad(cat, np.int64),
        beh_seq=pad(beh, np.int64),
        target=one(item[-1]),     # unknown; a valid index, never scored
        target_time=one(t_at, np.float64),
        target_hour=one(t_hour[0] + 1),
        target_weekday=one(t_wday[0] + 1),
        target_seq=pad(nxt, np.int64),
        len=one(m),
    )
    return History(batch, np.unique(every[known]), skipped, t_at)

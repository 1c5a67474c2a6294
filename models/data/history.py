"""One user's history as a model batch, mapped through a trained model's own vocabularies.

Training indexes the filtered data; at inference the store may hold events the model never
saw (items filtered out, new events). The history is mapped through the checkpoint's item /
category / behaviour ids; unknown items are skipped and counted, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import torch

from ...analytics import schema
from ..base import Batch, DataMeta
from .features import estimate_offset_min, local_hour_weekday


class UnknownUser(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class History:
    batch: Batch
    items: np.ndarray      # every known item index of the user's full history
    skipped: int           # events whose item the model does not know
    at: float              # target time (unix seconds)


def _lookup(positions: dict[str, int], values: pd.Series) -> np.ndarray:
    """1-based index of each value in a vocabulary (``DataMeta.index_of``), 0 where absent."""
    get = positions.get
    return np.fromiter((get(v, 0) if isinstance(v, str) else 0 for v in values),
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
            "from the dataset's user list or retrain with a lower min_user")
    return idx


def history_batch(events: pd.DataFrame, meta: DataMeta, user: str,
                  at: datetime | str | float | None = None,
                  lat: float | None = None, lon: float | None = None) -> History:
    """A batch of one: the user's most recent ``max_len`` known events and the target slot."""
    uidx = user_index(meta, user)
    if events.empty:
        raise UnknownUser(f"user {user!r} has no events in the dataset")
    df = events.sort_values(schema.TS, kind="stable")
    item = _lookup(meta.index_of("item_ids"), df[schema.ITEM])
    known = item > 0
    df, item = df[known], item[known]
    if len(item) == 0:
        raise UnknownUser(f"none of user {user!r}'s items are known to this model; retrain it")
    ts = df[schema.TS].to_numpy("datetime64[us]").astype(np.int64) / 1e6
    elat = df[schema.LAT].to_numpy(dtype=np.float64, na_value=np.nan)
    elon = df[schema.LON].to_numpy(dtype=np.float64, na_value=np.nan)
    geo = ~(np.isnan(elat) | np.isnan(elon))
    tz = df[schema.TZ_OFFSET].to_numpy(dtype=np.float64, na_value=np.nan)
    offset = np.where(np.isnan(tz), estimate_offset_min(elon), np.nan_to_num(tz)).astype(np.int64)
    hour, wday = local_hour_weekday(ts, offset)
    cat = _lookup(meta.index_of("category_names"), df[schema.CATEGORY])
    beh = _lookup(meta.index_of("behavior_names"),
                  df[schema.BEHAVIOR].fillna(schema.DEFAULT_BEHAVIOR))
    t_at = float(ts[-1]) if at is None else to_seconds(at)
    t_off = (estimate_offset_min(np.array([lon]))[0] if lon is not None and np.isnan(tz[-1])
             else offset[-1])
    t_hour, t_wday = local_hour_weekday(np.array([t_at]), np.array([t_off]))
    n, m = meta.max_len, min(meta.max_len, len(item))

    def pad(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        out = np.zeros(n, dtype=a.dtype)
        out[n - m:] = a[-m:]
        return torch.from_numpy(out).to(dtype).unsqueeze(0)            # (1, L)

    nxt = np.r_[item[1:], 0]
    batch = Batch(
        user=torch.tensor([uidx]),
        item_seq=pad(item, torch.long),
        time_seq=pad(ts, torch.float64),
        lat_seq=pad(np.where(geo, elat, 0.0), torch.float32),
        lon_seq=pad(np.where(geo, elon, 0.0), torch.float32),
        geo_mask=pad(geo, torch.bool),
        hour_seq=pad(hour + 1, torch.long),
        weekday_seq=pad(wday + 1, torch.long),
        cat_seq=pad(cat, torch.long),
        beh_seq=pad(beh, torch.long),
        target=torch.tensor([int(item[-1])]),     # unknown; a valid index, never scored
        target_time=torch.tensor([t_at], dtype=torch.float64),
        target_hour=torch.tensor([int(t_hour[0]) + 1]),
        target_weekday=torch.tensor([int(t_wday[0]) + 1]),
        target_seq=pad(nxt, torch.long),
        len=torch.tensor([m]),
    )
    return History(batch, np.unique(item), int((~known).sum()), t_at)

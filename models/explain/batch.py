"""Batch helpers for explanations: one history as an events frame, deleting events, ranks.

A history batch has one row (B = 1), left-padded like every batch (models/base.py); "event
j" below is the j-th real event of that row, oldest first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ...analytics import schema
from ..base import Batch, DataMeta
from .types import ATTRIBUTION, GROUP_COLUMNS, HOUR, ITEM_INDEX, POSITION

#: (B, L) keys of a batch (everything else is per row)
SEQ_KEYS = ("item_seq", "time_seq", "lat_seq", "lon_seq", "geo_mask", "hour_seq",
            "weekday_seq", "cat_seq", "beh_seq", "target_seq")


def real_positions(batch: Batch) -> np.ndarray:
    """Column indices of the real events of row 0, oldest first."""
    return np.flatnonzero(batch["item_seq"][0].cpu().numpy() > 0)


def expand(batch: Batch, n: int) -> Batch:
    """Row 0 of ``batch`` repeated ``n`` times (views, no copies)."""
    return {k: v[:1].expand(n, *v.shape[1:]) for k, v in batch.items()}


def _name(vocab: tuple, idx: int) -> str | None:
    return str(vocab[idx - 1]) if 0 < idx <= len(vocab) else None


def events_frame(batch: Batch, meta: DataMeta) -> pd.DataFrame:
    """Row 0's real events as a frame (oldest first) with zero attribution columns."""
    pos = real_positions(batch)
    row = {k: batch[k][0].cpu().numpy() for k in SEQ_KEYS if k in batch}
    items = row["item_seq"][pos]
    cats = tuple(meta.extra.get("category_names", ()))
    behs = tuple(meta.extra.get("behavior_names", ()))
    geo = row["geo_mask"][pos].astype(bool)
    ts = pd.to_datetime(np.round(row["time_seq"][pos] * 1e6).astype("int64"), unit="us")
    out = pd.DataFrame({
        POSITION: np.arange(len(pos), dtype=np.int64),
        ITEM_INDEX: items.astype(np.int64),
        schema.ITEM: [meta.item_ids[i - 1] if 0 < i <= len(meta.item_ids) else str(i)
                      for i in items],
        schema.TS: ts,
        HOUR: (row["hour_seq"][pos] - 1).astype(np.int64),
        schema.CATEGORY: [_name(cats, int(c)) for c in row["cat_seq"][pos]],
        schema.BEHAVIOR: [_name(behs, int(b)) for b in row["beh_seq"][pos]],
        schema.LAT: np.where(geo, row["lat_seq"][pos].astype(np.float64), np.nan),
        schema.LON: np.where(geo, row["lon_seq"][pos].astype(np.float64), np.nan),
        ATTRIBUTION: np.zeros(len(pos)),
    })
    for col in GROUP_COLUMNS.values():
        out[col] = 0.0
    out[schema.CATEGORY] = out[schema.CATEGORY].astype("string")
    out[schema.BEHAVIOR] = out[schema.BEHAVIOR].astype("string")
    return out


def remove_events(batch: Batch, drops: list[np.ndarray]) -> Batch:
    """One row per entry of ``drops``: row 0's history without those events (0..n-1).

    The kept events are left-padded again, ``target_seq`` is rebuilt from the kept order
    and ``len`` updated; the target slot (time, hour, weekday) is unchanged.
    """
    pos = real_positions(batch)
    n, L = len(pos), batch["item_seq"].shape[1]
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in SEQ_KEYS if k in batch}
    lens = []
    for drop in drops:
        keep = np.setdiff1d(np.arange(n), np.asarray(drop, dtype=np.int64))
        cols = torch.as_tensor(pos[keep], dtype=torch.long)
        m = len(keep)
        for k in rows:
            src = batch[k][0]
            out = torch.zeros_like(src)
            if m:
                if k == "target_seq":
                    items = batch["item_seq"][0, cols]
                    out[L - m:] = torch.cat([items[1:], items.new_zeros(1)])
                else:
                    out[L - m:] = src[cols]
            rows[k].append(out)
        lens.append(m)
    out_batch = {k: torch.stack(v) for k, v in rows.items()}
    for k, v in batch.items():
        if k not in out_batch:
            out_batch[k] = v[:1].expand(len(drops), *v.shape[1:]).clone()
    out_batch["len"] = torch.tensor(lens, dtype=torch.long, device=batch["item_seq"].device)
    return out_batch


def ranks(scores: torch.Tensor, item: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of ``item`` in each row of (R, n_items + 1) scores (ties count against
    it), over all items but padding and ``exclude`` (the item itself is never excluded)."""
    s = scores.detach().float().clone()
    s[:, 0] = float("-inf")
    if exclude is not None and len(exclude):
        ex = torch.as_tensor(np.setdiff1d(exclude, [item]), dtype=torch.long, device=s.device)
        s[:, ex] = float("-inf")
    s = torch.nan_to_num(s, nan=float("-inf"))
    mine = s[:, item:item + 1]
    return ((s > mine).sum(1) + 1).cpu().numpy().astype(np.int64)

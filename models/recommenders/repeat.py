"""Repeat baseline: recommend the user's own past items, most recent and frequent first.

The history is the user's ``window`` most recent events before the target (None: the whole
history), each weighted ``0.5 ** (age / half-life)`` (None: plain counts). A batch holds only
the last ``max_len`` events; the older ones come from ``UserEvents``, every user's training
events kept when the model is calibrated on a dataset (``calibrate``), so a window beyond the
batch, or the whole history, is scored exactly. Window and half-life are chosen on the
validation split (models.training.tuning): on check-in data plain counts over the whole
history can beat a one-week half-life over the last 50 events, and on other data the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..base import Batch, DataMeta
from ..nn.transitions import csr_positions
from .pop import CountEvidence, PopRec

SECONDS_PER_HOUR = 3600.0


def recency_weight(age_s: torch.Tensor, half_life_hours: float | None) -> torch.Tensor:
    """``0.5 ** (age / half-life)`` (float32); 1 everywhere without a half-life."""
    if half_life_hours is None:
        return torch.ones_like(age_s, dtype=torch.float32)
    return torch.pow(0.5, age_s / (half_life_hours * SECONDS_PER_HOUR)).float()


class UserEvents(nn.Module):
    """Each user's training events (item, time) as CSR buffers: row u = user index u.

    Empty until ``fit``; saved with the model like weights (shapes taken from the checkpoint).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("item", torch.zeros(0, dtype=torch.long))
        self.register_buffer("time", torch.zeros(0, dtype=torch.float64))

    def fit(self, ds: Any) -> None:
        """Keep the training prefix of every user of ``ds`` (a models.data SeqDataset)."""
        ev, n = ds.events, np.asarray(ds.train_len, dtype=np.int64)
        starts = ev.user_start[:len(n)]
        first = np.repeat(np.cumsum(n) - n, n)
        pos = np.repeat(starts, n) + np.arange(int(n.sum())) - first
        dev = self.ptr.device
        self.ptr = torch.from_numpy(np.r_[0, np.cumsum(n)].astype(np.int64)).to(dev)
        self.item = torch.from_numpy(ev.item[pos].astype(np.int64)).to(dev)
        self.time = torch.from_numpy(ev.ts[pos].astype(np.float64)).to(dev)

    def older(self, user: torch.Tensor, first: torch.Tensor, n_first: torch.Tensor,
              keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's stored events older than its batch window, at most the ``keep`` (B,)
        most recent: (row, item, time), flat. The window starts at time ``first`` (B,) with
        ``n_first`` (B,) events at that very time; stored events at that time beyond those
        are older ones (time ties are common in check-in data)."""
        n_rows = len(self.ptr) - 1
        u = torch.where((user >= 0) & (user < n_rows), user, torch.zeros_like(user))
        if n_rows <= 1 or not len(self.item):
            z = torch.zeros(0, dtype=torch.long, device=user.device)
            return z, z, torch.zeros(0, dtype=torch.float64, device=user.device)
        rows, idx = csr_positions(self.ptr, u)
        t = self.time[idx]
        tie = t == first[rows]
        ok = (t < first[rows]) | tie
        rows, idx, t, tie = rows[ok], idx[ok], t[ok], tie[ok]
        # the stored events at the window's first time: the earliest of them are older
        n_tie = torch.bincount(rows[tie], minlength=len(user))
        first_tie = torch.full_like(n_tie, torch.iinfo(torch.long).max)
        first_tie = first_tie.scatter_reduce(0, rows[tie], idx[tie], "amin")
        ok = ~tie | (idx - first_tie[rows] < n_tie[rows] - n_first[rows])
        rows, idx, t = rows[ok], idx[ok], t[ok]
        n_older = torch.bincount(rows, minlength=len(user))            # a prefix of each row
        rank = idx - self.ptr[u][rows]                                  # 0 = oldest
        ok = rank >= n_older[rows] - keep[rows]
        return rows[ok], self.item[idx[ok]], t[ok]

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        for name in ("ptr", "item", "time"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                self._buffers[name] = torch.empty_like(saved, device=self.ptr.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def history_counts(batch: Batch, n_items: int, window: int | None,
                   half_life_hours: float | None, memory: UserEvents | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n_items + 1) each history's recency-weighted item counts over its ``window`` most
    recent events (None: all; ages up to the target time) and 1/0 for items in it; column 0
    is 0. Events older than the batch come from ``memory`` when given."""
    items = batch.item_seq                                         # (B, L)
    b, L = items.shape
    real = items > 0
    n_real = real.sum(1)
    limit = L if window is None else min(int(window), L)
    real = real & (torch.arange(L, device=items.device) >= L - limit)
    age = (batch.target_time.view(-1, 1) - batch.time_seq).clamp(min=0.0)
    w = torch.where(real, recency_weight(age, half_life_hours), 0.0)
    hist = torch.zeros(b, n_items + 1, device=items.device)
    hist.scatter_add_(1, items, w)
    seen = torch.zeros_like(hist).scatter_(1, items, real.float())
    if memory is not None and (window is None or window > L):
        big = torch.iinfo(torch.long).max // 4
        keep = torch.full_like(n_real, big) if window is None else (window - n_real).clamp(min=0)
        times = torch.where(real, batch.time_seq, torch.full_like(batch.time_seq, float("inf")))
        first = times.min(1).values
        n_first = (times == first[:, None]).sum(1)
        rows, old, t = memory.older(batch.user.to(items.device), first, n_first, keep)
        if len(rows):
            age = (batch.target_time[rows] - t).clamp(min=0.0)
            hist.index_put_((rows, old), recency_weight(age, half_life_hours), accumulate=True)
            seen[rows, old] = 1.0
    hist[:, 0] = seen[:, 0] = 0.0
    return hist, seen


class RepeatRec(PopRec):
    """Score = 1 + recency-weighted count of the item in the user's history window.

    Every item of the history outranks every item outside it (the ``1 +``); outside the
    history, items are ordered by training popularity (the fallback, scaled below 1e-3).
    """

    name = "repeat"

    @dataclass(frozen=True)
    class Config:
        half_life_hours: float | None = 24.0 * 7  # None: plain counts
        window: int | None = 50                   # most recent events used; None: all
        half_life_days: float | None = None   # popularity fallback decay (see PopRec)
        bandwidth_km: float = 2.0
        tune: bool = True                     # choose window and half_life_hours on validation

    #: 20 / 50 / 200 / all events x a day / a week / a month / no decay
    GRID = {"window": (20, 50, 200, None),
            "half_life_hours": (24.0, 24.0 * 7, 24.0 * 30, None)}

    def __init__(self, meta: DataMeta, config: Config | None = None) -> None:
        super().__init__(meta, config or self.Config())
        self.memory = UserEvents()

    def calibrate(self, ds: Any, device: torch.device | str = "cpu") -> str | None:
        self.memory.fit(ds)
        self.memory.to(device)
        return super().calibrate(ds, device)

    def score(self, batch: Batch) -> torch.Tensor:
        pop = super().score(batch)                                    # (B, n_items + 1)
        pop = 1e-3 * pop / pop[:, 1:].max().clamp(min=1.0)
        hist, seen = history_counts(batch, self.meta.n_items, self.config.window,
                                    self.config.half_life_hours, self.memory)
        return self.mask_padding(pop + seen + hist)

    def count_evidence(self, batch: Batch, item: int, positions: np.ndarray) -> CountEvidence:
        """Each past occurrence of ``item`` in the window gets its recency weight, and the 1
        for "you had it before" is shared among them; other events get 0 (events older than
        the batch are not split out)."""
        pos = positions
        window = self.config.window
        if window is not None:
            pos = pos[-window:] if window > 0 else pos[:0]
        items = batch.item_seq[0, pos].cpu().numpy()
        times = batch.time_seq[0, pos]
        age = (batch.target_time[0] - times).clamp(min=0.0)
        w = recency_weight(age, self.config.half_life_hours).cpu().numpy().astype(float)
        mine = items == item
        attr = np.where(mine, w + 1.0 / mine.sum(), 0.0) if mine.any() else np.zeros(len(pos))
        last = None
        if mine.any():  # the same microsecond rounding as the explanation's events frame
            us = np.round(times.cpu().numpy()[mine] * 1e6).astype("int64")
            last = pd.to_datetime(us, unit="us").max().isoformat()
        full = np.zeros(len(positions))
        full[len(positions) - len(pos):] = attr
        hl = self.config.half_life_hours
        return CountEvidence(full, {
            "your_events": int(mine.sum()), "recency_weight": float(w[mine].sum()),
            "half_life_hours": float(hl) if hl is not None else None, "last_time": last})

    def score_near(self, batch: Batch, lat: float, lon: float) -> torch.Tensor:
        return self.score(batch)  # the user's own history does not depend on where they are

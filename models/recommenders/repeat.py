"""Repeat baseline: recommend the user's own past items, most recent and frequent first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..base import Batch, DataMeta
from .pop import CountEvidence, PopRec

SECONDS_PER_HOUR = 3600.0


def recency_counts(batch: Batch, n_items: int,
                   half_life_hours: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n_items + 1) each history's recency-weighted item counts (``sum of 0.5 ** (age /
    half-life)``, ages up to the target time) and 1/0 for items in it; column 0 is 0."""
    items = batch.item_seq                                         # (B, L)
    real = items > 0
    age = (batch.target_time.view(-1, 1) - batch.time_seq).clamp(min=0.0)
    w = torch.pow(0.5, age / (half_life_hours * SECONDS_PER_HOUR)).float()
    w = torch.where(real, w, torch.zeros_like(w))
    hist = torch.zeros(items.shape[0], n_items + 1, device=items.device)
    hist.scatter_add_(1, items, w)
    seen = torch.zeros_like(hist).scatter_(1, items, real.float())
    hist[:, 0] = seen[:, 0] = 0.0
    return hist, seen


class RepeatRec(PopRec):
    """Score = 1 + sum over past occurrences of 0.5 ** (age / half-life) for history items.

    Every item of the history outranks every item outside it (the ``1 +``); outside the
    history, items are ordered by training popularity (the fallback, scaled below 1e-3).
    Uses the ``L`` most recent events of the batch, i.e. ``max_len`` of the dataset.
    """

    name = "repeat"

    @dataclass(frozen=True)
    class Config:
        half_life_hours: float = 24.0 * 7
        half_life_days: float | None = None   # popularity fallback decay (see PopRec)
        bandwidth_km: float = 2.0

    def __init__(self, meta: DataMeta, config: Config | None = None) -> None:
        super().__init__(meta, config or self.Config())

    def score(self, batch: Batch) -> torch.Tensor:
        pop = super().score(batch)                                    # (B, n_items + 1)
        pop = 1e-3 * pop / pop[:, 1:].max().clamp(min=1.0)
        hist, seen = recency_counts(batch, self.meta.n_items, self.config.half_life_hours)
        return self.mask_padding(pop + seen + hist)

    def count_evidence(self, batch: Batch, item: int, positions: np.ndarray) -> CountEvidence:
        """Each past occurrence of ``item`` gets its recency weight, and the 1 for "you had
        it before" is shared among them; other events get 0."""
        pos = positions
        items = batch.item_seq[0, pos].cpu().numpy()
        times = batch.time_seq[0, pos]
        age = (batch.target_time[0] - times).clamp(min=0.0)
        w = torch.pow(0.5, age / (self.config.half_life_hours * SECONDS_PER_HOUR)).float()
        w = w.cpu().numpy().astype(float)
        mine = items == item
        attr = np.where(mine, w + 1.0 / mine.sum(), 0.0) if mine.any() else np.zeros(len(pos))
        last = None
        if mine.any():  # the same microsecond rounding as the explanation's events frame
            us = np.round(times.cpu().numpy()[mine] * 1e6).astype("int64")
            last = pd.to_datetime(us, unit="us").max().isoformat()
        return CountEvidence(attr, {
            "your_events": int(mine.sum()), "recency_weight": float(w[mine].sum()),
            "half_life_hours": float(self.config.half_life_hours), "last_time": last})

    def score_near(self, batch: Batch, lat: float, lon: float) -> torch.Tensor:
        return self.score(batch)  # the user's own history does not depend on where they are

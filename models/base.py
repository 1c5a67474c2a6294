"""The one contract every next-item model follows (RecBole-style, without its trainer).

A batch is a plain ``dict[str, torch.Tensor]`` built by ``models.data``. Sequences are
left-padded: position ``L-1`` is the most recent event, index 0 is padding everywhere.

Batch keys (B = batch size, L = max sequence length):
    user         (B,)    long   user index (1..n_users)
    item_seq     (B, L)  long   item indices, 0 = padding
    time_seq     (B, L)  float64 unix seconds (0 where padded)
    lat_seq      (B, L)  float32 latitude  (0 where unknown; see geo_mask)
    lon_seq      (B, L)  float32 longitude
    geo_mask     (B, L)  bool   True where the event has coordinates
    hour_seq     (B, L)  long   local hour + 1 (1..24), 0 = padding
    weekday_seq  (B, L)  long   local weekday + 1 (1..7, Monday = 1), 0 = padding
    cat_seq      (B, L)  long   category index, 0 = padding/unknown
    beh_seq      (B, L)  long   behaviour index, 0 = padding
    target       (B,)    long   the next item (what is scored at evaluation)
    target_time  (B,)    float64 unix seconds of the next event (known when asking "what next at T")
    target_hour, target_weekday (B,) long, same encoding as above
    target_seq   (B, L)  long   next item after each position (teacher forcing), 0 = none
    len          (B,)    long   number of real events in item_seq

``score(batch)`` returns (B, n_items + 1) scores over ALL items; column 0 (padding) is -inf.
Whether already-seen items are masked is the evaluator's job, not the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class DataMeta:
    """What a model needs to know about the data it is built for (stored in checkpoints)."""

    n_items: int                      # item indices run 1..n_items
    n_users: int
    n_categories: int                 # category indices run 1..n_categories
    n_behaviors: int
    max_len: int
    item_ids: tuple[str, ...] = ()    # item_ids[i - 1] is the external id of index i
    item_lat: tuple[float, ...] = ()  # per item index - 1; NaN when unknown
    item_lon: tuple[float, ...] = ()
    item_category: tuple[int, ...] = ()  # category index per item index - 1
    item_popularity: tuple[int, ...] = ()  # training counts per item index - 1
    has_coordinates: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def item_coords(self) -> np.ndarray:
        """(n_items + 1, 2) lat/lon array with row 0 = NaN padding."""
        out = np.full((self.n_items + 1, 2), np.nan)
        if self.item_lat:
            out[1:, 0] = self.item_lat
            out[1:, 1] = self.item_lon
        return out


class Recommender(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``score``; trainable ones ``loss``.

    Non-neural models (``trainable = False``) compute what they need in ``fit_counts`` from
    the training batches and are never passed to an optimiser.
    """

    name: ClassVar[str] = "base"
    trainable: ClassVar[bool] = True

    def __init__(self, meta: DataMeta, config: Any) -> None:
        super().__init__()
        self.meta = meta
        self.config = config

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} is not trained by gradient descent")

    def score(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def fit_counts(self, batches: list[Batch]) -> None:
        """Non-neural models: build statistics from training batches. Default: nothing."""

    def calibrate(self, ds: Any, device: torch.device | str = "cpu") -> str | None:
        """After training (best weights loaded): fit what must be fitted on held-out data,
        from ``ds``'s validation part. Returns a line for the training log. Default: nothing.
        """
        return None

    @staticmethod
    def mask_padding(scores: torch.Tensor) -> torch.Tensor:
        scores[:, 0] = float("-inf")
        return scores

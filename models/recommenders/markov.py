"""First-order Markov baseline with a distance-aware popularity fallback.

score(b | last item a) = (count(a -> b) + beta * fallback(b)) / (count(a -> .) + beta)

``fallback`` sums to 1 over items: popularity, multiplied by exp(-distance / bandwidth) from
the last place when coordinates exist ("popular places nearby"). With ``beta`` =
``min_transitions`` an item with few observed transitions leans on the fallback, and a
well-observed one keeps its transition probabilities (the fallback then only breaks ties).

With ``link_share`` g > 0 the counts are read through a model of links instead
("links + popularity"): a share g of the moves out of item a goes to the fallback law, the rest
to a's few links (about ``link_count`` K of the n items, rho = K / n). Each pair's count is
Poisson: mean e = g N fb(b) without a link, e + mu with one (mu = (1 - g) N / K, N the moves out
of a), so the posterior that a -> b is a link is

    P(link | k) = sigmoid(log(rho / (1 - rho)) + k log(1 + mu / e) - mu)

and score(b | a) is proportional to P(link | k) (1 - g) / K + g fb(b). Unlike the additive
smoothing above, one count at an item the fallback seldom draws is read as evidence of a link,
one count at a popular item as popularity, and a link seen twice ranks with one seen five times
(its true share is the same). Which reading fits is chosen on validation with the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..base import Batch, DataMeta
from ..nn.transitions import csr_counts, csr_entries
from .pop import (
    CountEvidence,
    CountModel,
    item_coords_tensor,
    plain_popularity,
    proximity,
    register_item_xyz,
    transitions,
)


class MarkovRec(CountModel):
    name = "markov"

    @dataclass(frozen=True)
    class Config:
        min_transitions: float = 5.0    # beta: pseudo-count given to the fallback
        bandwidth_km: float = 1.0       # distance scale of the nearby-popular fallback
        tune: bool = True               # choose both on validation
        link_share: float = 0.0         # g: 0 = additive smoothing; > 0 = links + popularity
        link_count: float = 10.0        # K: about how many links an item has

    #: the fallback's pseudo-count, and (with coordinates) how near "nearby" is
    GRID = {"min_transitions": (0.5, 2.0, 5.0, 20.0, 80.0), "bandwidth_km": (0.5, 1.0, 3.0)}
    #: the links + popularity reading (min_transitions plays no part in it)
    LINK_GRID = {"link_share": (0.4, 0.5, 0.6), "link_count": (5.0, 10.0, 20.0)}

    @property
    def grid(self) -> list[dict[str, tuple[float, ...]]]:
        near = {"bandwidth_km": self.GRID["bandwidth_km"]} if self.meta.has_coordinates else {}
        return [{"link_share": (0.0,), "min_transitions": self.GRID["min_transitions"], **near},
                {**self.LINK_GRID, **near}]

    def chosen_settings(self) -> dict[str, float]:
        """The tuned values that matter for the chosen reading of the counts."""
        unused = "min_transitions" if self.config.link_share > 0 else "link_count"
        return {k: v for k, v in super().chosen_settings().items() if k != unused}

    def __init__(self, meta: DataMeta, config: Config | None = None) -> None:
        super().__init__(meta, config or self.Config())
        n = meta.n_items + 1
        self.register_buffer("pop", plain_popularity(meta))
        # CSR transition counts: row a's successors are col[ptr[a]:ptr[a+1]]
        self.register_buffer("ptr", torch.zeros(n + 1, dtype=torch.long))
        self.register_buffer("col", torch.zeros(0, dtype=torch.long))
        self.register_buffer("val", torch.zeros(0))
        self.register_buffer("coords", item_coords_tensor(meta))
        register_item_xyz(self)

    def fit_counts(self, batches: Iterable[Batch]) -> None:
        self.fit_transitions(*transitions(batches))

    def fit_transitions(self, prev: torch.Tensor, nxt: torch.Tensor, when: torch.Tensor) -> None:
        """The counts from the training transitions (``pop.transitions``)."""
        self.ptr, self.col, self.val = csr_counts(prev, nxt, self.meta.n_items + 1)

    def observed(self, last: int, item: int) -> tuple[int, int]:
        """(training transitions ``last -> item``, all transitions out of ``last``)."""
        start, end = int(self.ptr[last]), int(self.ptr[last + 1])
        cols, vals = self.col[start:end], self.val[start:end]
        return int(vals[cols == item].sum()), int(vals.sum())

    def _transition_counts(self, last: torch.Tensor) -> torch.Tensor:
        """Dense (B, n_items + 1) successor counts of each row's last item."""
        rows, col, val = csr_entries(self.ptr, self.col, self.val, last)
        out = torch.zeros(len(last), self.meta.n_items + 1, device=last.device)
        out[rows, col] = val
        return out

    def _fallback(self, lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        """(B, n_items + 1) nearby-popular distribution (plain popularity without coords);
        column 0 (padding) is 0, as in ``pop``."""
        pop = self.pop
        if self.meta.has_coordinates:
            # 0 where an item has no coordinates, and on the whole row of a NaN anchor
            near = proximity(self.xyz, lat, lon, self.config.bandwidth_km).mul_(pop)
            # anchors without coordinates, or with no item near them, keep plain popularity
            fb = torch.where(near.sum(1, keepdim=True) > 0, near.add_(pop, alpha=1e-6), pop)
        else:
            fb = pop.expand(lat.shape[0], -1)
        return fb / fb.sum(1, keepdim=True).clamp(min=1e-12)

    def _score(self, batch: Batch, lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        last = batch.item_seq[:, -1]                                 # left-padded: newest
        counts = self._transition_counts(last)                          # (B, n_items + 1)
        fb = self._fallback(lat, lon)
        if self.config.link_share > 0:
            return self.mask_padding(self._link_scores(counts, fb))
        beta = float(self.config.min_transitions)
        scores = torch.add(counts, fb, alpha=beta).div_(counts.sum(1, keepdim=True).add_(beta))
        return self.mask_padding(scores)

    def _link_scores(self, counts: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        """(B, n_items + 1) next-item probabilities of the links + popularity reading."""
        g, links = float(self.config.link_share), float(self.config.link_count)
        rho = min(links / max(self.meta.n_items, 1), 0.5)
        per_link = (1.0 - g) / links
        n_out = counts.sum(1, keepdim=True)
        expected = g * n_out * fb                               # e: the count without a link
        mu = per_link * n_out                                   # the extra count of a link
        log_odds = (math.log(rho / (1.0 - rho)) - mu
                    + counts * torch.log1p(mu / expected.clamp(min=1e-12)))
        scores = torch.sigmoid(log_odds) * per_link + g * fb
        scores[:, 0] = 0.0
        return scores / scores.sum(1, keepdim=True).clamp(min=1e-12)

    @staticmethod
    def _last_position(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) latitude and longitude of each row's last event, NaN where it has none."""
        geo = batch.geo_mask[:, -1]
        nan = torch.full_like(batch.lat_seq[:, -1], float("nan"))
        return (torch.where(geo, batch.lat_seq[:, -1], nan),
                torch.where(geo, batch.lon_seq[:, -1], nan))

    def score(self, batch: Batch) -> torch.Tensor:
        return self._score(batch, *self._last_position(batch))

    def count_evidence(self, batch: Batch, item: int, positions: np.ndarray) -> CountEvidence:
        """Everything above the fallback alone belongs to the last event."""
        batch = batch.rows(slice(0, 1))
        last = batch.item_seq[:, -1]
        counts = self._transition_counts(last)[0]
        fb = self._fallback(*self._last_position(batch))[0]
        score = float(self.score(batch)[0, item])
        attr = np.zeros(len(positions))
        if len(positions):
            attr[-1] = score - float(fb[item])
        ids = self.meta.item_ids
        return CountEvidence(attr, {
            "transitions": int(counts[item]), "transitions_from_last": int(counts.sum()),
            "last_item": ids[int(last[0]) - 1] if int(last[0]) > 0 else None,
            "fallback": float(fb[item]), "beta": float(self.config.min_transitions)})

    def score_near(self, batch: Batch, lat: float, lon: float) -> torch.Tensor:
        """Like ``score`` but the fallback is anchored at the given current position."""
        b = batch.item_seq.shape[0]
        return self._score(batch, torch.full((b,), float(lat)), torch.full((b,), float(lon)))

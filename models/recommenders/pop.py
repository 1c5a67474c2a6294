"""Popularity baseline and the small base class shared by the count-based baselines.

Count models are ``Recommender``s with ``trainable = False``: ``fit_counts`` turns training
batches into buffers, so their statistics travel in the checkpoint's state dict like weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..base import Batch, DataMeta, Recommender
from ..nn.layers import chord_to_km, unit_vectors
from ..training.tuning import Grid, grid_keys, tune_on_validation

SECONDS_PER_DAY = 86400.0


@dataclass
class CountEvidence:
    """What a count model's score of one item rests on, for one history (B = 1).

    ``per_event`` splits ``score - score without any history`` exactly over the real past
    events (oldest first); ``details`` are the counts behind it, shown by models.explain.
    """

    per_event: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)


class CountModel(Recommender):
    """Base for non-neural baselines: buffers whose shapes depend on the data.

    Their scores are sums of counts, so they explain themselves: ``count_evidence``.
    """

    trainable = False

    def count_evidence(self, batch: Batch, item: int, positions: np.ndarray) -> CountEvidence:
        """The evidence for ``item`` in row 0 of ``batch``, whose real events sit at columns
        ``positions`` (oldest first)."""
        raise NotImplementedError(f"{self.name} does not explain its counts")

    #: validation grid of ``calibrate`` (Config field -> values), tried when ``config.tune``
    GRID: dict[str, tuple[Any, ...]] = {}

    def refit(self) -> None:
        """Recompute what the tuned settings change (after ``config`` was replaced)."""

    def calibrate(self, ds: Any, device: torch.device | str = "cpu") -> str | None:
        """Choose the ``GRID`` settings on the validation ranking (models.training.tuning)."""
        if not getattr(self.config, "tune", False) or not self.grid:
            return None
        return tune_on_validation(self, ds, self.grid, device).message(self.name)

    @property
    def grid(self) -> Grid:
        """The settings ``calibrate`` tries (``GRID`` unless the data rules some out)."""
        return self.GRID

    def chosen_settings(self) -> dict[str, Any]:
        """The values of the tuned settings (stored in the checkpoint's metrics)."""
        return {k: getattr(self.config, k) for k in grid_keys(self.grid)}

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        # buffer shapes (e.g. the number of transitions) are only known after fitting: take
        # the saved shapes (also when the model is a part of the ST-Transformer)
        for name in list(self._buffers):
            saved = state_dict.get(prefix + name)
            if saved is not None and self._buffers[name] is not None:
                self._buffers[name] = torch.empty_like(saved,
                                                       device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def transitions(batches: Iterable[Batch]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(previous item, next item, time of next) for every training transition in batches
    (read once: an iterator of batches is enough).

    With ``target_seq`` each position's next item is known; its time is the following
    position's time, or ``target_time`` for the last position.
    """
    prev, nxt, when = [], [], []
    for b in batches:
        t_next = torch.cat([b.time_seq[:, 1:], b.target_time.view(-1, 1)], dim=1)
        ok = (b.item_seq > 0) & (b.target_seq > 0)                 # (B, L)
        prev.append(b.item_seq[ok])
        nxt.append(b.target_seq[ok])
        when.append(t_next[ok])
    if not prev:
        z = torch.zeros(0, dtype=torch.long)
        return z, z, torch.zeros(0, dtype=torch.float64)
    return torch.cat(prev), torch.cat(nxt), torch.cat(when)


def plain_popularity(meta: DataMeta) -> torch.Tensor:
    """(n_items + 1,) float training counts of each item (``meta.item_popularity``), 0 first;
    zeros when the meta has none."""
    counts = np.r_[0, np.asarray(meta.item_popularity, dtype=np.float32)]
    if counts.shape[0] != meta.n_items + 1:
        counts = np.zeros(meta.n_items + 1, dtype=np.float32)
    return torch.from_numpy(counts.astype(np.float32))


def item_coords_tensor(meta: DataMeta) -> torch.Tensor:
    """(n_items + 1, 2) float64 lat/lon of each item, NaN where unknown (row 0: padding)."""
    return torch.from_numpy(meta.item_coords())


def item_unit_vectors(coords: torch.Tensor) -> torch.Tensor:
    """(n_items + 1, 3) float64 points on the unit sphere of ``item_coords_tensor`` (NaN
    where unknown), what :func:`proximity` measures distances from."""
    return unit_vectors(coords[:, 0], coords[:, 1])


def register_item_xyz(model: Recommender) -> None:
    """The model's non-persistent buffer ``xyz``: :func:`item_unit_vectors` of its items,
    computed once (a recommendation near a point reads it on every request) and moved with
    the model; derived from ``meta``, so not saved; empty without coordinates (24 bytes an
    item: 96 MB at 4M items)."""
    xyz = (item_unit_vectors(item_coords_tensor(model.meta)) if model.meta.has_coordinates
           else torch.zeros(0, 3, dtype=torch.float64))
    model.register_buffer("xyz", xyz, persistent=False)


def proximity(item_xyz: torch.Tensor, lat: torch.Tensor, lon: torch.Tensor,
              bandwidth_km: float) -> torch.Tensor:
    """exp(-distance / bandwidth) from each anchor (B,) to every item (B, n_items + 1), the
    items given as :func:`item_unit_vectors`.

    Items without coordinates and anchors that are NaN get weight 0 (no spatial evidence).
    The great-circle distance comes from the chord between unit vectors, measured as their
    difference (not 1 - cos, which loses centimetres): the haversine's value in a third of
    its torch calls. A recommendation makes this call on every request, and each torch
    call can hand the GIL to another thread.
    """
    chord = torch.cdist(unit_vectors(lat, lon), item_xyz,
                        compute_mode="donot_use_mm_for_euclid_dist")     # (B, n_items + 1)
    w = chord_to_km(chord).mul_(-1.0 / bandwidth_km).exp_()
    return w.nan_to_num_(nan=0.0).float()


class PopRec(CountModel):
    """Most popular items in training, optionally with exponential time decay."""

    name = "pop"

    @dataclass(frozen=True)
    class Config:
        half_life_days: float | None = None   # None: plain counts; else decayed counts
        bandwidth_km: float = 2.0              # for score_near (popular places near a point)
        tune: bool = True                      # choose half_life_days on validation

    def __init__(self, meta: DataMeta, config: Config | None = None) -> None:
        super().__init__(meta, config or self.Config())
        self.register_buffer("counts", plain_popularity(meta))
        register_item_xyz(self)
        self._train: tuple[torch.Tensor, torch.Tensor] | None = None

    #: global counts, or counts halved every 1 week / 1 month / half a year before the cut
    GRID = {"half_life_days": (None, 7.0, 30.0, 180.0)}

    def fit_counts(self, batches: Iterable[Batch]) -> None:
        self.fit_transitions(*transitions(batches))

    def fit_transitions(self, prev: torch.Tensor, nxt: torch.Tensor, when: torch.Tensor) -> None:
        """The counts from the training transitions (``transitions``)."""
        self._train = (nxt, when)  # kept for refit (tuning), not saved
        self.refit()

    def refit(self) -> None:
        dev = self.counts.device
        if self.config.half_life_days is None or self._train is None or not len(self._train[0]):
            # meta.item_popularity holds every training event
            self.counts = plain_popularity(self.meta).to(dev)
            return
        nxt, when = self._train
        age_days = (when.max() - when) / SECONDS_PER_DAY
        w = torch.pow(0.5, age_days / self.config.half_life_days).float()
        counts = torch.zeros(self.meta.n_items + 1)
        counts.index_add_(0, nxt.cpu(), w.cpu())
        self.counts = counts.to(dev)

    def score(self, batch: Batch) -> torch.Tensor:
        b = batch.item_seq.shape[0]
        return self.mask_padding(self.counts.unsqueeze(0).expand(b, -1).clone())

    def count_evidence(self, batch: Batch, item: int, positions: np.ndarray) -> CountEvidence:
        """Popularity alone: the history plays no part."""
        return CountEvidence(np.zeros(len(positions)),
                             {"popularity": float(self.counts[item])})

    def score_near(self, batch: Batch, lat: float, lon: float) -> torch.Tensor:
        """Popularity weighted by proximity to (lat, lon); plain popularity breaks ties."""
        scores = self.score(batch)
        if not self.meta.has_coordinates:
            return scores
        b, dev = scores.shape[0], self.xyz.device
        w = proximity(self.xyz, torch.full((b,), lat, device=dev),
                      torch.full((b,), lon, device=dev), self.config.bandwidth_km)
        top = self.counts.max().clamp(min=1.0)
        return self.mask_padding(scores * w + 1e-3 * scores / top)

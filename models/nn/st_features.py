"""Spatio-temporal feature modules used by the ST-Transformer (models/st_transformer.py).

* ``RelationBias``: pairwise time-gap and distance buckets between the events of a sequence,
  looked up either as one learned scalar per head and layer (default: it keeps attention on
  the fused kernel) or as TiSASRec key/value tables (``relation="kv"``).
* ``target_slot``: the time gap, hour and weekday of the event each position predicts (the
  next event, or ``target_*`` at the last position): "what next at time T".
* ``CandidateDistance``: a learned bias over all candidate items as a function of their
  distance from the user's last known position (and of how far ahead the target is).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..base import Batch
from .layers import distance_buckets, ffill_last_known, log_buckets, time_gap_buckets, unit_vectors


class RelationBias(nn.Module):
    """Per-layer relation terms for attention from bucketed pairwise time gaps and distances.

    Bucket 0 is padding, 1..n real gaps, n + 1 "unknown" (no coordinates on either side).
    """

    def __init__(self, n_layers: int, n_heads: int, d: int, kind: str, use_time: bool,
                 use_distance: bool, n_time: int, n_dist: int) -> None:
        super().__init__()
        if kind not in ("bias", "kv"):
            raise ValueError(f"relation must be 'bias' or 'kv', got {kind!r}")
        self.kind, self.n_layers, self.n_heads = kind, n_layers, n_heads
        self.use_time, self.use_distance = use_time, use_distance
        hd = d // n_heads
        self.tables = nn.ParameterDict()
        for name, n, on in (("time", n_time, use_time), ("dist", n_dist, use_distance)):
            if not on:
                continue
            if kind == "bias":
                # zero init: training starts from a plain transformer and learns the biases
                self.tables[name] = nn.Parameter(torch.zeros(n + 2, n_layers * n_heads))
            else:
                self.tables[name + "_k"] = nn.Parameter(torch.randn(n_layers, n + 2, n_heads, hd)
                                                        * 0.02)
                self.tables[name + "_v"] = nn.Parameter(torch.randn(n_layers, n + 2, n_heads, hd)
                                                        * 0.02)

    #: feature group (models.base.FEATURE_GROUPS) of each relation an explanation attributes
    FEATURE_GROUPS = {"time": "time", "dist": "distance"}

    @property
    def active(self) -> bool:
        return len(self.tables) > 0

    def explained_groups(self) -> tuple[tuple[str, str], ...]:
        """(relation, feature group) of each scalar bias table (``kind="bias"`` only: the
        key/value tables act inside attention and are not attributed)."""
        if self.kind != "bias":
            return ()
        return tuple((n, g) for n, g in self.FEATURE_GROUPS.items() if n in self.tables)

    def term(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """(B, L, L, n_layers * H) bias of relation ``name`` for bucket ids (B, L, L)."""
        return self.tables[name][ids]

    def combine(self, total: torch.Tensor, mask_bias: torch.Tensor) -> list[tuple]:
        """One (mask + relation bias (B, H, L, L), None) per layer from the summed terms."""
        B, L = total.shape[:2]
        total = total.view(B, L, L, self.n_layers, self.n_heads)  # (B, L, L, layers, H)
        total = total.permute(3, 0, 4, 1, 2)  # (layers, B, H, L, L)
        return [(mask_bias + total[i], None) for i in range(self.n_layers)]

    def forward(self, ids: dict[str, torch.Tensor], mask_bias: torch.Tensor) -> list[tuple]:
        """-> one (bias (B, H, L, L), rel list or None) per layer."""
        if self.kind == "bias":
            total = None
            for name, b in ids.items():
                term = self.term(name, b)  # (B, L, L, n_layers * H)
                total = term if total is None else total + term
            if total is None:
                return [(mask_bias, None)] * self.n_layers
            return self.combine(total, mask_bias)
        out = []
        for i in range(self.n_layers):
            rel = [(b, self.tables[n + "_k"][i], self.tables[n + "_v"][i]) for n, b in ids.items()]
            out.append((mask_bias, rel or None))
        return out


def relation_ids(batch: Batch, valid: torch.Tensor, geo_mask: torch.Tensor, use_time: bool,
                 use_distance: bool, cfg) -> dict[str, torch.Tensor]:
    """Pairwise bucket ids (B, L, L) for the relations that are switched on."""
    ids: dict[str, torch.Tensor] = {}
    if use_time:
        ids["time"] = time_gap_buckets(batch.time_seq, valid, cfg.n_time_buckets,
                                       cfg.time_min_s, cfg.time_max_s)
    if use_distance:
        ids["dist"] = distance_buckets(batch.lat_seq, batch.lon_seq, geo_mask, valid,
                                       cfg.n_dist_buckets, cfg.dist_min_km, cfg.dist_max_km)
    return ids


def target_slot(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Time, hour and weekday of the event each position predicts: (B, L) each.

    Position i predicts event i + 1 (teacher forcing), the last position predicts the
    target, whose time is given at evaluation ("what next at time T"). The target ITEM is
    never used.
    """
    t, hour, wd = batch.time_seq, batch.hour_seq, batch.weekday_seq
    next_t = torch.cat((t[:, 1:], batch.target_time.to(t.dtype)[:, None]), dim=1)  # (B, L)
    next_h = torch.cat((hour[:, 1:], batch.target_hour.to(hour.dtype)[:, None]), dim=1)
    next_w = torch.cat((wd[:, 1:], batch.target_weekday.to(wd.dtype)[:, None]), dim=1)
    return next_t, next_h, next_w


def target_gap_buckets(batch: Batch, next_t: torch.Tensor, valid: torch.Tensor,
                       n: int, lo: float, hi: float) -> torch.Tensor:
    """Bucket of (next event time - this event time); unknown (n + 1) when either is unset."""
    t = batch.time_seq
    unknown = (next_t <= 0) | (t <= 0) | (next_t < t)
    return log_buckets((next_t - t).clamp(min=0), n, lo, hi, unknown=unknown) * valid


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of a small-width (N, C) tensor: (index of one row of each, (N,) inverse).

    ``torch.unique(dim=0)`` copies row by row on CPU; ranking each column with a 1-d unique
    and combining the ranks into one int64 key is exact and ~100x faster for C <= 4.
    """
    key = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for c in range(x.shape[1]):
        values, rank = torch.unique(x[:, c], return_inverse=True)
        key = key * len(values) + rank
    _, which = torch.unique(key, return_inverse=True)  # (N,) 0..U-1
    first = torch.full((int(which.max()) + 1 if len(which) else 0,), len(which),
                       dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, which, torch.arange(len(which), device=x.device), "amin")
    return first, which


class CandidateDistance(nn.Module):
    """Learned bias for every candidate item from its distance to the last known position.

    bias[gap bucket, distance bucket] is a small table: check-ins a few minutes apart are
    close together, those days apart need not be, so the decay depends on the target gap.
    Distances to all items use unit vectors on the sphere: the chord between them is
    ``2 sin(d / 2R)``, so below a few hundred km ``log(chord)`` is ``log(d / R)`` to within
    1e-5 and the log-grid bucket (``layers.log_buckets``) is found with a log, a multiply and
    a round over the (N, n_items) chord matrix; no trigonometry, no binary search (which cost
    more than the rest of a training step on NYC).
    """

    def __init__(self, item_coords: np.ndarray, n_dist: int, lo_km: float, hi_km: float,
                 n_gap: int) -> None:
        super().__init__()
        self.n_dist = n_dist
        coords = torch.as_tensor(item_coords[1:], dtype=torch.float64)  # (n_items, 2)
        known = ~torch.isnan(coords).any(dim=1)
        xyz = unit_vectors(coords[:, 0].nan_to_num(0.0), coords[:, 1].nan_to_num(0.0))
        self.register_buffer("item_xyz", xyz.float(), persistent=False)  # (n_items, 3)
        self.register_buffer("item_known", known, persistent=False)  # (n_items,)
        # the log grid of layers.log_buckets, in chord lengths
        self.lo, self.hi = (2.0 * math.sin(km / (2.0 * 6371.0088)) for km in (lo_km, hi_km))
        self.table = nn.Parameter(torch.zeros(n_gap + 2, n_dist + 2))  # zero: starts neutral

    def bucket_ids(self, query_xyz: torch.Tensor, query_known: torch.Tensor,
                   items: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C) distance bucket 1..n_dist of each candidate, n_dist + 1 where unknown.

        ``items``: None, every item (C = n_items); (C,) item positions (index - 1) shared by
        the rows; (N, C) positions per row.
        """
        xyz, known = self.item_xyz, self.item_known
        if items is not None:
            xyz, known = xyz[items], known[items]  # (C, 3) or (N, C, 3)
        if items is None or items.dim() == 1:
            chord = torch.cdist(query_xyz[None], xyz[None],
                                compute_mode="donot_use_mm_for_euclid_dist")[0]  # (N, C)
            known = query_known[:, None] & known[None, :]  # (N, C)
        else:
            chord = (query_xyz[:, None, :] - xyz).norm(dim=-1)  # (N, C)
            known = query_known[:, None] & known
        scale = (self.n_dist - 1) / (math.log(self.hi) - math.log(self.lo))
        frac = chord.clamp_(self.lo, self.hi).log_().sub_(math.log(self.lo)).mul_(scale)
        ids = frac.round_().long() + 1  # (N, C) 1..n_dist
        return ids.masked_fill_(~known, self.n_dist + 1)

    def last_known(self, lat_seq: torch.Tensor, lon_seq: torch.Tensor,
                   geo_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Unit vector of the last known position at or before each position: (B, L, 3), (B, L)."""
        xyz = unit_vectors(lat_seq, lon_seq).float()  # (B, L, 3)
        return ffill_last_known(xyz, geo_mask)

    def forward(self, query_xyz: torch.Tensor, query_known: torch.Tensor,
                gap_ids: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """query (N, 3), known (N,), gap bucket (N,) -> (N, C) additive scores of the
        candidates ``items`` (``bucket_ids``; None: every item, C = n_items)."""
        if (items is not None and items.dim() == 2) or query_xyz.device.type == "cuda":
            # per-row candidates share nothing; on CUDA the distinct places' data-dependent
            # count would make the step wait for the device, and the device is fast anyway
            ids = self.bucket_ids(query_xyz, query_known, items)  # (N, C)
        else:
            # many positions share their last known place: bucket each distinct place once
            first, which = distinct_rows(torch.cat([query_xyz, query_known[:, None].float()],
                                                   1))
            ids = self.bucket_ids(query_xyz[first], query_known[first], items)[which]
        row = self.table[gap_ids]  # (N, n_dist + 2)
        return row.gather(1, ids)  # (N, C)

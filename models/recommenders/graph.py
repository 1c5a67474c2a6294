"""GraphRec: item embeddings propagated over an item graph, then a sequence encoder.

The graph joins items that follow each other in some user's training history (transitions,
made undirected) and, when items have coordinates, each item to its k nearest items by
haversine distance. Propagation is LightGCN's (He et al. 2020): no weights, no
non-linearity, symmetric normalisation D^-1/2 A D^-1/2 and the mean of the layer outputs,
in plain ``torch.sparse`` ops. A small GRU (or a recency-weighted mean) over the propagated
embeddings of the user's recent items gives the user state; scores are dot products with
the propagated item embeddings.

Transitions come from the training data: ``fit_counts(batches)`` builds them from every
(item, next item) pair; if it was never called, ``loss`` adds the pairs of each training
batch it sees, so the graph is complete after the first epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..base import Batch, DataMeta, Recommender
from ..nn.layers import full_softmax_loss, haversine_km, init_weights, score_all
from .gru import left_to_right, right_to_left


def knn_edges(item_coords: np.ndarray, k: int, chunk: int = 1024) -> torch.Tensor:
    """(2, E) directed edges from each item with coordinates to its k nearest (haversine)."""
    known = np.flatnonzero(~np.isnan(item_coords).any(axis=1))  # item indices with coords
    if k <= 0 or len(known) < 2:
        return torch.zeros(2, 0, dtype=torch.long)
    lat = torch.as_tensor(item_coords[known, 0])
    lon = torch.as_tensor(item_coords[known, 1])
    k = min(k, len(known) - 1)
    out = []
    for s in range(0, len(known), chunk):  # chunks bound memory at (chunk, n_known)
        d = haversine_km(lat[s:s + chunk, None], lon[s:s + chunk, None], lat[None], lon[None])
        rows = torch.arange(s, min(s + chunk, len(known)))
        d[torch.arange(len(rows)), rows] = float("inf")  # no self loops
        nn_idx = d.topk(k, dim=1, largest=False).indices  # (chunk, k)
        out.append(torch.stack([rows[:, None].expand_as(nn_idx).reshape(-1), nn_idx.reshape(-1)]))
    pairs = torch.cat(out, dim=1)
    return torch.as_tensor(known)[pairs]  # back to item indices


def normalized_adjacency(edges: torch.Tensor, n: int) -> torch.Tensor:
    """Sparse (n, n) D^-1/2 A D^-1/2 of the undirected, unweighted graph with ``edges``."""
    both = torch.cat([edges, edges.flip(0)], dim=1)  # undirected
    both = both[:, both[0] != both[1]]  # no self loops (LightGCN)
    keys = torch.unique(both[0] * n + both[1])  # binary adjacency: a pair counts once
    rows, cols = keys // n, keys % n
    deg = torch.bincount(rows, minlength=n).double()
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    vals = (inv_sqrt[rows] * inv_sqrt[cols]).float()
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n),
                                   check_invariants=True).coalesce()


class GraphRec(Recommender):
    name = "graph"

    @dataclass(frozen=True)
    class Config:
        hidden: int = 64
        n_layers: int = 2         # propagation hops
        knn: int = 10             # geographic neighbours per item (when coordinates exist)
        use_transitions: bool = True
        use_geo: bool = True
        encoder: str = "gru"      # "gru" or "mean" (recency-weighted mean)
        dropout: float = 0.2

    def __init__(self, meta: DataMeta, config: GraphRec.Config | None = None) -> None:
        config = config or self.Config()
        super().__init__(meta, config)
        if config.encoder not in ("gru", "mean"):
            raise ValueError(f"GraphRec encoder must be 'gru' or 'mean', got {config.encoder!r}")
        d = config.hidden
        self.item_emb = nn.Embedding(meta.n_items + 1, d, padding_idx=0)
        self.drop = nn.Dropout(config.dropout)
        if config.encoder == "gru":
            self.rnn = nn.GRU(d, d, batch_first=True)
        else:
            self.decay_logit = nn.Parameter(torch.tensor(1.0))  # sigmoid -> ~0.73 per step
        # user state = f(history summary, current item): the skip from the current item
        # lets the model use the smoothed neighbourhood of where the user is right now
        self.out = nn.Linear(2 * d, d)
        init_weights(self)
        # propagation averages neighbours and so shrinks embeddings; starting them at the
        # 1/sqrt(d) scale keeps the first logits informative (0.02 learns several times slower)
        nn.init.normal_(self.item_emb.weight, 0.0, d**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        geo = (knn_edges(meta.item_coords(), config.knn)
               if config.use_geo and meta.has_coordinates else torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("geo_edges", geo)  # (2, E_geo)
        self.register_buffer("transition_edges", torch.zeros(2, 0, dtype=torch.long))
        self.fitted = False
        self._adj: torch.Tensor | None = None
        self._table_cache: tuple[tuple, torch.Tensor] | None = None

    # ------------------------------------------------------------------ the graph

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # edge buffers vary in size with the data: take the checkpoint's shapes
        for key in ("geo_edges", "transition_edges"):
            if prefix + key in state_dict:
                setattr(self, key, state_dict[prefix + key].clone())
        self._adj, self.fitted = None, True
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def batch_transitions(batch: Batch) -> torch.Tensor:
        """(2, E) (item, next item) pairs of a batch, from ``item_seq`` and ``target_seq``."""
        src, dst = batch.item_seq, batch.target_seq
        keep = (src > 0) & (dst > 0)
        return torch.stack([src[keep], dst[keep]])

    def add_transitions(self, pairs: torch.Tensor) -> None:
        """Add (2, E) item pairs to the transition graph (duplicates are dropped)."""
        if not self.config.use_transitions or pairs.shape[1] == 0:
            return
        n = self.meta.n_items + 1
        old = self.transition_edges
        keys = torch.unique(torch.cat([old[0] * n + old[1],
                                       pairs[0].to(old.device) * n + pairs[1].to(old.device)]))
        if keys.numel() != old.shape[1]:
            self.transition_edges = torch.stack([keys // n, keys % n])
            self._adj = None

    def fit_counts(self, batches: list[Batch]) -> None:
        """Build the transition graph from all training batches."""
        for b in batches:
            self.add_transitions(self.batch_transitions(b))
        self.fitted = True

    def adjacency(self) -> torch.Tensor:
        if self._adj is None or self._adj.device != self.item_emb.weight.device:
            edges = torch.cat([self.geo_edges, self.transition_edges], dim=1)
            adj = normalized_adjacency(edges.cpu(), self.meta.n_items + 1)
            self._adj = adj.to(self.item_emb.weight.device)
        return self._adj

    def propagate(self) -> torch.Tensor:
        """(n_items + 1, D) LightGCN embeddings: mean of E, AE, A^2E, ... (float32)."""
        adj = self.adjacency()
        with torch.autocast(adj.device.type, enabled=False):  # sparse mm wants float32
            e = self.item_emb.weight.float()
            layers = [e]
            for _ in range(self.config.n_layers):
                e = torch.sparse.mm(adj, e)  # (n_items + 1, D)
                layers.append(e)
            return torch.stack(layers).mean(dim=0)

    # ------------------------------------------------------------------ sequence encoder

    def encode(self, batch: Batch, table: torch.Tensor) -> torch.Tensor:
        """(B, L, D) user state after each event (padding rows are ignored downstream)."""
        seq = batch.item_seq  # (B, L)
        x = self.drop(table[seq])  # (B, L, D)
        if self.config.encoder == "gru":
            lengths = (seq > 0).sum(dim=1)
            packed = pack_padded_sequence(left_to_right(x, lengths), lengths.clamp(min=1).cpu(),
                                          batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
            summary = self.drop(right_to_left(out, lengths))  # (B, L, D)
            return self.out(torch.cat([summary, x], dim=-1))  # (B, L, D)
        # recency-weighted causal mean: w^(i-j) over real events j <= i, as one (L, L) matmul
        L = seq.shape[1]
        idx = torch.arange(L, device=seq.device)
        lag = (idx[:, None] - idx[None, :]).clamp(min=0).to(x.dtype)  # (L, L)
        w = torch.sigmoid(self.decay_logit).to(x.dtype) ** lag  # (L, L)
        w = w.tril()[None] * (seq > 0)[:, None, :].to(x.dtype)  # (B, L, L) causal, real keys
        mean = (w @ x) / w.sum(-1, keepdim=True).clamp(min=1e-9)  # (B, L, D)
        return self.out(torch.cat([mean, x], dim=-1))  # (B, L, D)

    def hidden(self, batch: Batch) -> torch.Tensor:
        """(B, L, D) state at every position, the one scored against the items."""
        return self.encode(batch.crop(self.meta.max_len), self.propagate())

    def loss(self, batch: Batch) -> torch.Tensor:
        batch = batch.crop(self.meta.max_len)
        if not self.fitted:
            self.add_transitions(self.batch_transitions(batch))
        table = self.propagate()
        return full_softmax_loss(self.encode(batch, table), batch.target_seq, table)

    def inference_table(self) -> torch.Tensor:
        """Propagated embeddings, cached between calls while the weights and graph are unchanged
        and no gradient is needed (propagation dominates the cost of scoring one user)."""
        if torch.is_grad_enabled() and self.item_emb.weight.requires_grad:
            return self.propagate()
        w = self.item_emb.weight
        key = (w._version, w.data_ptr(), w.device, id(self.adjacency()))
        if self._table_cache is None or self._table_cache[0] != key:
            self._table_cache = (key, self.propagate())
        return self._table_cache[1]

    def score(self, batch: Batch) -> torch.Tensor:
        batch = batch.crop(self.meta.max_len)
        table = self.inference_table()
        h = self.encode(batch, table)[:, -1]  # (B, D)
        return score_all(h, table, self.meta.n_items)

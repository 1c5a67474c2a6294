"""A tiny trainable recommender for training-loop tests (independent of the neural models)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from trailscope.models.base import Batch, DataMeta, Recommender


class TinyRec(Recommender):
    """Mean of the history's item embeddings (with dropout) dotted with every item."""

    name = "tiny"

    @dataclass(frozen=True)
    class Config:
        hidden: int = 8
        dropout: float = 0.1
        pretrain: bool = False          # ask train() for a pre-training phase

    def __init__(self, meta: DataMeta, config: Config | None = None) -> None:
        super().__init__(meta, config or self.Config())
        self.emb = nn.Embedding(meta.n_items + 1, self.config.hidden, padding_idx=0)
        self.drop = nn.Dropout(self.config.dropout)

    def _user_vec(self, items: torch.Tensor) -> torch.Tensor:
        e = self.drop(self.emb(items))                                   # (B, L, D)
        n = (items > 0).sum(1, keepdim=True).clamp(min=1)
        return e.sum(1) / n                                              # (B, D)

    def score(self, batch: Batch) -> torch.Tensor:
        s = self._user_vec(batch.item_seq) @ self.emb.weight.T        # (B, n_items + 1)
        return self.mask_padding(s.float())

    def loss(self, batch: Batch) -> torch.Tensor:
        s = self._user_vec(batch.item_seq) @ self.emb.weight.T
        return F.cross_entropy(s[:, 1:], batch.target - 1)

    @property
    def wants_pretraining(self) -> bool:
        return self.config.pretrain

    def pretrain_loss(self, batch: Batch) -> torch.Tensor:
        """Predict the last history item from the rest (a stand-in for masked modelling)."""
        items = batch.item_seq
        s = self._user_vec(items[:, :-1]) @ self.emb.weight.T
        keep = items[:, -1] > 0
        return F.cross_entropy(s[keep][:, 1:], items[keep, -1] - 1)

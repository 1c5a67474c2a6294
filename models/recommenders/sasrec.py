"""SASRec (Kang & McAuley 2018): causal self-attention over the user's recent items.

Learned position embeddings, pre-LN transformer blocks, item embeddings tied between input
and output. Trained with full-softmax cross-entropy at every position (teacher forcing via
``target_seq``), which beats the original's sampled BCE by a wide margin (Klenitskiy &
Vasilev 2023); above ``sampled_above`` items with a logQ-corrected sampled softmax
(models.nn.layers.ItemLoss). Scores use the representation at the last (most recent)
position, over every item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..base import Batch, DataMeta, EmbeddingInput, ExplainLayers
from ..nn.layers import (
    Block,
    EncoderRecommender,
    ItemLoss,
    attention_mask,
    init_weights,
    mask_to_bias,
    positions,
)


class SASRec(EncoderRecommender):
    name = "sasrec"

    @dataclass(frozen=True)
    class Config:
        hidden: int = 64
        n_layers: int = 2
        n_heads: int = 2
        dropout: float = 0.2
        mlp_ratio: int = 4
        softmax: str = "auto"         # training loss: "full", "sampled" or "auto" (see below)
        sampled_above: int = 50_000   # "auto": sampled softmax above this many items, else full
        negatives: int = 2048         # sampled softmax: items drawn per step, shared by the batch

    def __init__(self, meta: DataMeta, config: SASRec.Config | None = None) -> None:
        config = config or self.Config()
        super().__init__(meta, config)
        d = config.hidden
        self.item_emb = nn.Embedding(meta.n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(meta.max_len + 1, d, padding_idx=0)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(d, config.n_heads, config.dropout, config.mlp_ratio)
            for _ in range(config.n_layers)
        )
        self.ln_f = nn.LayerNorm(d)
        self.item_loss = ItemLoss.from_config(meta, config)
        init_weights(self)

    def encode(self, batch: Batch) -> torch.Tensor:
        """(B, L, D) causal representation of every position."""
        seq = batch.item_seq  # (B, L)
        valid = seq > 0
        # sqrt(d) scaling as in SASRec: keeps item identity dominant over the position signal
        x = self.item_emb(seq) * math.sqrt(self.config.hidden)  # (B, L, D)
        x = self.drop(x + self.pos_emb(positions(seq)))
        x = x * valid[..., None]  # padding stays exactly zero
        bias = mask_to_bias(attention_mask(valid, causal=True))  # (B, 1, L, L)
        bias = bias.expand(-1, self.config.n_heads, -1, -1)  # (B, H, L, L)
        for block in self.blocks:
            x = block(x, bias)
        return self.ln_f(x)

    def explain_layers(self) -> ExplainLayers:
        """The item embedding of each event (looked up on the cropped sequence), and the
        attention of every block."""
        return ExplainLayers(embeddings=(EmbeddingInput("item", "item", self.item_emb, "input"),),
                             attention=tuple(b.attn for b in self.blocks))

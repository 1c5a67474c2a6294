"""GRU4Rec (Hidasi et al. 2016): item embedding -> GRU (or LSTM) -> dropout -> dot product.

The recurrent state after each event predicts the next item over all items (full softmax,
every position; a sampled softmax above ``sampled_above`` items, models.nn.layers.ItemLoss).
Sequences arrive left-padded; a recurrent cell fed padding would still move its state (its
biases act even on a zero input), so each row is rotated to right padding and packed, which
makes the output exactly invariant to extra left padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..base import Batch, DataMeta, EmbeddingInput, ExplainLayers
from ..nn.layers import EncoderRecommender, ItemLoss, init_weights


def left_to_right(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Rotate each left-padded row of (B, L, ...) so its events start at position 0."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device)[None, :] + (L - lengths)[:, None]) % L  # (B, L)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def right_to_left(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`left_to_right`."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device)[None, :] + lengths[:, None]) % L  # (B, L)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class GRU4Rec(EncoderRecommender):
    name = "gru"

    @dataclass(frozen=True)
    class Config:
        hidden: int = 64
        n_layers: int = 1
        dropout: float = 0.2
        cell: str = "gru"  # "gru" or "lstm"
        softmax: str = "auto"         # training loss: "full", "sampled" or "auto" (see below)
        sampled_above: int = 50_000   # "auto": sampled softmax above this many items, else full
        negatives: int = 2048         # sampled softmax: items drawn per step, shared by the batch

    def __init__(self, meta: DataMeta, config: GRU4Rec.Config | None = None) -> None:
        config = config or self.Config()
        super().__init__(meta, config)
        if config.cell not in ("gru", "lstm"):
            raise ValueError(f"GRU4Rec cell must be 'gru' or 'lstm', got {config.cell!r}")
        d = config.hidden
        self.item_emb = nn.Embedding(meta.n_items + 1, d, padding_idx=0)
        self.emb_drop = nn.Dropout(config.dropout)
        rnn = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = rnn(d, d, num_layers=config.n_layers, batch_first=True,
                       dropout=config.dropout if config.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.item_loss = ItemLoss.from_config(meta, config)
        init_weights(self)
        # the GRU state is tanh-bounded, so logits = state . item embedding stay tiny with
        # GPT-style 0.02 embeddings and learning crawls; 1/sqrt(d) gives usable logits at once
        nn.init.normal_(self.item_emb.weight, 0.0, d**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, batch: Batch) -> torch.Tensor:
        """(B, L, D) recurrent state after each event (zeros on padding)."""
        seq = batch.item_seq  # (B, L)
        B, L = seq.shape
        lengths = (seq > 0).sum(dim=1)  # (B,) recomputed: robust to a stale "len"
        x = self.emb_drop(self.item_emb(left_to_right(seq, lengths)))  # (B, L, D) right-padded
        # an all-padding row still needs length >= 1 for packing; its output is ignored
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)  # (B, L, D)
        return self.drop(right_to_left(out, lengths))  # (B, L, D) left-padded again

    def explain_layers(self) -> ExplainLayers:
        """The item embedding of each event; rows are rotated to right padding before the
        lookup, so they map back to events in input order."""
        return ExplainLayers(embeddings=(EmbeddingInput("item", "item", self.item_emb, "input"),))

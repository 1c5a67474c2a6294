"""Attention weights of transformer recommenders, per layer and head, over past events.

The attention modules are those the model declares (``explain_layers().attention``).
models.nn.layers.Attention runs torch's fused attention, which never materialises the
weights, so they are recomputed (``Attention.probabilities``) from each module's inputs
captured with forward hooks, exactly as the module computes them (without dropout: models
are explained in eval mode).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..base import Batch, Recommender
from .types import ATTENTION_COLUMNS, POSITION, real_positions


@torch.no_grad()
def attention_weights(model: Recommender, batch: Batch) -> np.ndarray | None:
    """(layers, heads, L, L) attention of row 0 of ``batch``; None for models without
    self-attention (GRU4Rec, the baselines)."""
    mods = model.explain_layers().attention
    if not mods:
        return None
    captured: dict[int, torch.Tensor] = {}

    def hook_for(i: int):
        def hook(mod: nn.Module, args: tuple, _out: torch.Tensor) -> None:
            rel = args[2] if len(args) > 2 else None
            captured[i] = mod.probabilities(args[0], args[1], rel)[:1]
        return hook

    handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(mods)]
    model.eval()
    try:
        model.score(batch.rows(slice(0, 1)))
    finally:
        for h in handles:
            h.remove()
    if len(captured) != len(mods):
        return None
    return torch.stack([captured[i][0] for i in range(len(mods))]).float().cpu().numpy()


def attention_frame(model: Recommender, batch: Batch) -> pd.DataFrame | None:
    """Tidy weights of the scoring (most recent) position over the real past events:
    ``layer, head, position, weight`` (position 0 = oldest event); None without attention."""
    w = attention_weights(model, batch)
    if w is None:
        return None
    pos = real_positions(batch)
    offset = batch.item_seq.shape[1] - w.shape[-1]  # models crop to their max_len
    keep = pos >= offset
    events = np.flatnonzero(keep)  # event indices (0 = oldest) the model saw
    last = w[:, :, -1, :][:, :, pos[keep] - offset]  # (layers, heads, n)
    n_layers, n_heads, n = last.shape
    return pd.DataFrame({
        "layer": np.repeat(np.arange(n_layers), n_heads * n),
        "head": np.tile(np.repeat(np.arange(n_heads), n), n_layers),
        POSITION: np.tile(events, n_layers * n_heads),
        "weight": last.reshape(-1).astype(float),
    }, columns=list(ATTENTION_COLUMNS))


def attention_importance(frame: pd.DataFrame | None, n_events: int) -> np.ndarray | None:
    """Per-event importance from attention: the last layer's weights averaged over heads."""
    if frame is None or frame.empty:
        return None
    last = frame[frame["layer"] == frame["layer"].max()]
    mean = last.groupby(POSITION)["weight"].mean()
    out = np.zeros(n_events)
    idx = mean.index.to_numpy(dtype=np.int64)
    ok = idx < n_events
    out[idx[ok]] = mean.to_numpy()[ok]
    return out

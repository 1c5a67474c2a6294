"""Tiny synthetic batches with exactly the keys of models/base.py, for the neural model tests.

The planted pattern: item i is always followed by item i % n_items + 1, so a model that learns
ranks that item first. Sequences have random lengths (left padding), increasing times,
coordinates near New York with some events lacking them, and categories derived from items.
"""

from __future__ import annotations

import numpy as np
import torch
from trailscope.models.base import Batch, DataMeta

N_ITEMS = 12
N_CATS = 4
T0 = 1_334_000_000.0  # April 2012


def item_coords(n_items: int = N_ITEMS) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Items on lines across Manhattan (neighbours ~1 km apart), item 5 has no coordinates."""
    lat = [40.70 + 0.01 * (i % 40) + 0.001 * (i // 40) for i in range(n_items)]
    lon = [-74.01 + 0.003 * (i % 40) for i in range(n_items)]
    if n_items > 4:
        lat[4] = lon[4] = float("nan")
    return tuple(lat), tuple(lon)


def make_meta(n_items: int = N_ITEMS, max_len: int = 8, coords: bool = True) -> DataMeta:
    lat, lon = item_coords(n_items) if coords else ((), ())
    return DataMeta(
        n_items=n_items, n_users=16, n_categories=N_CATS, n_behaviors=2, max_len=max_len,
        item_ids=tuple(str(i) for i in range(1, n_items + 1)), item_lat=lat, item_lon=lon,
        item_category=tuple(i % N_CATS + 1 for i in range(1, n_items + 1)),
        item_popularity=tuple([10] * n_items), has_coordinates=coords,
        extra={"category_names": tuple(f"cat{c}" for c in range(1, N_CATS + 1))},
    )


def make_batch(meta: DataMeta, batch_size: int = 16, seq_len: int | None = None,
               seed: int = 0, min_len: int = 2) -> Batch:
    """A left-padded batch following the planted pattern (see module docstring)."""
    rng = np.random.default_rng(seed)
    L = seq_len or meta.max_len
    n = meta.n_items
    lat_all, lon_all = meta.item_coords()[:, 0], meta.item_coords()[:, 1]
    lens = rng.integers(min_len, L + 1, size=batch_size)
    # each row is a run of L + 1 consecutive items: L inputs then the target
    start = rng.integers(0, n, size=batch_size)
    run = (start[:, None] + np.arange(L + 1)[None, :]) % n + 1  # (B, L + 1)
    gaps = rng.uniform(600, 6 * 3600, size=(batch_size, L + 1))
    times = T0 + np.cumsum(gaps, axis=1)  # (B, L + 1)
    real = np.arange(L)[None, :] >= (L - lens)[:, None]  # (B, L)
    items = np.where(real, run[:, :L], 0)
    nxt = np.where(real, run[:, 1:], 0)
    t_seq = np.where(real, times[:, :L], 0.0)
    hours = ((times // 3600) % 24 + 1).astype(np.int64)
    wdays = ((times // 86400 + 3) % 7 + 1).astype(np.int64)
    lat = np.nan_to_num(lat_all[run[:, :L]]) if meta.has_coordinates else np.zeros((batch_size, L))
    lon = np.nan_to_num(lon_all[run[:, :L]]) if meta.has_coordinates else np.zeros((batch_size, L))
    geo = real & ~np.isnan(lat_all[run[:, :L]]) if meta.has_coordinates else np.zeros_like(real)
    cats = np.asarray((0,) + meta.item_category)[run]
    return Batch(
        user=torch.from_numpy(rng.integers(1, meta.n_users + 1, size=batch_size)),
        item_seq=torch.from_numpy(items.astype(np.int64)),
        time_seq=torch.from_numpy(t_seq.astype(np.float64)),
        lat_seq=torch.from_numpy(np.where(geo, lat, 0).astype(np.float32)),
        lon_seq=torch.from_numpy(np.where(geo, lon, 0).astype(np.float32)),
        geo_mask=torch.from_numpy(geo.astype(bool)),
        hour_seq=torch.from_numpy(np.where(real, hours[:, :L], 0)),
        weekday_seq=torch.from_numpy(np.where(real, wdays[:, :L], 0)),
        cat_seq=torch.from_numpy(np.where(real, cats[:, :L], 0).astype(np.int64)),
        beh_seq=torch.from_numpy(real.astype(np.int64)),
        target=torch.from_numpy(run[:, L].astype(np.int64)),
        target_time=torch.from_numpy(times[:, L].astype(np.float64)),
        target_hour=torch.from_numpy(hours[:, L]),
        target_weekday=torch.from_numpy(wdays[:, L]),
        target_seq=torch.from_numpy(nxt.astype(np.int64)),
        len=torch.from_numpy(lens.astype(np.int64)),
    )


def left_pad(batch: Batch, extra: int) -> Batch:
    """The same batch with ``extra`` more padding columns on the left."""
    out = batch.copy()
    for key in Batch.SEQ_FIELDS:
        v = getattr(batch, key)
        setattr(out, key, torch.cat([torch.zeros(v.shape[0], extra, dtype=v.dtype), v], dim=1))
    return out


def train_steps(model: torch.nn.Module, batches: list[Batch], steps: int, lr: float = 1e-2,
                loss_name: str = "loss") -> list[float]:
    """A few Adam steps cycling over ``batches``; returns the loss of each step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for s in range(steps):
        loss = getattr(model, loss_name)(batches[s % len(batches)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def hit_at_1(model: torch.nn.Module, batch: Batch) -> float:
    """Share of rows whose top-scored item is the planted next item."""
    with torch.no_grad():
        scores = model.score(batch)
    return float((scores.argmax(dim=1) == batch.target).float().mean())

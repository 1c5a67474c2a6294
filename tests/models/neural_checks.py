"""Contract checks shared by the neural model tests (each test file calls them per model)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from trailscope.models.base import Batch, DataMeta, Recommender

from tests.models.neural_synth import hit_at_1, left_pad, make_batch, make_meta, train_steps

Factory = Callable[[DataMeta], Recommender]


def check_shapes(factory: Factory) -> None:
    meta = make_meta()
    model = factory(meta).eval()
    batch = make_batch(meta, batch_size=5)
    with torch.no_grad():
        scores = model.score(batch)
    assert scores.shape == (5, meta.n_items + 1)
    assert scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()
    assert model.hidden(batch).shape[:2] == batch.item_seq.shape
    loss = model.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)


def check_learns(factory: Factory, steps: int = 40, lr: float = 1e-2) -> None:
    """Loss falls on the planted pattern and the right next item is then ranked first."""
    torch.manual_seed(0)
    meta = make_meta()
    model = factory(meta)
    batches = [make_batch(meta, seed=s) for s in range(4)]
    held_out = make_batch(meta, seed=123)
    before = hit_at_1(model.eval(), held_out)
    losses = train_steps(model, batches, steps, lr=lr)
    assert sum(losses[-5:]) / 5 < 0.3 * sum(losses[:5]) / 5, losses
    after = hit_at_1(model, held_out)
    assert after >= 0.9, (before, after)


def check_causal(factory: Factory, pos: int = 4, future_times: bool = True) -> None:
    """Changing events after position ``pos`` leaves the states at 0..pos unchanged.

    ``future_times=False`` keeps the time of event pos + 1: the ST-Transformer conditions
    position pos on the time of the event it predicts ("what next at time T").
    """
    torch.manual_seed(0)
    meta = make_meta()
    model = factory(meta).eval()
    batch = make_batch(meta, batch_size=6, min_len=meta.max_len)
    changed = batch.copy()
    g = torch.Generator().manual_seed(1)
    L = batch.item_seq.shape[1]
    fut = torch.zeros(L, dtype=torch.bool)
    fut[pos + 1:] = True
    changed.item_seq = torch.where(
        fut, torch.randint(1, meta.n_items + 1, batch.item_seq.shape, generator=g),
        batch.item_seq)
    changed.cat_seq = torch.where(fut, (batch.cat_seq % meta.n_categories) + 1,
                                     batch.cat_seq)
    changed.lat_seq = torch.where(fut, batch.lat_seq + 0.05, batch.lat_seq)
    changed.geo_mask = torch.where(fut, ~batch.geo_mask, batch.geo_mask)
    tfut = fut.clone()
    if not future_times:
        tfut[pos + 1] = False
    changed.time_seq = torch.where(tfut, batch.time_seq + 7777.0, batch.time_seq)
    changed.hour_seq = torch.where(tfut, batch.hour_seq % 24 + 1, batch.hour_seq)
    with torch.no_grad():
        a = model.hidden(batch)
        b = model.hidden(changed)
    torch.testing.assert_close(a[:, : pos + 1], b[:, : pos + 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, pos + 1:], b[:, pos + 1:]), "the change had no effect at all"


def check_padding_invariance(factory: Factory) -> None:
    """Three extra left-padding columns do not change the scores."""
    torch.manual_seed(0)
    meta = make_meta(max_len=12)
    model = factory(meta).eval()
    batch = make_batch(meta, batch_size=6, seq_len=8)
    with torch.no_grad():
        a = model.score(batch)
        b = model.score(left_pad(batch, 3))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def check_bf16(factory: Factory) -> None:
    """Loss and scores run under CPU bf16 autocast and stay close to float32."""
    torch.manual_seed(0)
    meta = make_meta()
    model = factory(meta)
    batch = make_batch(meta)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(batch)
        loss.backward()
        with torch.no_grad():
            s16 = model.eval().score(batch)
    assert torch.isfinite(loss)
    with torch.no_grad():
        s32 = model.score(batch)
    assert s16.shape == s32.shape and torch.isneginf(s16[:, 0]).all()
    assert (s16[:, 1:] - s32[:, 1:]).abs().max() < 0.1


def check_deterministic(factory: Factory) -> None:
    """Same seed, same data -> identical parameters after a few training steps on CPU."""
    def run() -> torch.Tensor:
        torch.manual_seed(7)
        meta = make_meta()
        model = factory(meta)
        train_steps(model, [make_batch(meta, seed=s) for s in range(2)], 4)
        with torch.no_grad():
            return model.score(make_batch(meta, seed=5))

    torch.testing.assert_close(run(), run(), atol=0, rtol=0)


def check_rebuild(factory: Factory) -> None:
    """``cls(meta, config)`` + the state dict reproduce the scores (checkpoint contract)."""
    torch.manual_seed(0)
    meta = make_meta()
    model = factory(meta)
    batch = make_batch(meta)
    train_steps(model, [batch], 3)
    twin = type(model)(meta, model.config)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.score(batch), twin.score(batch))


def scores_of(model: Recommender, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().score(batch)

"""The score parts weighed on validation (models.training.blend): by NDCG@10 with the log-loss
breaking ties, and the log-loss optimum; on a planted draw."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from trailscope.models.base import Batch, DataMeta, Recommender
from trailscope.models.data.dataset import build_dataset
from trailscope.models.training import checkpoint as ckpt
from trailscope.models.training.blend import (
    COARSE,
    candidate_weights,
    choose_weights,
    fit_weights,
    neighbours,
    validation_parts,
)
from trailscope.models.training.blend import Parts as Cached
from trailscope.models.training.loop import train

from bench import planted as pl

QUIET = {"log": lambda _m: None}


@pytest.fixture()
def planted(store):
    pl.save(store, "planted", pl.generate(
        pl.PlantedConfig(n_users=300, events_per_user=30, n_items=150, seed=4)))
    return store


class Parts(Recommender):
    """Scores built from the target itself: ``signal`` goes to one part, noise to both."""

    name = "parts"

    @dataclass(frozen=True)
    class Config:
        signal_in: str = "encoder"

    def __init__(self, meta: DataMeta, config: Config) -> None:
        super().__init__(meta, config)

    def score_parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(int(batch.user.sum()))
        shape = (len(batch.target), self.meta.n_items + 1)
        signal = torch.zeros(shape).scatter_(1, batch.target[:, None], 4.0)
        noise_a, noise_b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        if self.config.signal_in == "encoder":
            return signal + noise_a, noise_b
        return noise_a, signal + noise_b


def test_the_weights_follow_the_part_that_carries_the_signal(planted):
    ds = build_dataset(planted, "planted", "leave-last")
    to_encoder = fit_weights(Parts(ds.meta, Parts.Config("encoder")), ds)
    to_prior = fit_weights(Parts(ds.meta, Parts.Config("prior")), ds)
    assert to_encoder.n == to_prior.n == len(ds.parts["valid"]) > 0
    assert to_encoder.weights[0] > 1.0 and to_encoder.weights[1] == 0.0
    assert to_prior.weights[1] > 1.0 and to_prior.weights[0] == 0.0
    assert to_prior.nll < to_prior.nll_sum and to_encoder.nll < to_encoder.nll_sum
    assert "part 0 weight 0.00" in to_prior.message()


def test_log_loss_by_hand_and_the_validation_subset(planted):
    enc = torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0, 0.5, 0.0, 3.0]])
    prior = torch.tensor([[float("-inf"), 0.0, 1.0, 0.0], [float("-inf"), 2.0, 0.0, -1.0]])
    target = torch.tensor([2, 1])
    logits = 0.5 * enc + 2.0 * prior
    want = float(-torch.log_softmax(logits[:, 1:], 1)[[0, 1], [1, 0]].mean())
    mask = torch.isinf(prior)
    cached = Cached([enc, prior.masked_fill(mask, 0.0)], mask, target)
    assert cached.nll((0.5, 2.0)) == pytest.approx(want, rel=1e-6)
    assert cached.nll((0.0, 2.0)) == pytest.approx(
        float(-torch.log_softmax(2.0 * prior[:, 1:], 1)[[0, 1], [1, 0]].mean()), rel=1e-6)
    ds = build_dataset(planted, "planted", "leave-last")
    model = Parts(ds.meta, Parts.Config("prior"))
    full = validation_parts(model, ds)
    part = validation_parts(model, ds, budget=2 * 100 * (ds.meta.n_items + 1))
    assert len(full.target) == len(ds.parts["valid"]) and len(part.target) == 100
    assert full.mask[:, 0].all() and len(full.scores) == 2


def test_ranking_choice_keeps_the_part_with_the_signal(planted):
    ds = build_dataset(planted, "planted", "leave-last", max_len=20)
    for signal, kept in (("encoder", 0), ("prior", 1)):
        choice = choose_weights(Parts(ds.meta, Parts.Config(signal)), ds, names=("a", "b"))
        # the noise part gets at most a small weight (a tie on the ranking, at most)
        assert choice.weights[kept] >= 8 * choice.weights[1 - kept]
        # the part alone is a candidate: the choice is never below it on validation
        assert choice.ndcg >= max(choice.alone) and choice.ndcg > min(choice.alone) + 0.1
        assert choice.message().startswith("blend kept: ")
        # the coarse grid and a few steps of the search, not every ratio
        assert len(candidate_weights(2, COARSE)) <= choice.tried < len(candidate_weights(2))
    # every part alone, every pair and the three together, up to scale
    cands = candidate_weights(3)
    assert {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)} <= set(cands)
    assert len(cands) == len(set(cands)) == 10 * 10 + 10 + 1
    # the search moves one weight at a time, never the first kept one
    assert set(neighbours((1.0, 0.0, 4.0))) == {(1.0, 0.125, 4.0), (1.0, 0.0, 2.0),
                                                (1.0, 0.0, 8.0), (1.0, 0.0, 0.0)}
    assert set(neighbours((0.0, 1.0, 16.0))) == {(0.0, 1.0, 8.0), (0.0, 1.0, 0.0)}


def test_st_transformer_is_never_below_its_parts_on_validation(planted):
    res = train(planted, "planted", model="st-transformer", epochs=2, batch_size=64,
                max_len=20, hidden=16, resume=False, pretrain_epochs=0, **QUIET)
    assert any(m.startswith("blend kept: ") for m in res.messages), res.messages
    model = ckpt.load(res.path, planted).model
    assert model.parts == ("encoder", "transitions", "history")
    a, b, c = model.blend_weights.tolist()
    # first-order data: the Markov part carries the signal
    assert b > 0
    chosen = res.metrics["chosen"]
    assert chosen["blend"] == {"encoder": a, "transitions": b, "history": c}
    # the parts are the tuned baselines: the blend is at least as good on validation
    markov = train(planted, "planted", model="markov", max_len=20, **QUIET)
    assert all(v == chosen[f"prior_{k}"] for k, v in markov.metrics["chosen"].items())
    repeat = train(planted, "planted", model="repeat", max_len=20, **QUIET)
    assert repeat.metrics["chosen"]["window"] == chosen["history_window"]
    best_part = max(markov.metrics["valid"]["ndcg@10"], repeat.metrics["valid"]["ndcg@10"])
    assert res.metrics["valid"]["ndcg@10"] >= best_part - 1e-9
    ds = build_dataset(planted, "planted", "leave-last", max_len=20)
    batch = next(ds.batches("test", 32))
    with torch.no_grad():
        enc, prior, hist = model.score_parts(batch)
        scores = model.score(batch)
        torch.testing.assert_close(scores[:, 1:], a * enc[:, 1:] + b * prior[:, 1:]
                                   + c * hist[:, 1:])
        assert torch.isneginf(scores[:, 0]).all()
    # without the blend every part counts fully
    plain = train(planted, "planted", model="st-transformer", epochs=1, batch_size=64,
                  max_len=20, hidden=16, blend=False, resume=False,
                  pretrain_epochs=0, **QUIET)
    summed = ckpt.load(plain.path, planted).model
    assert summed.blend_weights.tolist() == [1.0, 1.0, 1.0]


def test_gradient_and_hessian_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(40, 12, generator=g, dtype=torch.float64) for _ in range(3)]
    mask = torch.zeros(40, 12, dtype=torch.bool)
    mask[:, 0] = True
    mask[::3, 5] = True
    target = torch.randint(1, 5, (40,), generator=g)
    cached = Cached(scores, mask, target)
    w = (0.7, 0.3, 1.2)
    f, grad, hess = cached.nll_grad_hess(w)
    assert f == pytest.approx(cached.nll(w), rel=1e-9)
    eps = 1e-5
    for k in range(3):
        up, down = list(w), list(w)
        up[k] += eps
        down[k] -= eps
        assert float(grad[k]) == pytest.approx((cached.nll(tuple(up)) - cached.nll(tuple(down)))
                                               / (2 * eps), abs=1e-6)
        g_up, g_down = cached.nll_grad_hess(tuple(up))[1], cached.nll_grad_hess(tuple(down))[1]
        torch.testing.assert_close(hess[k], (g_up - g_down) / (2 * eps), atol=1e-5, rtol=1e-4)


class Complement(Recommender):
    """Two parts that each see the target on half the users: together they rank every target
    first, alone only half (a mix that clearly beats both); ``weak`` leaves part b only
    ``signal`` on a handful of targets, a gain no validation set this size can tell from luck."""

    name = "complement"

    @dataclass(frozen=True)
    class Config:
        weak: bool = False

    def __init__(self, meta: DataMeta, config: Config) -> None:
        super().__init__(meta, config)

    def score_parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(int(batch.user.sum()))
        shape = (len(batch.target), self.meta.n_items + 1)
        signal = torch.zeros(shape).scatter_(1, batch.target[:, None], 6.0)
        odd = (batch.user % 2 == 1)[:, None].float()
        a = torch.randn(shape, generator=g) + signal * (1 - odd)
        if self.config.weak:   # b helps a on about one target in 100
            few = (batch.user % 100 == 1)[:, None].float()
            b = torch.randn(shape, generator=g) * 0.01 + signal * few
        else:
            b = torch.randn(shape, generator=g) + signal * odd
        return a, b


def test_a_mix_is_kept_only_when_it_beats_the_best_part_by_more_than_noise(planted):
    ds = build_dataset(planted, "planted", "leave-last", max_len=20)
    strong = choose_weights(Complement(ds.meta, Complement.Config(False)), ds, names=("a", "b"))
    assert strong.weights[0] > 0 and strong.weights[1] > 0 and strong.rejected is None
    assert strong.ndcg > max(strong.alone) + 0.2
    weak = choose_weights(Complement(ds.meta, Complement.Config(True)), ds, names=("a", "b"))
    # the best mix is a little better on validation, but within noise: part a alone is kept
    assert weak.rejected is not None, weak.message()
    mix, gain, se = weak.rejected
    assert mix[1] > 0 and 0 <= gain <= 2 * se
    assert weak.weights == (1.0, 0.0) and weak.ndcg == weak.alone[0]
    assert "within noise" in weak.message()

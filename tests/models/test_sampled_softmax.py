"""The sampled softmax of large catalogues (models.nn.layers.ItemLoss, sampled_softmax_loss):
its normaliser is unbiased (checked exactly, by enumerating every draw), its loss and gradient
tend to the full softmax's, it is chosen by catalogue size or the ``softmax`` setting, and a
model trained with it on a real slice learns (beats popularity on validation)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
from trailscope.models.nn.layers import (
    ItemLoss,
    NegativeSampler,
    full_softmax_loss,
    sampled_softmax_loss,
)
from trailscope.models.recommenders.gru import GRU4Rec
from trailscope.models.recommenders.sasrec import SASRec
from trailscope.models.recommenders.st_transformer import STTransformer
from trailscope.models.training import checkpoint as ckpt
from trailscope.models.training.loop import train
from trailscope.models.training.settings import TrainSettings, resolve

from tests.models import neural_checks as checks
from tests.models.realdata import real_workspace, slice_dataset

N_ITEMS = 7


def problem(seed: int = 0, n_rows: int = 3):
    """Random states, item table (row 0 padding), one target per row, a per-(row, item) bias."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n_rows, 5, generator=g)
    w = torch.randn(N_ITEMS + 1, 5, generator=g)
    targets = torch.randint(1, N_ITEMS + 1, (n_rows,), generator=g)
    bias = torch.randn(n_rows, N_ITEMS, generator=g)

    def bias_fn(rows: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        r = rows[:, 0]
        if items is None:
            return bias[r]
        if items.dim() == 1:
            return bias[r][:, items]
        return bias[r[:, None], items]

    return h, w, targets, bias_fn


def one_row(bias_fn, row: int, *fixed):
    """``bias_fn`` for a batch holding only row ``row``; ``fixed``: its ``items`` argument."""
    def fn(rows, *items):
        return bias_fn(rows + torch.tensor([[row, 0]]), *fixed, *items)
    return fn


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("with_bias", [False, True])
def test_normaliser_is_unbiased_over_every_draw(k, with_bias):
    """E[exp(sampled loss)] = exp(full loss) per row, exactly: the sum over every possible
    draw of K negatives (with replacement, accidental hits included) weighted by its
    probability under the proposal."""
    h, w, targets, bias_fn = problem(1)
    bias_fn = bias_fn if with_bias else None
    q = NegativeSampler([5, 1, 0, 9, 2, 2, 30], N_ITEMS).q  # a skewed popularity proposal
    assert torch.isclose(q.sum(), torch.tensor(1.0, dtype=q.dtype))
    for row in range(len(h)):
        hr, tr = h[row:row + 1], targets[row:row + 1]
        rb = one_row(bias_fn, row) if bias_fn else None
        expected = 0.0
        for draw in itertools.product(range(N_ITEMS), repeat=k):
            d = torch.tensor(draw)
            log_kq = (q[d] * k).log()
            loss = sampled_softmax_loss(hr, tr, w, d + 1, log_kq, rb)
            expected += float(q[d].prod()) * float(loss.double().exp())
        full = full_softmax_loss(hr, tr, w, bias_fn=one_row(bias_fn, row, None) if rb else None)
        assert expected == pytest.approx(float(full.double().exp()), rel=1e-5)


def test_many_negatives_give_the_full_loss_and_gradient():
    """With K far above the catalogue size the sampled loss and its gradient (with respect to
    the states, the item table and the bias) are the full softmax's within a few percent,
    and much closer than with a handful of negatives."""
    torch.manual_seed(0)
    h, w, targets, bias_fn = problem(2, n_rows=4)
    sampler = NegativeSampler(list(range(1, N_ITEMS + 1)), N_ITEMS)

    def grads(fn):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        loss = fn(hh, ww)
        loss.backward()
        return loss.detach(), hh.grad, ww.grad

    full = grads(lambda hh, ww: full_softmax_loss(hh, targets, ww,
                                                  bias_fn=lambda r: bias_fn(r, None)))

    def sampled(k):
        neg, log_kq = sampler.draw(k, torch.device("cpu"))
        return grads(lambda hh, ww: sampled_softmax_loss(hh, targets, ww, neg, log_kq, bias_fn))

    def error(got):
        return max(float((a - b).norm() / b.norm()) for a, b in zip(got, full, strict=True))

    many = [error(sampled(20_000)) for _ in range(3)]
    few = [error(sampled(3)) for _ in range(20)]
    assert max(many) < 0.03
    assert sum(few) / len(few) > 5 * max(many)


def test_chunked_sampled_loss_is_the_same(monkeypatch):
    torch.manual_seed(0)
    h = torch.randn(3, 4, 6, requires_grad=True)
    w = torch.randn(9, 6)
    targets = torch.tensor([[0, 1, 2, 3], [0, 0, 8, 5], [4, 4, 4, 0]])
    neg, log_kq = NegativeSampler([1] * 8, 8).draw(5, torch.device("cpu"))
    whole = sampled_softmax_loss(h, targets, w, neg, log_kq)
    whole.backward()
    g = h.grad.clone()
    h.grad = None
    monkeypatch.setattr("trailscope.models.nn.layers.LOSS_CHUNK_LOGITS", 12)  # 2 rows a chunk
    chunked = sampled_softmax_loss(h, targets, w, neg, log_kq)
    chunked.backward()
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(h.grad, g)
    assert g[targets == 0].abs().sum() == 0  # padding positions get no gradient


def test_draws_follow_the_proposal():
    torch.manual_seed(0)
    pop = [0, 0, 10, 90]
    s = NegativeSampler(pop, 4)
    neg, log_kq = s.draw(200_000, torch.device("cpu"))
    assert int(neg.min()) >= 1 and int(neg.max()) <= 4
    share = torch.bincount(neg, minlength=5)[1:].double() / len(neg)
    want = torch.tensor([0.125, 0.125, 0.175, 0.575], dtype=torch.float64)  # half pop, half flat
    torch.testing.assert_close(share, want, atol=4e-3, rtol=0)
    torch.testing.assert_close(log_kq, (want[neg - 1] * len(neg)).log().float())


def test_the_setting_and_the_catalogue_size_choose():
    small_meta = checks.make_meta()  # a few dozen items: below the threshold
    for cls in (SASRec, GRU4Rec, STTransformer):
        assert not cls(small_meta, cls.Config()).item_loss.sampled
        assert cls(small_meta, cls.Config(softmax="sampled")).item_loss.sampled
        assert cls(small_meta, cls.Config(sampled_above=small_meta.n_items - 1)).item_loss.sampled
        assert not cls(small_meta, cls.Config(softmax="full", sampled_above=0)).item_loss.sampled
    with pytest.raises(ValueError, match="softmax must be one of auto, full, sampled"):
        SASRec(small_meta, SASRec.Config(softmax="sample"))
    with pytest.raises(ValueError, match="negatives must be at least 1"):
        SASRec(small_meta, SASRec.Config(softmax="sampled", negatives=0))
    # --set softmax=sampled negatives=64 reaches the model's Config
    _, config = resolve("sasrec", {"softmax": "sampled", "negatives": 64, "epochs": 1})
    assert (config.softmax, config.negatives) == ("sampled", 64)


def test_evaluation_loss_is_the_full_softmax():
    """Without gradients (validation, held-out losses) the sampled model computes the exact
    full-softmax loss; with them, a sampled estimate that differs from draw to draw."""
    meta = checks.make_meta()
    batch = checks.make_batch(meta)
    torch.manual_seed(0)
    sampled = SASRec(meta, SASRec.Config(softmax="sampled", negatives=4, dropout=0.0))
    full = SASRec(meta, SASRec.Config(softmax="full", dropout=0.0))
    full.load_state_dict(sampled.state_dict())
    with torch.no_grad():
        assert torch.equal(sampled.loss(batch), full.loss(batch))
    a, b = sampled.loss(batch), sampled.loss(batch)
    assert not torch.equal(a, b)


def test_item_loss_draws_on_the_states_device():
    meta = checks.make_meta()
    loss = ItemLoss.from_config(meta, SASRec.Config(softmax="sampled", negatives=8))
    neg, log_kq = loss.sampler.draw(8, torch.device("cpu"))
    assert neg.device.type == "cpu" and neg.dtype == torch.long and log_kq.shape == (8,)


# -- learning on a real slice with the sampled softmax forced -------------------------------

FAST = TrainSettings(split="leave-last", batch_size=64, max_len=20, resume=False, lr=3e-3)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    store = real_workspace(tmp_path_factory.mktemp("sampled"), "nyc")
    slice_dataset(store, "nyc", "nyc300", 300)
    yield store
    store.close()


def quiet(_msg: str) -> None:
    """Training log sink: the tests check results, not the log."""


@pytest.mark.parametrize("model,extra", [
    ("sasrec", {}),
    # the encoder alone (with its distance-to-candidate bias on the sampled candidates): the
    # count parts would beat popularity without any training
    ("st-transformer", {"use_transitions": False, "use_history": False}),
])
def test_sampled_softmax_learns_on_a_real_slice(ws, model, extra):
    """Catalogue threshold forced below the slice's items: training samples 64 negatives a
    step out of ~1,000+ items and still ranks above popularity on validation (full ranking)
    after a few epochs."""
    pop = train(ws, "nyc300", "pop", FAST, log=quiet).metrics["valid"]["ndcg@10"]
    run = train(ws, "nyc300", model, replace(FAST, epochs=4, patience=4), log=quiet,
                sampled_above=100, negatives=64, hidden=32, **extra)
    assert ckpt.load(run.path, ws).model.item_loss.sampled  # it trained with sampled negatives
    history = [row["valid ndcg@10"] for row in run.history]
    assert max(history) > 3 * pop, (history, pop)
    assert max(history) > history[0]  # it improved while training


def test_below_the_threshold_the_loss_is_the_full_softmax_as_before():
    """Small catalogues (NYC, ML-100K) keep the exact full softmax: the same loss as
    ``full_softmax_loss`` on the model's states, and no draw from the random generator (so a
    seeded run's dropout masks, and its metrics, are those of before)."""
    meta = checks.make_meta()
    batch = checks.make_batch(meta)
    torch.manual_seed(0)
    model = SASRec(meta, SASRec.Config(dropout=0.0))
    assert not model.item_loss.sampled
    state = torch.get_rng_state()
    got = model.loss(batch)
    assert torch.equal(torch.get_rng_state(), state)
    cropped = batch.crop(meta.max_len)
    want = full_softmax_loss(model.encode(cropped), cropped.target_seq, model.item_emb.weight)
    assert torch.equal(got, want)


@pytest.mark.parametrize("with_bias", [False, True])
def test_full_softmax_without_compaction_is_the_same(with_bias, monkeypatch):
    """The CUDA form of the full softmax (every position scored, padding weighed 0: no
    host-device sync) gives the CPU form's loss and gradient, chunked or not."""
    torch.manual_seed(0)
    h = torch.randn(3, 4, 6, requires_grad=True)
    w = torch.randn(9, 6)
    targets = torch.tensor([[0, 1, 2, 3], [0, 0, 8, 5], [4, 4, 4, 0]])
    bias = torch.randn(3, 4, 8)
    bias_fn = (lambda rows: bias[rows[:, 0], rows[:, 1]]) if with_bias else None
    for chunk in (2**25, 16):
        monkeypatch.setattr("trailscope.models.nn.layers.LOSS_CHUNK_LOGITS", chunk)
        got = []
        for compact in (True, False):
            h.grad = None
            loss = full_softmax_loss(h, targets, w, bias_fn=bias_fn, compact=compact)
            loss.backward()
            got.append((loss.detach(), h.grad.clone()))
        torch.testing.assert_close(got[0], got[1])
        assert got[1][1][targets == 0].abs().sum() == 0


def test_candidate_distance_of_some_items_is_that_of_all_items():
    """The distance-to-candidate bias of a shared subset of items, or of one item per row,
    equals the matching columns of the bias over every item (the sampled softmax scores
    only its candidates)."""
    from trailscope.models.nn.st_features import CandidateDistance

    meta = checks.make_meta()
    cand = CandidateDistance(meta.item_coords(), 24, 0.05, 100.0, 32)
    with torch.no_grad():
        cand.table.copy_(torch.randn(cand.table.shape))
    g = torch.Generator().manual_seed(0)
    lat = 40.7 + 0.1 * torch.rand(6, generator=g)
    lon = -74.0 + 0.1 * torch.rand(6, generator=g)
    xyz, known = cand.last_known(lat[None], lon[None], torch.tensor([[1, 1, 0, 1, 0, 1]]).bool())
    xyz, known = xyz[0], known[0]
    gap = torch.randint(1, 33, (6,), generator=g)
    every = cand(xyz, known, gap)  # (6, n_items)
    some = torch.tensor([0, 5, 5, meta.n_items - 1])
    torch.testing.assert_close(cand(xyz, known, gap, some), every[:, some])
    one = torch.randint(0, meta.n_items, (6, 1), generator=g)
    torch.testing.assert_close(cand(xyz, known, gap, one), every.gather(1, one))

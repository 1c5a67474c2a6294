"""Transition counts (CSR) and the ST-Transformer's learned first-order prior."""

from __future__ import annotations

import torch
from trailscope.models.nn.transitions import (
    TransitionCounts,
    TransitionPrior,
    csr_counts,
    csr_entries,
)
from trailscope.models.recommenders.markov import MarkovRec
from trailscope.models.recommenders.pop import transitions
from trailscope.models.recommenders.st_transformer import STTransformer

from tests.models.neural_synth import make_batch, make_meta, train_steps


def dense_counts(prev: torch.Tensor, nxt: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, n)
    out.index_put_((prev, nxt), torch.ones(len(prev)), accumulate=True)
    return out


def test_csr_counts_equal_a_dense_count():
    g = torch.Generator().manual_seed(0)
    prev, nxt = torch.randint(1, 9, (300,), generator=g), torch.randint(1, 9, (300,), generator=g)
    ptr, col, val = csr_counts(prev, nxt, 9)
    want = dense_counts(prev, nxt, 9)
    last = torch.tensor([3, 0, 3, 8, 1])  # repeated rows and the padding row
    rows, cols, vals = csr_entries(ptr, col, val, last)
    got = torch.zeros(len(last), 9)
    got[rows, cols] = vals
    torch.testing.assert_close(got, want[last])
    assert int(val.sum()) == 300 and ptr[-1] == len(col)


def prior_from(pairs: list[tuple[int, int]], n_items: int = 6) -> TransitionPrior:
    torch.manual_seed(0)
    prior = TransitionPrior(n_items, torch.arange(n_items + 1, dtype=torch.float32))
    with torch.no_grad():  # a non-trivial learned part, so that every feature matters
        for p in prior.mlp.parameters():
            p.copy_(torch.randn(p.shape))
    prev, nxt = (torch.tensor(x) for x in zip(*pairs, strict=True))
    prior.fit(prev, nxt)
    return prior


def test_prior_is_zero_for_unseen_transitions_and_leaves_one_out():
    pairs = [(1, 2), (1, 2), (1, 3), (2, 4)]
    prior = prior_from(pairs)
    bias = prior(torch.tensor([1, 2, 5])) - prior.base  # (3, n_items), column c = item c + 1
    assert bias.shape == (3, 6)
    assert set(torch.nonzero(bias[0]).flatten().tolist()) == {1, 2}   # items 2 and 3
    assert set(torch.nonzero(bias[1]).flatten().tolist()) == {3}      # item 4
    assert not bias[2].any()                                          # item 5: no transitions
    # leaving out the only 1 -> 3 transition removes its evidence entirely ...
    loo = prior(torch.tensor([1]), exclude=torch.tensor([3])) - prior.base
    assert loo[0, 2] == 0 and loo[0, 1] == bias[0, 1]
    # ... and leaving out one of two 1 -> 2 transitions scores it like a single one would be
    # scored in a row with one transition fewer
    loo2 = prior(torch.tensor([1]), exclude=torch.tensor([2])) - prior.base
    once = prior_from([(1, 2), (1, 3), (2, 4)])
    once.load_state_dict({**prior.state_dict(), **{k: v for k, v in once.state_dict().items()
                                                   if k.startswith("counts.")}})
    assert torch.isclose(loo2[0, 1], (once(torch.tensor([1])) - once.base)[0, 1])
    assert loo2[0, 1] != bias[0, 1]


def test_evidence_is_weighed_against_the_learned_base_rate():
    prior = prior_from([(1, 2), (1, 3), (1, 3)])
    evidence = prior(torch.tensor([1])) - prior.base
    with torch.no_grad():
        prior.base[2] += 3.0  # item 3 now counts as a common pick: its transitions say less
    moved = prior(torch.tensor([1])) - prior.base
    assert moved[0, 2] != evidence[0, 2] and moved[0, 1] == evidence[0, 1]


def test_counts_reload_with_their_own_shape():
    counts = TransitionCounts(5)
    counts.fit(torch.tensor([1, 1, 2]), torch.tensor([2, 3, 3]))
    twin = TransitionCounts(5)  # empty buffers of other shapes
    twin.load_state_dict(counts.state_dict())
    assert torch.equal(twin.col, counts.col) and torch.equal(twin.val, counts.val)


def test_st_transformer_uses_the_prior_and_round_trips():
    meta = make_meta()
    batch = make_batch(meta)
    torch.manual_seed(0)
    model = STTransformer(meta, STTransformer.Config(hidden=32, dropout=0.0))
    model.fit_counts([batch])
    prev, nxt, _ = transitions([batch])
    assert int(model.transitions.counts.val.sum()) == len(prev) > 0
    train_steps(model, [batch], 5)
    model.blend_weights.copy_(torch.tensor([1.0, 1.0, 0.0]))  # as if calibrated
    twin = STTransformer(meta, model.config)  # unfitted: its count buffers are empty
    twin.load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.score(batch), twin.score(batch))
        # the prior only touches candidates that followed the last item in training
        without = STTransformer(meta, model.config)
        without.load_state_dict(model.state_dict())
        without.transitions.counts.fit(torch.zeros(0, dtype=torch.long),
                                       torch.zeros(0, dtype=torch.long))
        diff = (model.score(batch) - without.eval().score(batch))[:, 1:]
    seen = torch.zeros_like(diff, dtype=torch.bool)
    last = batch.item_seq[:, -1]
    for r, item in enumerate(last.tolist()):
        seen[r, nxt[prev == item] - 1] = True
    assert (diff[~seen] == 0).all() and (diff[seen] != 0).any()


def test_markov_scores_are_unchanged_by_the_shared_csr_code():
    meta = make_meta()
    batch = make_batch(meta)
    markov = MarkovRec(meta)
    markov.fit_counts([batch])
    prev, nxt, _ = transitions([batch])
    dense = dense_counts(prev, nxt, meta.n_items + 1)
    last = batch.item_seq[:, -1]
    torch.testing.assert_close(markov._transition_counts(last), dense[last])


def test_distinct_rows_and_candidate_buckets_match_the_plain_computation():
    from trailscope.models.nn.layers import haversine_km, log_buckets, unit_vectors
    from trailscope.models.nn.st_features import CandidateDistance, distinct_rows

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (200, 3), generator=g).float()
    first, which = distinct_rows(x)
    uniq = torch.unique(x, dim=0)
    assert len(first) == len(uniq) and torch.equal(x[first][which], x)
    # candidate distance buckets: the log-chord shortcut against log_buckets(haversine)
    meta = make_meta(n_items=60)
    cd = CandidateDistance(meta.item_coords(), 24, 0.05, 100.0, 32)
    lat = 40.70 + 0.3 * torch.rand(50, generator=g, dtype=torch.float64)
    lon = -74.05 + 0.3 * torch.rand(50, generator=g, dtype=torch.float64)
    known = torch.rand(50, generator=g) > 0.2
    ids = cd.bucket_ids(unit_vectors(lat, lon).float(), known)
    coords = torch.as_tensor(meta.item_coords()[1:])
    km = haversine_km(lat[:, None], lon[:, None], coords[None, :, 0], coords[None, :, 1])
    want = log_buckets(km.nan_to_num(1.0), 24, 0.05, 100.0,
                       unknown=~known[:, None] | coords[None, :, 0].isnan())
    assert (ids == want).float().mean() > 0.995  # float32 chords: a rare bucket-edge tie
    assert ((ids - want).abs() <= 1).all()


def test_prefit_learns_the_first_order_law_alone():
    # item i is followed by i + 1 (mod 6) twice as often as by anything else
    g = torch.Generator().manual_seed(2)
    prev = torch.randint(1, 7, (3000,), generator=g)
    follow = torch.rand(3000, generator=g) < 0.6
    nxt = torch.where(follow, prev % 6 + 1, torch.randint(1, 7, (3000,), generator=g))
    prior = TransitionPrior(6, torch.zeros(7))
    prior.fit(prev, nxt)
    first = prior.prefit(prev, nxt, epochs=1, batch_size=512)
    last = prior.prefit(prev, nxt, epochs=5, batch_size=512)
    assert last < first
    with torch.no_grad():
        scores = prior(torch.arange(1, 7))
    assert torch.equal(scores.argmax(1) + 1, torch.arange(1, 7) % 6 + 1)


def test_prior_is_fitted_apart_from_the_encoder():
    meta = make_meta()
    batch = make_batch(meta)
    torch.manual_seed(0)
    model = STTransformer(meta, STTransformer.Config(hidden=32, dropout=0.0, prior_epochs=2))
    model.fit_counts([batch])
    before = {k: v.clone() for k, v in model.transitions.state_dict().items()}
    enc = model.item_emb.weight.detach().clone()
    train_steps(model, [batch], 3)
    assert all(torch.equal(v, model.transitions.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(enc, model.item_emb.weight)
    # while it trains, the score is the encoder's alone
    model.eval()
    with torch.no_grad():
        enc_part = model.score_parts(batch)[0]
        torch.testing.assert_close(model.score(batch)[:, 1:], enc_part[:, 1:])

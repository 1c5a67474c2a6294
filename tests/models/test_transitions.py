"""Transition counts (CSR) and the ST-Transformer's count parts (the Markov and repeat
models inside it)."""

from __future__ import annotations

import torch
from trailscope.models.nn.transitions import csr_counts, csr_entries
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
    for one in (3, 0, 8):  # a batch of one (a recommendation) reads its row as a slice
        rows, cols, vals = csr_entries(ptr, col, val, torch.tensor([one]))
        got = torch.zeros(1, 9)
        got[rows, cols] = vals
        torch.testing.assert_close(got, want[[one]])
        assert rows.dtype == torch.long and (rows == 0).all()


def test_proximity_from_unit_vectors_equals_the_haversine_weight():
    from trailscope.models.nn.layers import haversine_km
    from trailscope.models.recommenders.pop import item_unit_vectors, proximity

    # items from 1 m to the far side of the earth, one without coordinates
    coords = torch.tensor([[float("nan")] * 2, [40.75, -74.0], [40.75001, -74.0],
                           [40.7501, -74.0], [40.76, -73.98], [40.85, -73.90],
                           [float("nan"), float("nan")], [51.5, -0.12], [-40.75, 106.01]],
                          dtype=torch.float64)
    lat = torch.tensor([40.75, 40.80, float("nan")], dtype=torch.float32)
    lon = torch.tensor([-74.0, -73.95, float("nan")], dtype=torch.float32)
    for bw in (0.001, 0.5, 3.0, 5000.0):
        got = proximity(item_unit_vectors(coords), lat, lon, bw)
        km = haversine_km(lat[:2, None], lon[:2, None], coords[None, :, 0], coords[None, :, 1])
        want = torch.exp(-km / bw).nan_to_num(nan=0.0).float()
        assert got.shape == (3, 9) and got.dtype == torch.float32
        torch.testing.assert_close(got[:2], want, rtol=1e-6, atol=1e-9)
        assert (got[2] == 0).all() and (got[:, [0, 6]] == 0).all()  # NaN anchor / items
    assert float(proximity(item_unit_vectors(coords), lat, lon, 0.5)[0, 1]) == 1.0  # same place


def test_st_transformer_uses_the_prior_and_round_trips():
    meta = make_meta()
    batch = make_batch(meta)
    torch.manual_seed(0)
    model = STTransformer(meta, STTransformer.Config(hidden=32, dropout=0.0))
    model.fit_counts([batch])
    prev, nxt, _ = transitions([batch])
    assert int(model.prior.val.sum()) == len(prev) > 0
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
        without.prior.fit_counts([])
        diff = (model.score(batch) - without.eval().score(batch))[:, 1:]
        # the transition part is the Markov model's log-probability, with its settings
        c = model.config
        markov = MarkovRec(meta, MarkovRec.Config(
            c.prior_min_transitions, c.prior_bandwidth_km, link_share=c.prior_link_share,
            link_count=c.prior_link_count))
        markov.fit_counts([batch])
        torch.testing.assert_close(model.score_parts(batch)[1][:, 1:],
                                   markov.score(batch)[:, 1:].clamp(min=1e-12).log())
    seen = torch.zeros_like(diff, dtype=torch.bool)
    last = batch.item_seq[:, -1]
    for r, item in enumerate(last.tolist()):
        seen[r, nxt[prev == item] - 1] = True
    # against the fallback alone, every observed successor of the last item gains on every
    # other candidate (those all lose the same log(beta / (transitions + beta)))
    assert seen.any()
    for r in range(len(diff)):
        if seen[r].any():
            assert diff[r][seen[r]].min() > diff[r][~seen[r]].min() + 1e-4


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


def test_prior_is_fitted_apart_from_the_encoder():
    meta = make_meta()
    batch = make_batch(meta)
    torch.manual_seed(0)
    model = STTransformer(meta, STTransformer.Config(hidden=32, dropout=0.0))
    model.fit_counts([batch])
    before = {k: v.clone() for k, v in model.prior.state_dict().items()}
    enc = model.item_emb.weight.detach().clone()
    train_steps(model, [batch], 3)
    for k, v in before.items():  # (item coordinates hold NaN where unknown)
        torch.testing.assert_close(model.prior.state_dict()[k], v, rtol=0, atol=0,
                                   equal_nan=True)
    assert not torch.equal(enc, model.item_emb.weight)
    # while it trains, the score is the encoder's alone
    model.eval()
    with torch.no_grad():
        enc_part = model.score_parts(batch)[0]
        torch.testing.assert_close(model.score(batch)[:, 1:], enc_part[:, 1:])

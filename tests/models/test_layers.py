"""Shared blocks: bucketing, pairwise matrices, masks, relation attention, the loss."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from trailscope.models.nn.layers import (
    Attention,
    attention_mask,
    distance_buckets,
    ffill_last_known,
    full_softmax_loss,
    haversine_km,
    log_buckets,
    mask_to_bias,
    positions,
    time_gap_buckets,
)
from trailscope.models.nn.st_features import CandidateDistance


def test_log_buckets_clip_and_unknown():
    x = torch.tensor([0.0, 60.0, 3600.0, 86400.0, 1e12])
    ids = log_buckets(x, 10, 60.0, 1e6, unknown=torch.tensor([False, False, False, True, False]))
    assert ids.tolist()[0] == 1 and ids.tolist()[1] == 1  # below lo -> first bucket
    assert ids.tolist()[4] == 10  # above hi -> last bucket
    assert ids.tolist()[3] == 11  # unknown bucket
    # an hour is log-halfway-ish between a minute and 1e6 s: bucket from the formula
    frac = (math.log(3600) - math.log(60)) / (math.log(1e6) - math.log(60))
    assert ids.tolist()[2] == round(frac * 9) + 1


def test_pairwise_time_buckets_match_a_loop():
    t = torch.tensor([[0.0, 100.0, 4000.0, 90000.0]], dtype=torch.float64)
    valid = t > 0
    ids = time_gap_buckets(t, valid, 16, 60.0, 1e6)
    for i in range(4):
        for j in range(4):
            if valid[0, i] and valid[0, j]:
                want = log_buckets(torch.tensor(abs(float(t[0, i] - t[0, j]))), 16, 60.0, 1e6)
                assert ids[0, i, j] == want
            else:
                assert ids[0, i, j] == 0
    assert torch.equal(ids, ids.transpose(1, 2))


def test_distance_buckets_and_unknown():
    lat = torch.tensor([[0.0, 40.75, 40.76, 0.0]])
    lon = torch.tensor([[0.0, -73.99, -73.98, 0.0]])
    geo = torch.tensor([[False, True, True, False]])
    valid = torch.tensor([[False, True, True, True]])
    ids = distance_buckets(lat, lon, geo, valid, 8, 0.05, 100.0)
    assert ids[0, 0].eq(0).all()  # padding row
    assert ids[0, 3, 1] == 9 and ids[0, 1, 3] == 9  # no coordinates -> unknown bucket
    d = float(haversine_km(lat[0, 1], lon[0, 1], lat[0, 2], lon[0, 2]))
    assert 1.0 < d < 1.6  # ~1.4 km apart in Manhattan
    assert ids[0, 1, 2] == log_buckets(torch.tensor(d), 8, 0.05, 100.0)


def test_haversine_known_distance():
    # New York -> London is about 5,570 km
    d = float(haversine_km(torch.tensor(40.7128), torch.tensor(-74.0060),
                           torch.tensor(51.5074), torch.tensor(-0.1278)))
    assert abs(d - 5570) < 15


def test_positions_and_masks():
    seq = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    assert positions(seq).tolist() == [[0, 0, 1, 2], [1, 2, 3, 4]]
    m = attention_mask(seq > 0, causal=True)[:, 0]
    assert m[0].tolist() == [[True, False, False, False], [False, True, False, False],
                             [False, False, True, False], [False, False, True, True]]
    assert torch.isneginf(mask_to_bias(m)).sum() == (~m).sum()


def test_ffill_last_known():
    v = torch.arange(5.0).view(1, 5, 1)
    known = torch.tensor([[False, True, False, False, True]])
    filled, any_known = ffill_last_known(v, known)
    assert filled[0, :, 0].tolist() == [0.0, 1.0, 1.0, 1.0, 4.0]
    assert any_known.tolist() == [[False, True, True, True, True]]


def test_relation_kv_attention_matches_explicit_formula():
    """The gather/scatter TiSASRec path equals the textbook (B, L, L, D) computation."""
    torch.manual_seed(0)
    B, L, D, H, n = 2, 5, 8, 2, 4
    att = Attention(D, H, dropout=0.0).eval()
    x = torch.randn(B, L, D)
    ids = torch.randint(0, n, (B, L, L))
    kt, vt = torch.randn(n, H, D // H), torch.randn(n, H, D // H)
    bias = mask_to_bias(attention_mask(torch.ones(B, L, dtype=torch.bool), True)).expand(
        B, H, L, L)
    got = att(x, bias, [(ids, kt, vt)])
    q, k, v = att.qkv(x).split(D, dim=2)
    q, k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
    rk = kt[ids].permute(0, 3, 1, 2, 4)  # (B, H, L, L, hd)
    rv = vt[ids].permute(0, 3, 1, 2, 4)
    s = (torch.einsum("bhid,bhjd->bhij", q, k) + torch.einsum("bhid,bhijd->bhij", q, rk))
    a = (s / math.sqrt(D // H) + bias).softmax(-1)
    y = torch.einsum("bhij,bhjd->bhid", a, v) + torch.einsum("bhij,bhijd->bhid", a, rv)
    want = att.proj(y.transpose(1, 2).reshape(B, L, D))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_full_softmax_loss_matches_cross_entropy_and_chunks(monkeypatch):
    torch.manual_seed(0)
    h = torch.randn(3, 4, 6, requires_grad=True)
    w = torch.randn(9, 6)  # 8 items + padding row
    targets = torch.tensor([[0, 1, 2, 3], [0, 0, 8, 5], [4, 4, 4, 0]])
    got = full_softmax_loss(h, targets, w)
    keep = targets > 0
    want = F.cross_entropy(h[keep] @ w[1:].T, targets[keep] - 1)
    torch.testing.assert_close(got, want)
    got.backward()
    g1 = h.grad.clone()
    h.grad = None
    monkeypatch.setattr("trailscope.models.nn.layers.LOSS_CHUNK_LOGITS", 16)  # 2 rows per chunk
    chunked = full_softmax_loss(h, targets, w)
    torch.testing.assert_close(chunked, want)
    chunked.backward()
    torch.testing.assert_close(h.grad, g1)
    assert g1[~keep].abs().sum() == 0  # padding positions get no gradient


def test_candidate_distance_buckets_match_haversine():
    rng = np.random.default_rng(0)
    coords = np.column_stack([40.6 + rng.random(40) * 0.3, -74.1 + rng.random(40) * 0.3])
    coords = np.vstack([[np.nan, np.nan], coords])
    coords[7] = np.nan
    cd = CandidateDistance(coords, 12, 0.05, 100.0, n_gap=3)
    with torch.no_grad():
        cd.table.copy_(torch.arange(5 * 14, dtype=torch.float32).view(5, 14))
    q_lat, q_lon = torch.tensor([40.7, 40.8]), torch.tensor([-74.0, -73.95])
    xyz, known = cd.last_known(q_lat[:, None], q_lon[:, None], torch.tensor([[True], [False]]))
    out = cd(xyz[:, 0], known[:, 0], torch.tensor([1, 2]))  # (2, 40)
    d = haversine_km(q_lat[0], q_lon[0], torch.tensor(coords[1:, 0]), torch.tensor(coords[1:, 1]))
    want_ids = log_buckets(d, 12, 0.05, 100.0, unknown=torch.isnan(d))
    assert torch.equal(out[0], cd.table[1][want_ids])
    assert torch.equal(out[1], torch.full((40,), cd.table[2, 13].item()))  # unknown position

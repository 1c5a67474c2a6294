"""GraphRec: LightGCN propagation by hand, kNN edges, transitions, contract checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from trailscope.models.base import DataMeta
from trailscope.models.recommenders.graph import GraphRec, knn_edges, normalized_adjacency

from tests.models import neural_checks as checks
from tests.models.neural_synth import make_batch, make_meta


def small(meta, **kw):
    return GraphRec(meta, GraphRec.Config(hidden=32, dropout=0.0, **kw))


@pytest.mark.parametrize("encoder", ["gru", "mean"])
@pytest.mark.parametrize("check", [
    checks.check_shapes, checks.check_learns, checks.check_causal,
    checks.check_padding_invariance, checks.check_bf16, checks.check_deterministic,
    checks.check_rebuild,
], ids=lambda f: f.__name__)
def test_graph(check, encoder):
    check(lambda meta: small(meta, encoder=encoder))


def test_propagation_on_a_path_graph_matches_hand_computation():
    """Items 1 - 2 - 3 in a path: degrees 1, 2, 1, so A_hat[1,2] = A_hat[2,3] = 1/sqrt(2).

    E1 = A_hat E0: e1' = e2/s, e2' = (e1 + e3)/s, e3' = e2/s        (s = sqrt 2)
    E2 = A_hat E1: e1'' = (e1 + e3)/2, e2'' = e2, e3'' = (e1 + e3)/2
    final = (E0 + E1 + E2) / 3.
    """
    meta = DataMeta(n_items=3, n_users=1, n_categories=0, n_behaviors=1, max_len=4)
    model = GraphRec(meta, GraphRec.Config(hidden=2, n_layers=2, use_geo=False))
    model.add_transitions(torch.tensor([[1, 2], [2, 3]]))  # 1 -> 2, 2 -> 3
    e1, e2, e3 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([2.0, -1.0])
    with torch.no_grad():
        model.item_emb.weight.copy_(torch.stack([torch.zeros(2), e1, e2, e3]))
    s = math.sqrt(2.0)
    want = torch.stack([
        torch.zeros(2),
        (e1 + e2 / s + (e1 + e3) / 2) / 3,
        (e2 + (e1 + e3) / s + e2) / 3,
        (e3 + e2 / s + (e1 + e3) / 2) / 3,
    ])
    torch.testing.assert_close(model.propagate(), want)


def test_normalized_adjacency_is_symmetric_and_binary():
    edges = torch.tensor([[1, 2, 2, 1, 3], [2, 1, 3, 2, 3]])  # duplicates and a self loop
    adj = normalized_adjacency(edges, 4).to_dense()
    torch.testing.assert_close(adj, adj.T)
    assert adj[3, 3] == 0 and adj[0].abs().sum() == 0
    torch.testing.assert_close(adj[1, 2], torch.tensor(1 / math.sqrt(2.0)))


def test_knn_edges_pick_the_nearest_items():
    coords = np.array([[np.nan, np.nan], [40.70, -74.0], [40.71, -74.0], [40.90, -74.0],
                       [np.nan, np.nan], [40.705, -74.0]])
    edges = knn_edges(coords, k=1)
    pairs = set(map(tuple, edges.T.tolist()))
    assert pairs == {(1, 5), (2, 5), (3, 2), (5, 1)}


def test_fit_counts_builds_transitions_and_loss_learns_them_otherwise():
    meta = make_meta()
    batches = [make_batch(meta, seed=s) for s in range(2)]
    fitted = small(meta, use_geo=False)
    fitted.fit_counts(batches)
    pairs = set(map(tuple, fitted.transition_edges.T.tolist()))
    b = batches[0]
    keep = (b.item_seq > 0) & (b.target_seq > 0)
    assert {(int(i), int(j)) for i, j in zip(b.item_seq[keep], b.target_seq[keep],
                                             strict=True)} <= pairs
    assert all(j == i % meta.n_items + 1 for i, j in pairs)  # only the planted transitions
    lazy = small(meta, use_geo=False)
    assert lazy.transition_edges.shape[1] == 0
    for batch in batches:
        lazy.loss(batch)
    assert torch.equal(lazy.transition_edges, fitted.transition_edges)


def test_geo_edges_exist_only_with_coordinates():
    assert small(make_meta()).geo_edges.shape[1] > 0
    assert small(make_meta(coords=False)).geo_edges.shape[1] == 0
    assert small(make_meta(), use_geo=False).geo_edges.shape[1] == 0


def test_bad_encoder_is_explained():
    with pytest.raises(ValueError, match="'gru' or 'mean'"):
        small(make_meta(), encoder="lstm")

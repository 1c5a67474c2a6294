"""The planted-signal generator (bench/planted.py) and its ceiling, on a tiny draw."""

from __future__ import annotations

import numpy as np
import pytest
from trailscope.analytics import schema

from bench import planted as pl

TINY = pl.PlantedConfig(n_users=300, events_per_user=30, n_items=200, seed=3)


@pytest.fixture(scope="module")
def draw() -> pl.Planted:
    return pl.generate(TINY)


def test_shapes_successors_and_order(draw: pl.Planted) -> None:
    c = draw.config
    assert draw.item.shape == (c.n_users * c.events_per_user,)
    assert draw.successors.shape == (c.n_items, c.n_successors)
    # distinct successors, never the item itself
    s = np.sort(draw.successors, axis=1)
    assert (np.diff(s, axis=1) > 0).all()
    assert not (draw.successors == np.arange(c.n_items)[:, None]).any()
    assert np.isclose(draw.popularity.sum(), 1.0)
    ts = draw.ts.reshape(c.n_users, c.events_per_user)
    assert (np.diff(ts, axis=1) > 0).all()
    # exponential gaps of about an hour (8,700 gaps: the mean is within a few percent)
    assert abs(np.diff(ts, axis=1).mean() / c.mean_gap_s - 1) < 0.05


def test_transitions_follow_the_planted_law(draw: pl.Planted) -> None:
    c = draw.config
    seq = draw.sequences()
    prev, nxt = seq[:, :-1].reshape(-1), seq[:, 1:].reshape(-1)
    in_succ = (draw.successors[prev] == nxt[:, None]).any(axis=1)
    # a successor arrives by the link (0.7) or by a popular draw that happens to be one
    expected = c.follow_prob + (1 - c.follow_prob) * draw.popularity[draw.successors[prev]].sum(
        axis=1).mean()
    assert abs(in_succ.mean() - expected) < 0.02
    assert abs(draw.followed.reshape(c.n_users, -1)[:, 1:].mean() - c.follow_prob) < 0.02
    # the non-followed draws come from the Zipf law: the top item is the most frequent
    popular = nxt[~draw.followed.reshape(c.n_users, -1)[:, 1:].reshape(-1)]
    counts = np.bincount(popular, minlength=c.n_items)
    assert counts.argmax() == draw.popularity.argmax()


def test_true_distribution_and_ceiling(draw: pl.Planted) -> None:
    c = draw.config
    probs = pl.next_item_probs(draw, np.array([0, 5]))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(probs[0, draw.successors[0]],
                       c.follow_prob / c.n_successors
                       + (1 - c.follow_prob) * draw.popularity[draw.successors[0]])
    ceil = pl.leave_last_ceiling(draw)
    seq = draw.sequences()
    # brute-force pessimistic ranks of a few rows agree with the vectorised ones
    p = pl.next_item_probs(draw, seq[:5, -2])
    brute = [int((p[i] >= p[i, seq[i, -1]]).sum()) for i in range(5)]
    assert list(pl.pessimistic_ranks(p, seq[:5, -1])) == brute
    # the true law beats ranking by popularity alone, and a followed link is always top 5
    pop_only = pl.rank_metrics(pl.pessimistic_ranks(
        np.tile(draw.popularity, (c.n_users, 1)), seq[:, -1]))
    assert ceil["ndcg@10"] > pop_only["ndcg@10"] + 0.2
    followed_last = draw.followed.reshape(c.n_users, -1)[:, -1]
    assert ceil["hr@5"] >= followed_last.mean() - 1e-9
    assert 0 < ceil["ndcg@10"] <= ceil["hr@10"] <= 1
    # restricting the candidates can only improve ranks; masking the target makes it miss
    fewer = pl.ceiling(draw, seq[:, -2], seq[:, -1], candidates=np.unique(seq))
    assert fewer["mrr"] >= ceil["mrr"]
    masked = np.zeros((c.n_users, c.n_items), dtype=bool)
    masked[np.arange(c.n_users), seq[:, -1]] = True
    assert pl.ceiling(draw, seq[:, -2], seq[:, -1], masked=masked)["hr@20"] == 0.0


def test_saved_dataset_round_trips(draw: pl.Planted, store) -> None:
    info = pl.save(store, "planted", draw)
    assert info.rows == len(draw.item)
    assert info.users == draw.config.n_users
    df = store.events("planted")
    first = df[df[schema.USER] == "u0"]
    assert pl.item_index(first[schema.ITEM].to_numpy()).tolist() == draw.sequences()[0].tolist()
    gaps = first[schema.TS].diff().dt.total_seconds().to_numpy()[1:]
    assert np.allclose(gaps, np.diff(draw.ts[:draw.config.events_per_user]), atol=1e-3)


def test_learnable_bound_lies_between_popularity_and_the_ceiling() -> None:
    p = pl.generate(pl.PlantedConfig(n_users=400, events_per_user=30, n_items=120, seed=3))
    seq = p.sequences()
    prev, target = seq[:, -2], seq[:, -1]
    ceil = pl.ceiling(p, prev, target)["ndcg@10"]
    bound = pl.learnable_bound(p, seq[:, :-3].ravel(), seq[:, 1:-2].ravel(), prev, target)
    # with no transitions at all the posterior is flat: popularity order, the item itself last
    empty = np.zeros(0, dtype=np.int64)
    flat = pl.learnable_bound(p, empty, empty, prev, target)["ndcg@10"]
    pop_scores = np.tile(p.popularity, (len(prev), 1))
    pop_scores[np.arange(len(prev)), prev] = -np.inf
    popular = pl.rank_metrics(pl.pessimistic_ranks(pop_scores, target))["ndcg@10"]
    assert flat == pytest.approx(popular)
    assert popular + 0.1 < bound["ndcg@10"] <= ceil + 1e-9
    # about 140 transitions per item here: the posterior finds nearly every successor
    assert bound["ndcg@10"] > 0.97 * ceil


def _expected_ndcg10(scores: np.ndarray, probs: np.ndarray) -> float:
    """Mean NDCG@10 of each row's top 10 under the true next-item distribution ``probs``."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return float((np.take_along_axis(probs, top, 1) / np.log2(np.arange(2, 12))).sum(1).mean())


def test_markov_link_reading_gets_closer_to_the_planted_law(store) -> None:
    """The issue-17 shape, smaller: the links + popularity reading of the transition counts
    ranks nearer the generator than additive smoothing at its best pseudo-count, judged by
    the expected NDCG@10 under the true next-item law (no sampling noise of test targets)."""
    import torch
    from trailscope.models.data.dataset import build_dataset
    from trailscope.models.recommenders.markov import MarkovRec

    p = pl.generate(pl.PlantedConfig(n_users=600, events_per_user=40, n_items=400,
                                     n_successors=7, follow_prob=0.6, seed=5))
    pl.save(store, "planted", p)
    ds = build_dataset(store, "planted", "leave-last")
    train = list(ds.batches("train", 4096))
    test = next(ds.batches("test", 4096))
    ours = pl.item_index(np.asarray(ds.meta.item_ids))          # model index i+1 -> planted
    prev = ours[test.item_seq[:, -1].numpy() - 1]
    truth = pl.next_item_probs(p, prev)[:, ours]                 # columns in model order
    ceiling = _expected_ndcg10(truth, truth)

    def expected(**config) -> float:
        m = MarkovRec(ds.meta, MarkovRec.Config(tune=False, **config))
        m.fit_counts(train)
        with torch.no_grad():
            return _expected_ndcg10(m.score(test)[:, 1:].numpy(), truth)

    additive = max(expected(min_transitions=b) for b in MarkovRec.GRID["min_transitions"])
    links = expected(link_share=0.5, link_count=10.0)
    assert additive < links <= ceiling
    assert links - additive > 0.01 * ceiling

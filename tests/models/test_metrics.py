"""Ranking metrics computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from trailscope.models.training import metrics as mt

NEG = float("-inf")


def test_rank_is_pessimistic_on_ties():
    scores = torch.tensor([[NEG, 1.0, 3.0, 3.0, 2.0],
                           [NEG, 5.0, 5.0, 5.0, 5.0],
                           [NEG, 0.5, 0.1, 0.9, 0.2]])
    target = torch.tensor([2, 1, 3])
    # row 0: item 2 ties with item 3 -> below it (rank 2); row 1: four-way tie -> rank 4
    assert mt.full_ranks(scores, target).tolist() == [2, 4, 1]
    # item 4 (score 2.0) is below both 3.0s
    assert mt.full_ranks(scores[:1], torch.tensor([4])).item() == 3


def test_nan_scores_rank_last():
    scores = torch.tensor([[NEG, float("nan"), 1.0, 0.5]])
    assert mt.full_ranks(scores, torch.tensor([1])).item() == 4  # NaN = -inf, ties padding
    assert mt.full_ranks(scores, torch.tensor([3])).item() == 2


def test_rank_three_by_hand():
    ranks = np.array([3])
    assert mt.ndcg(ranks, 10) == pytest.approx(1 / math.log2(4)) == pytest.approx(0.5)
    assert mt.hit_rate(ranks, 1) == 0.0
    assert mt.hit_rate(ranks, 3) == 1.0
    assert mt.mrr(ranks) == pytest.approx(1 / 3)


def test_means_and_cutoffs():
    ranks = np.array([1, 2, 11, 100])
    assert mt.hit_rate(ranks, 1) == 0.25
    assert mt.hit_rate(ranks, 10) == 0.5
    assert mt.hit_rate(ranks, 20) == 0.75
    assert mt.ndcg(ranks, 10) == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert mt.ndcg(ranks, 20) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(12)) / 4)
    assert mt.mrr(ranks) == pytest.approx((1 + 0.5 + 1 / 11 + 1 / 100) / 4)
    assert math.isnan(mt.ndcg(np.array([]), 10))


def test_coverage_and_popularity():
    top = np.array([[1, 2, 5], [2, 3, 5]])
    assert mt.coverage(top, n_items=6, k=2) == pytest.approx(3 / 6)   # items 1, 2, 3
    assert mt.coverage(top, n_items=6, k=3) == pytest.approx(4 / 6)
    pop = np.array([0, 10, 20, 30, 40, 50, 60])                      # index 0 = padding
    assert mt.mean_popularity(top, pop, k=2) == pytest.approx((10 + 20 + 20 + 30) / 4)


def test_precision_recall_f1_by_hand():
    top = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 1, 2, 3]])
    truth = [{1, 9}, {6}, set()]                 # third user has nothing to recall: skipped
    res = mt.precision_recall_f1(top, truth, k=2)
    # user 1: hits {1} -> p 1/2, r 1/2, f1 1/2; user 2: hits {6} -> p 1/2, r 1, f1 2/3
    assert res["users"] == 2
    assert res["precision@2"] == pytest.approx(0.5)
    assert res["recall@2"] == pytest.approx(0.75)
    assert res["f1@2"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_summarize_keys():
    out = mt.summarize(np.array([1, 4]), np.array([[1, 2], [3, 1]]), np.arange(5), 4)
    for key in ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr",
                "coverage@10", "popularity@10"):
        assert key in out
    assert out["n"] == 2 and out["hr@1"] == 0.5 and out["coverage@10"] == 0.75


def test_empty_slots_are_ignored():
    top = np.array([[3, 0], [0, 0]])
    pop = np.array([0, 10, 20, 30])
    assert mt.mean_popularity(top, pop, k=2) == 30.0
    assert mt.coverage(top, n_items=3, k=2) == pytest.approx(1 / 3)
    assert math.isnan(mt.mean_popularity(np.zeros((1, 2), dtype=int), pop))

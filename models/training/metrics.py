"""Ranking metrics over ALL items (no sampled negatives).

Ranks are 1-based and **pessimistic** on ties: a target tied with other items is ranked
below all of them (``rank = #items scoring higher + #items scoring equal, itself included``).
A model that gives every item the same score therefore gets the worst rank, never a lucky
one; the evaluator and these functions use this rule everywhere.

HR@K (= Acc@K in next-POI papers) = share of targets ranked <= K;
NDCG@K = mean of ``1 / log2(rank + 1)`` for ranks <= K (one relevant item, so IDCG = 1);
MRR = mean of ``1 / rank`` over the full ranking (no cut-off).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

HR_KS = (1, 5, 10, 20)
NDCG_KS = (5, 10, 20)
TOP_K = 20  # how many recommendations the evaluator keeps per example


def full_ranks(scores: torch.Tensor, target: torch.Tensor,
               clean_nan: bool = True) -> torch.Tensor:
    """Pessimistic 1-based rank of ``target`` (B,) in ``scores`` (B, n_items + 1).

    NaN scores count as -inf (``clean_nan=False`` when the caller already replaced them);
    column 0 (padding) must be -inf so it only counts against a target that is -inf itself.
    """
    s = scores.float()
    if clean_nan:
        s = s.masked_fill(torch.isnan(s), float("-inf"))  # nan_to_num would make -inf finite
    t = s.gather(1, target.view(-1, 1))                                 # (B, 1)
    return (s >= t).sum(1)                    # higher + tied (itself included): (B,) long


def hit_rate(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    return float((ranks <= k).mean()) if ranks.size else float("nan")


def ndcg_per_example(ranks: np.ndarray, k: int) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def ndcg(ranks: np.ndarray, k: int) -> float:
    return float(ndcg_per_example(ranks, k).mean()) if np.size(ranks) else float("nan")


def mrr(ranks: np.ndarray) -> float:
    ranks = np.asarray(ranks, dtype=np.float64)
    return float((1.0 / ranks).mean()) if ranks.size else float("nan")


def coverage(top: np.ndarray, n_items: int, k: int = 10) -> float:
    """Share of the catalogue that appears in at least one top-``k`` list."""
    if top.size == 0:
        return float("nan")
    items = np.unique(top[:, :k])
    return float(np.count_nonzero(items > 0) / n_items)


def mean_popularity(top: np.ndarray, popularity: np.ndarray, k: int = 10) -> float:
    """Mean training count of the recommended top-``k`` items (popularity bias).

    ``popularity`` is indexed by item index; entries 0 in ``top`` (empty slots) are ignored.
    """
    top = top[:, :k]
    real = top > 0                      # 0 marks an empty slot (everything else masked)
    if not real.any():
        return float("nan")
    return float(np.asarray(popularity, dtype=np.float64)[top[real]].mean())


def precision_recall_f1(top: np.ndarray, truth: Sequence[set[int]] | Sequence[np.ndarray],
                        k: int) -> dict[str, float]:
    """Set metrics of top-``k`` lists against each user's set of future items (mean over users).

    Users with an empty truth set are skipped (nothing to recall).
    """
    p, r, f = [], [], []
    for row, items in zip(top[:, :k], truth, strict=True):
        items = set(int(i) for i in items)
        if not items:
            continue
        hits = len(items.intersection(int(i) for i in row))
        prec, rec = hits / k, hits / len(items)
        p.append(prec)
        r.append(rec)
        f.append(0.0 if hits == 0 else 2 * prec * rec / (prec + rec))
    if not p:
        return {f"precision@{k}": float("nan"), f"recall@{k}": float("nan"),
                f"f1@{k}": float("nan"), "users": 0}
    return {f"precision@{k}": float(np.mean(p)), f"recall@{k}": float(np.mean(r)),
            f"f1@{k}": float(np.mean(f)), "users": len(p)}


def summarize(ranks: np.ndarray, top: np.ndarray, popularity: np.ndarray,
              n_items: int) -> dict[str, float]:
    """All ranking metrics of one set of examples as a flat dict (keys like ``ndcg@10``)."""
    ranks = np.asarray(ranks)
    out: dict[str, float] = {"n": int(ranks.size)}
    for k in HR_KS:
        out[f"hr@{k}"] = hit_rate(ranks, k)
    for k in NDCG_KS:
        out[f"ndcg@{k}"] = ndcg(ranks, k)
    out["mrr"] = mrr(ranks)
    out["coverage@10"] = coverage(top, n_items, 10)
    out["popularity@10"] = mean_popularity(top, popularity, 10)
    return out

"""The counterfactual deletion test and the faithfulness figure built from it.

Remove the k past events an explanation ranks highest, re-score, and see how far the item
falls in the ranking; compare with removing k events at random (and, for transformers, the k
events with the highest attention). A faithful explanation names the events the score
really rests on, so deleting them costs the item more ranks than deleting random ones.
Averaged over many users this is the faithfulness figure of an explanation method.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ..base import Batch, Recommender
from .types import real_positions


def remove_events(batch: Batch, drops: list[np.ndarray]) -> Batch:
    """One row per entry of ``drops``: row 0's history without those events (0..n-1).

    The kept events are left-padded again, ``target_seq`` is rebuilt from the kept order
    and ``len`` updated; the target slot (time, hour, weekday) is unchanged.
    """
    pos = real_positions(batch)
    n, L = len(pos), batch.item_seq.shape[1]
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in Batch.SEQ_FIELDS}
    lens = []
    for drop in drops:
        keep = np.setdiff1d(np.arange(n), np.asarray(drop, dtype=np.int64))
        cols = torch.as_tensor(pos[keep], dtype=torch.long)
        m = len(keep)
        for k in rows:
            src = getattr(batch, k)[0]
            out = torch.zeros_like(src)
            if m:
                if k == "target_seq":
                    items = batch.item_seq[0, cols]
                    out[L - m:] = torch.cat([items[1:], items.new_zeros(1)])
                else:
                    out[L - m:] = src[cols]
            rows[k].append(out)
        lens.append(m)
    out_batch = batch.expand(len(drops)).map(torch.clone)  # the per-row fields, as they are
    for k, v in rows.items():
        setattr(out_batch, k, torch.stack(v))
    out_batch.len = torch.tensor(lens, dtype=torch.long, device=batch.item_seq.device)
    return out_batch


def ranks(scores: torch.Tensor, item: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of ``item`` in each row of (R, n_items + 1) scores (ties count against
    it), over all items but padding and ``exclude`` (the item itself is never excluded)."""
    s = scores.detach().float().clone()
    s[:, 0] = float("-inf")
    if exclude is not None and len(exclude):
        ex = torch.as_tensor(np.setdiff1d(exclude, [item]), dtype=torch.long, device=s.device)
        s[:, ex] = float("-inf")
    s = torch.nan_to_num(s, nan=float("-inf"))
    mine = s[:, item:item + 1]
    return ((s > mine).sum(1) + 1).cpu().numpy().astype(np.int64)


def _top(importance: np.ndarray, k: int) -> np.ndarray:
    # stable sort: ties go to the more recent event (deterministic)
    order = np.argsort(-importance[::-1], kind="stable")
    return np.sort(len(importance) - 1 - order[:k])


@torch.no_grad()
def deletion_test(model: Recommender, batch: Batch, item: int, importance: np.ndarray, *,
                  k: int = 3, n_random: int = 8, exclude: np.ndarray | None = None,
                  seed: int = 0, attention: np.ndarray | None = None) -> dict[str, Any]:
    """Rank of ``item`` before and after deleting the ``k`` most important events
    (``importance``, one value per event, oldest first), vs. ``n_random`` random draws of
    ``k`` events (mean) and, when given, the ``k`` events with the most ``attention``.

    Rank drops are positive when the item falls. ``k`` is capped at n_events - 1.
    """
    n = len(real_positions(batch))
    if len(importance) != n:
        raise ValueError(f"importance has {len(importance)} values for {n} events")
    k = max(0, min(int(k), n - 1))
    rng = np.random.default_rng(seed)
    drops = [np.zeros(0, dtype=np.int64), _top(np.asarray(importance, dtype=float), k)]
    if attention is not None:
        drops.append(_top(np.asarray(attention, dtype=float), k))
    randoms = [np.sort(rng.choice(n, size=k, replace=False)) for _ in range(n_random)]
    model.eval()
    scores = model.score(remove_events(batch, drops + randoms)).float()
    r = ranks(scores, item, exclude)
    s = scores[:, item].cpu().numpy().astype(float)
    out: dict[str, Any] = {
        "k": k, "n_events": n, "rank_before": int(r[0]), "score_before": float(s[0]),
        "removed": [int(i) for i in drops[1]],
        "rank_after_top": int(r[1]), "score_after_top": float(s[1]),
        "rank_drop_top": int(r[1] - r[0]),
    }
    j = 2
    if attention is not None:
        out.update(removed_attention=[int(i) for i in drops[2]], rank_after_attention=int(r[2]),
                   score_after_attention=float(s[2]), rank_drop_attention=int(r[2] - r[0]))
        j = 3
    if n_random:
        out.update(rank_after_random=float(r[j:].mean()), score_after_random=float(s[j:].mean()),
                   rank_drop_random=float(r[j:].mean() - r[0]), n_random=n_random)
    return out


def faithfulness(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per method: users, mean rank drop, median rank drop, mean score drop and the share of
    users whose item fell further than under random deletion, from ``deletion_test`` dicts."""
    recs = []
    for r in rows:
        for method in ("top", "attention", "random"):
            if f"rank_drop_{method}" in r:
                recs.append({"method": method, "rank_drop": r[f"rank_drop_{method}"],
                             "score_drop": r["score_before"] - r[f"score_after_{method}"],
                             "beats_random": (r[f"rank_drop_{method}"]
                                              > r.get("rank_drop_random", np.inf))})
    df = pd.DataFrame(recs, columns=["method", "rank_drop", "score_drop", "beats_random"])
    if df.empty:
        return pd.DataFrame(columns=["method", "users", "mean_rank_drop", "median_rank_drop",
                                     "mean_score_drop", "share_beats_random"])
    out = df.groupby("method", sort=False).agg(
        users=("rank_drop", "size"), mean_rank_drop=("rank_drop", "mean"),
        median_rank_drop=("rank_drop", "median"), mean_score_drop=("score_drop", "mean"),
        share_beats_random=("beats_random", "mean")).reset_index()
    out["method"] = out["method"].replace({"top": "integrated-gradients"})
    return out

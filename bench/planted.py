"""The planted-signal data set of /work/shared/PEERS.md, with its own known ceiling.

Users x events over a catalogue of items; each item has ``n_successors`` fixed random
successors. The next item is one of the current item's successors (uniformly) with
probability ``follow_prob``, else an item drawn from a Zipf(``zipf_a``) popularity law over a
random popularity order of the catalogue. Gaps between events are exponential with a mean of
``mean_gap_s`` (about an hour). A user's first item comes from the popularity law.

The generator knows the true next-item distribution
``p(j | prev) = follow_prob * [j in successors(prev)] / n_successors + (1 - follow_prob) *
zipf(j)``; ranking all items by it is the best any model can do on average, so its
NDCG@10 / HR@10 on the leave-last test targets is the ceiling a sequence model is measured
against (``ceiling``; ties ranked pessimistically, as in models.metrics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from trailscope.analytics import schema
from trailscope.analytics.store import DatasetInfo, Store

START = np.datetime64("2024-01-01T00:00:00", "s")
START_SPREAD_DAYS = 30.0  # users start at a uniform time in the first month
KS_HR = (1, 5, 10, 20)
KS_NDCG = (5, 10, 20)


@dataclass(frozen=True)
class PlantedConfig:
    n_users: int = 2000
    events_per_user: int = 50
    n_items: int = 3000
    n_successors: int = 5
    follow_prob: float = 0.7
    zipf_a: float = 1.3
    mean_gap_s: float = 3600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_items <= self.n_successors:
            raise ValueError(f"n_items ({self.n_items}) must exceed n_successors "
                             f"({self.n_successors}): successors are distinct other items")
        if not 0.0 <= self.follow_prob <= 1.0:
            raise ValueError(f"follow_prob must lie in [0, 1], got {self.follow_prob}")
        if self.events_per_user < 2 or self.n_users < 1:
            raise ValueError("need at least 1 user and 2 events per user for a next-item task")


@dataclass(frozen=True)
class Planted:
    """One draw. Items are 0-based here; ``item_id`` strings are ``i<index>``."""

    config: PlantedConfig
    successors: np.ndarray   # (n_items, n_successors) int64, distinct, never the item itself
    popularity: np.ndarray   # (n_items,) float64 Zipf probabilities, sum 1
    user: np.ndarray         # (N,) int64 0-based user of each event, sorted by user then time
    item: np.ndarray         # (N,) int64 0-based item
    ts: np.ndarray           # (N,) float64 seconds since START
    followed: np.ndarray     # (N,) bool: the event followed a successor link (False for firsts)

    def sequences(self) -> np.ndarray:
        """(n_users, events_per_user) item matrix (every user has the same length)."""
        c = self.config
        return self.item.reshape(c.n_users, c.events_per_user)


def zipf_probs(n_items: int, a: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf(a) probabilities over a random popularity order of the items."""
    rank = rng.permutation(n_items) + 1                       # item -> popularity rank (1 = top)
    w = rank.astype(np.float64) ** -a
    return w / w.sum()


def random_successors(n_items: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n_items, k) distinct successors per item, never the item itself."""
    # draw k of the other n_items - 1 items: sample from 0..n-2 and skip over the item itself
    keys = rng.random((n_items, n_items - 1))
    pick = np.argpartition(keys, k, axis=1)[:, :k]            # k distinct values in 0..n-2
    own = np.arange(n_items)[:, None]
    return (pick + (pick >= own)).astype(np.int64)


def generate(config: PlantedConfig | None = None) -> Planted:
    """Draw a planted data set (vectorised over users, one step at a time)."""
    c = config or PlantedConfig()
    rng = np.random.default_rng(c.seed)
    pop = zipf_probs(c.n_items, c.zipf_a, rng)
    succ = random_successors(c.n_items, c.n_successors, rng)
    U, T = c.n_users, c.events_per_user
    items = np.empty((U, T), dtype=np.int64)
    followed = np.zeros((U, T), dtype=bool)
    items[:, 0] = rng.choice(c.n_items, size=U, p=pop)
    for t in range(1, T):
        follow = rng.random(U) < c.follow_prob
        link = succ[items[:, t - 1], rng.integers(0, c.n_successors, size=U)]
        popular = rng.choice(c.n_items, size=U, p=pop)
        items[:, t] = np.where(follow, link, popular)
        followed[:, t] = follow
    start = rng.random(U) * START_SPREAD_DAYS * 86400.0
    gaps = rng.exponential(c.mean_gap_s, size=(U, T - 1))
    ts = start[:, None] + np.concatenate([np.zeros((U, 1)), np.cumsum(gaps, axis=1)], axis=1)
    user = np.repeat(np.arange(U, dtype=np.int64), T)
    return Planted(c, succ, pop, user, items.reshape(-1), ts.reshape(-1), followed.reshape(-1))


def item_label(index: np.ndarray | int) -> np.ndarray:
    """External item ids (``i17``) of 0-based item indices."""
    return np.char.add("i", np.asarray(index).astype(str))


def item_index(labels: np.ndarray | list[str]) -> np.ndarray:
    """0-based item indices of external ids made by ``item_label``."""
    return np.array([int(s[1:]) for s in np.asarray(labels, dtype=object)], dtype=np.int64)


def to_frame(p: Planted) -> pd.DataFrame:
    """The draw as canonical events (analytics.schema column names and dtypes)."""
    ts = START + np.round(p.ts * 1e6).astype("timedelta64[us]")
    df = pd.DataFrame({
        schema.USER: np.char.add("u", p.user.astype(str)),
        schema.ITEM: item_label(p.item),
        schema.TS: ts.astype("datetime64[us]"),
        schema.LAT: np.nan,
        schema.LON: np.nan,
        schema.BEHAVIOR: schema.DEFAULT_BEHAVIOR,
        schema.CATEGORY: None,
        schema.VALUE: np.nan,
        schema.TZ_OFFSET: pd.array([0] * len(p.item), dtype="Int32"),
    })
    return df.astype(schema.PANDAS_DTYPES)[list(schema.COLUMNS)]


def save(store: Store, name: str, p: Planted, replace: bool = False) -> DatasetInfo:
    """Store the draw as dataset ``name`` through ``Store.save_dataset`` (atomic)."""
    df = to_frame(p)
    cur = store.cursor()
    view = "planted_events_view"
    try:
        cur.register(view, df)
        cols = ", ".join(f"CAST({col} AS {schema.DUCKDB_TYPES[col]}) AS {col}"
                         for col in schema.COLUMNS)
        return store.save_dataset(name, f"SELECT {cols} FROM {view}", source="bench.planted",
                                  fmt="planted", report={"generator": asdict(p.config)},
                                  replace=replace, con=cur)
    finally:
        cur.unregister(view)
        cur.close()


def next_item_probs(p: Planted, prev: np.ndarray) -> np.ndarray:
    """(B, n_items) the true distribution of the item after each 0-based item in ``prev``."""
    c = p.config
    prev = np.asarray(prev, dtype=np.int64)
    out = np.tile((1.0 - c.follow_prob) * p.popularity, (len(prev), 1))
    rows = np.repeat(np.arange(len(prev)), c.n_successors)
    np.add.at(out, (rows, p.successors[prev].reshape(-1)), c.follow_prob / c.n_successors)
    return out


def pessimistic_ranks(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """1-based rank of each target: items scoring higher or equal, itself included."""
    t = scores[np.arange(len(target)), target][:, None]
    return (scores >= t).sum(axis=1)


def ceiling(p: Planted, prev: np.ndarray, target: np.ndarray,
            candidates: np.ndarray | None = None, masked: np.ndarray | None = None,
            chunk: int = 512) -> dict[str, float]:
    """Metrics of ranking items by the true distribution given the previous item.

    ``candidates`` (0-based items) restricts the ranking to the items a data set kept (the
    others are not rankable there); ``masked`` is a (B, n_items) bool array of items the
    evaluator removes per row (already-seen items when it excludes them).
    """
    prev, target = np.asarray(prev, np.int64), np.asarray(target, np.int64)
    if prev.shape != target.shape:
        raise ValueError(f"prev and target must have the same shape, got {prev.shape} and "
                         f"{target.shape}")
    keep = np.ones(p.config.n_items, dtype=bool)
    if candidates is not None:
        keep[:] = False
        keep[np.asarray(candidates, np.int64)] = True
    ranks = []
    for s in range(0, len(prev), chunk):
        probs = next_item_probs(p, prev[s:s + chunk])
        probs[:, ~keep] = -np.inf
        if masked is not None:
            probs[masked[s:s + chunk]] = -np.inf
        ranks.append(pessimistic_ranks(probs, target[s:s + chunk]))
    r = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    return rank_metrics(r)


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """HR@K, NDCG@K and MRR of 1-based ranks (the formulas of models.metrics)."""
    r = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {"n": int(r.size)}
    for k in KS_HR:
        out[f"hr@{k}"] = float((r <= k).mean()) if r.size else float("nan")
    for k in KS_NDCG:
        out[f"ndcg@{k}"] = (float(np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0).mean())
                            if r.size else float("nan"))
    out["mrr"] = float((1.0 / r).mean()) if r.size else float("nan")
    return out


def learnable_bound(p: Planted, train_prev: np.ndarray, train_next: np.ndarray,
                    prev: np.ndarray, target: np.ndarray,
                    candidates: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of the Bayes posterior ranking from the training transitions alone.

    The ceiling knows each item's true successors; a model only sees transitions. Knowing the
    generator's law (follow probability, successor count, the popularity of every item), the
    posterior that ``j`` is a successor of ``i`` after ``c_ij`` of ``n_i`` observed transitions
    is, treating items independently with Poisson counts, prior odds times
    ``((f + g z_j) / (g z_j)) ** c_ij * exp(-n_i f)`` with ``f = follow_prob / n_successors``
    and ``g = 1 - follow_prob``; ranking by ``f * posterior + g * z_j`` is about the best any
    model can do from this data (it is also given the true popularity, which models are not).
    ``candidates`` restricts the ranking as in ``ceiling``.
    """
    from scipy.special import expit

    c = p.config
    n_items = c.n_items
    counts: dict[int, dict[int, int]] = {}
    for a, b in zip(np.asarray(train_prev).tolist(), np.asarray(train_next).tolist(),
                    strict=True):
        row = counts.setdefault(a, {})
        row[b] = row.get(b, 0) + 1
    f, g, z = c.follow_prob / c.n_successors, 1.0 - c.follow_prob, p.popularity
    log_prior = np.log(c.n_successors / (n_items - 1 - c.n_successors))
    log_lr = np.log((f + g * z) / (g * z))
    base = g * z
    if candidates is not None:
        base = np.full(n_items, -np.inf)
        base[np.asarray(candidates, np.int64)] = (g * z)[np.asarray(candidates, np.int64)]
    ranks = []
    for i, t in zip(np.asarray(prev).tolist(), np.asarray(target).tolist(), strict=True):
        row = counts.get(i, {})
        post = np.zeros(n_items)
        n = sum(row.values())
        for j, k in row.items():
            post[j] = expit(log_prior + k * log_lr[j] - n * f)
        score = f * post + base
        score[i] = -np.inf  # successors are never the item itself
        ranks.append(int((score >= score[t]).sum()))
    return rank_metrics(np.asarray(ranks))


def leave_last_ceiling(p: Planted) -> dict[str, float]:
    """The ceiling on the raw draw: each user's last item given the one before it."""
    seq = p.sequences()
    return ceiling(p, seq[:, -2], seq[:, -1])

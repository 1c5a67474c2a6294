"""Runs of equal keys in sorted numpy arrays: what the summary build's numpy steps (interest
drift, per-user mobility) group by instead of hashing, since the sorted event table gives
its rows in (user, time) order; counts per key (rows, distinct users, their sums over
batches of whole users) and the lookup arrays the batch passes index by integer id."""

from __future__ import annotations

import numpy as np


def run_starts(*keys: np.ndarray) -> np.ndarray:
    """Where a run of equal ``keys`` (rows compared on all of them together) starts."""
    new = np.zeros(len(keys[0]), bool)
    new[:1] = True
    for k in keys:
        new[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(new)


def run_ids(n: int, starts: np.ndarray) -> np.ndarray:
    """Each of ``n`` rows' run number (0, 1, ...) given the runs' ``starts``."""
    flags = np.zeros(n, bool)
    flags[starts] = True
    return np.cumsum(flags) - 1


def in_order(*keys: np.ndarray) -> bool:
    """Whether the rows are in non-decreasing order of ``keys`` (compared in turn)."""
    if len(keys[0]) < 2:
        return True
    after = np.zeros(len(keys[0]) - 1, bool)
    tied = np.ones(len(keys[0]) - 1, bool)
    for k in keys:
        after |= tied & (k[1:] > k[:-1])
        tied &= k[1:] == k[:-1]
    return bool((after | tied).all())


def value_counts(key: np.ndarray, weights: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct ``key`` values in order, rows of each, the sum of ``weights`` of each, zeros
    without weights): a dense count, no sort, where the values lie close together."""
    lo = int(key.min()) if len(key) else 0
    span = int(key.max()) - lo + 1 if len(key) else 0
    if span <= max(4 * len(key), 1 << 20):
        rows = np.bincount(key - lo, minlength=span)
        keys = np.flatnonzero(rows)
        return (keys + lo, rows[keys], np.zeros(len(keys)) if weights is None else
                np.bincount(key - lo, weights, span)[keys])
    keys, inv = np.unique(key, return_inverse=True)
    return (keys, np.bincount(inv, minlength=len(keys)), np.zeros(len(keys))
            if weights is None else np.bincount(inv, weights, len(keys)))


#: Up to this many (user, key) cells :func:`distinct_per_key` flags them in a dense array
#: (one byte each) instead of sorting the pairs.
DENSE_CELLS = 1 << 25


def distinct_per_key(user: np.ndarray, key: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct ``key`` values in order, rows of each, distinct ``user`` values of each):
    a flag per (user, key) where they are few (``DENSE_CELLS``), else one stable sort of the
    (key, user) pairs, the runs of a key its rows, the runs of a pair within it its distinct
    users. Where the rows are a batch of whole users, the distinct
    users over several batches are the sum of each batch's (:func:`sum_per_key`)."""
    if not len(key):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    k0, u0 = int(key.min()), int(user.min())
    users = int(user.max()) - u0 + 1
    k = key.astype(np.int64) - k0
    u = user.astype(np.int64) - u0
    span = int(k.max()) + 1
    if users * span <= max(8 * len(k), DENSE_CELLS):  # a flag per (user, key): no sort
        seen = np.zeros(users * span, bool)
        seen[u * span + k] = True
        rows = np.bincount(k, minlength=span)
        found = np.flatnonzero(rows)
        return found + k0, rows[found], seen.reshape(users, span).sum(axis=0)[found]
    if span * users < 1 << 62:
        pair = k * users + u
        pair.sort(kind="stable")
        k, u = pair // users, pair % users
    else:  # too wide to pack in one integer: sort the two columns
        order = np.lexsort((u, k))
        k, u = k[order], u[order]
    starts = run_starts(k)
    new = np.zeros(len(k), np.int64)
    new[run_starts(k, u)] = 1
    return k[starts] + k0, np.diff(np.r_[starts, len(k)]), np.add.reduceat(new, starts)


def sum_per_key(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Several (keys in order, values, ...) results, as :func:`distinct_per_key` gives,
    added up by key: (keys in order, sums, ...), integer values staying integers."""
    width = len(parts[0]) if parts else 3
    keys = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    if not len(keys):
        return (keys.astype(np.int64), *(np.zeros(0, np.int64) for _ in range(width - 1)))
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = run_starts(keys)
    return (keys[starts], *(np.add.reduceat(np.concatenate([p[i] for p in parts])[order],
                                            starts) for i in range(1, width)))


def index_lookup(ids: np.ndarray, at: np.ndarray, values: np.ndarray,
                 missing: float | int) -> np.ndarray:
    """An array to index by any of ``ids`` (non-negative integers) or -1: ``values`` at the
    ids ``at``, ``missing`` at the others and at -1 (one slot past the last id)."""
    ids, at = np.asarray(ids, np.int64), np.asarray(at, np.int64)
    out = np.full(int(ids.max()) + 2 if len(ids) else 1, missing,
                  np.float64 if isinstance(missing, float) else np.int64)
    out[at] = values
    return out

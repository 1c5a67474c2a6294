"""Passes over a set's sorted event table in batches of whole users.

``ev`` is sorted by user, so the rows of a range of ``user_idx`` are a few consecutive row
groups: a batch reads them with a range condition,
numpy computes on it (two batches at once in threads: numpy releases the GIL, so both cores
work) while the next one is read, and what each batch gives is consumed in batch order on
the reading thread (the build inserts it on its own cursor, inside its transaction).

Since no user spans two batches, a per-user question needs no merge, and so does a count of
distinct users: the distinct users of a key over the whole set are the sum over the batches
of each batch's distinct users of that key (:func:`keyed_user_counts`). That is how the
densities, ``places_items``, the zones' users and activity and the flows count their
distinct users (``runs.distinct_per_key`` per batch: a flag per (user, key), or one sort of
the pairs), where DuckDB's ``count(DISTINCT user)`` per group over 100M events took 10 s a
query.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from ..runs import distinct_per_key, sum_per_key
from .tables import Rollup

T = TypeVar("T")

#: Events per batch of :func:`keyed_user_counts` (about 40 MB of numpy per key set).
COUNT_BATCH = 2_000_000


def user_batches(ru: Rollup, events: int) -> list[tuple[int, int]]:
    """(first, last user_idx) of consecutive batches of whole users of about ``events``
    events each."""
    counts = ru.df(f"SELECT events FROM {ru.t('users')} ORDER BY user_idx")["events"].to_numpy()
    if not len(counts):
        return []
    batch = np.cumsum(counts) // max(int(events), 1)
    starts = np.flatnonzero(np.r_[True, batch[1:] != batch[:-1]])
    ends = np.r_[starts[1:] - 1, len(batch) - 1]
    return [(int(lo), int(hi)) for lo, hi in zip(starts, ends, strict=True)]


def map_user_batches(ru: Rollup, events: int, query: str,
                     compute: Callable[[dict[str, np.ndarray]], T],
                     consume: Callable[[T], None]) -> None:
    """``consume(compute(rows))`` for the rows of each batch of whole users (about
    ``events`` events), in batch order. ``query`` reads a batch on ``ru.con``: ``{lo}`` and
    ``{hi}`` are its first and last user_idx; ``compute`` runs in a worker thread (two at
    once), ``consume`` on the calling thread."""
    with ThreadPoolExecutor(2, thread_name_prefix="trailscope-batch") as pool:
        pending: deque[Future[T]] = deque()
        for lo, hi in user_batches(ru, events):
            rows = ru.con.execute(query.format(lo=lo, hi=hi)).fetchnumpy()
            pending.append(pool.submit(compute, rows))
            while len(pending) > 2 or (pending and pending[0].done()):
                consume(pending.popleft().result())
        while pending:
            consume(pending.popleft().result())


def in_row_order(got: dict[str, np.ndarray], order: str = "rowid") -> dict[str, np.ndarray]:
    """A batch's columns in the order of its ``order`` column (the table's row id: DuckDB
    may scan a batch's row groups out of order; the passes that look at each row's
    predecessor put them back)."""
    key = np.asarray(got[order])
    if len(key) > 1 and (np.diff(key) <= 0).any():
        at = np.argsort(key, kind="stable")
        return {k: v[at] for k, v in got.items()}
    return got


def keyed_user_counts(ru: Rollup, query: str,
                      keys: Callable[[dict[str, np.ndarray]], list[Keying]],
                      events: int | None = None) -> list[tuple[np.ndarray, ...]]:
    """Rows and distinct users per key, for several keyings of the same rows at once: per
    keying, (distinct non-negative keys in order, rows of each, distinct users of each).
    ``query`` reads a batch of whole users (``{lo}``/``{hi}``, with a ``user_idx`` column),
    ``keys`` gives each keying's int64 key of every row of it (negative: not counted; a batch
    that reads the ``rowid`` comes in row order: :func:`in_row_order`), or
    (key, [weights, ...]) for a keying whose weights are summed per key too: (keys, rows,
    users, sums, ...)."""
    parts: list[list[tuple[np.ndarray, ...]]] = []

    def compute(got: dict[str, np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        if "rowid" in got:
            got = in_row_order(got)
        user = np.asarray(got["user_idx"])
        out = []
        for keying in keys(got):
            key, weights = keying if isinstance(keying, tuple) else (keying, None)
            keep = key >= 0
            counted = distinct_per_key(user[keep], key[keep])
            if weights is not None:  # summed by each row's position among the keys found
                at = np.searchsorted(counted[0], key[keep])
                counted += tuple(np.bincount(at, w[keep], len(counted[0])) for w in weights)
            out.append(counted)
        return out

    def consume(counts: list[tuple[np.ndarray, ...]]) -> None:
        if not parts:
            parts.extend([] for _ in counts)
        for got, part in zip(counts, parts, strict=True):
            part.append(got)

    map_user_batches(ru, events or COUNT_BATCH, query, compute, consume)
    if not parts:  # no rows: each keying's empty answer
        cols = ru.con.execute(query.format(lo=0, hi=-1)).fetchnumpy()
        return compute(cols)
    return [sum_per_key(p) for p in parts]


#: A keying of :func:`keyed_user_counts`: int64 keys, or keys and weights to sum per key.
Keying = np.ndarray | tuple[np.ndarray, list[np.ndarray]]

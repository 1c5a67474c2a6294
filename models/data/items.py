"""Per-item attributes of indexed events: mean coordinates and most frequent category.

Both data paths use :class:`ItemSums`: the in-memory one adds all events at once, the
store-backed one (models/data/stored.py) a user range at a time; the sums run over the events
in the same order either way, so both give the same attributes to the last bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: an (item, category) pair's key is ``item * PAIR_BASE + category``
PAIR_BASE = 2**31


def runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, how many times each occurs) of an int64 array, by sorting (numpy's
    hash-based ``unique`` is about 50x slower on these keys)."""
    a = np.sort(keys)
    first = np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if len(a) else np.zeros(0, int)
    return a[first], np.diff(np.r_[first, len(a)])


def top_category(pairs: pd.DataFrame, n_items: int) -> np.ndarray:
    """Each item's (index - 1) most frequent category from (item ``i``, category ``c``,
    count ``n``) rows; ties go to the lower category index, 0 where none is known."""
    top = (pairs.sort_values(["i", "n", "c"], ascending=[True, False, True])
           .drop_duplicates("i"))
    cat = np.zeros(n_items + 1, dtype=np.int64)
    cat[top["i"].to_numpy()] = top["c"].to_numpy()
    return cat[1:]


class ItemSums:
    """Coordinate sums and (item, category) counts, added a slice of events at a time."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.n_geo = np.zeros(n_items + 1, dtype=np.int64)
        self.lat = np.zeros(n_items + 1)
        self.lon = np.zeros(n_items + 1)
        self._keys: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []

    def add(self, item: np.ndarray, lat: np.ndarray, lon: np.ndarray, geo: np.ndarray,
            cat: np.ndarray) -> None:
        """Add events (one entry each); ``geo`` marks those with coordinates, ``cat`` 0 is
        an unknown category. ``np.add.at`` adds event by event, in order."""
        at = item[geo]
        self.n_geo += np.bincount(at, minlength=self.n_items + 1)
        np.add.at(self.lat, at, lat[geo].astype(np.float64))
        np.add.at(self.lon, at, lon[geo].astype(np.float64))
        known = cat > 0
        keys, counts = runs(item[known] * PAIR_BASE + cat[known])
        self._keys.append(keys)
        self._counts.append(counts)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per item (index - 1): mean latitude and longitude (NaN without coordinates) and
        most frequent category (0 if none is known)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            lat = self.lat[1:] / self.n_geo[1:]  # 0 / 0 -> NaN where an item has no place
            lon = self.lon[1:] / self.n_geo[1:]
        keys = np.concatenate(self._keys) if self._keys else np.zeros(0, np.int64)
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        # a pair may occur in several slices: sort the keys once, add up each key's counts
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) \
            else np.zeros(0, np.int64)
        n = np.add.reduceat(counts, first) if len(first) else np.zeros(0, np.int64)
        k = keys[first]
        pairs = pd.DataFrame({"i": k // PAIR_BASE, "c": k % PAIR_BASE, "n": n.astype(np.int64)})
        return lat, lon, top_category(pairs, self.n_items)


def item_attributes(item: np.ndarray, lat: np.ndarray, lon: np.ndarray, geo: np.ndarray,
                    cat: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`ItemSums.result` of all these events at once."""
    sums = ItemSums(n_items)
    sums.add(item, lat, lon, geo, cat)
    return sums.result()

"""Runs of equal keys in sorted numpy arrays: what the summary build's numpy steps (interest
drift, per-user mobility) group by instead of hashing, since the sorted event table gives
its rows in (user, time) order."""

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

"""The numpy counting the summary build's batch passes rely on, checked on the NYC check-ins
against pandas: distinct users per key (dense flags, packed sort, two-column sort), their sum
over batches of whole users, and the window of each time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import runs
from trailscope.analytics.schema import ITEM, TS, USER
from trailscope.analytics.spacetime import (
    all_windows,
    window_index,
    window_start,
    window_starts_us,
)


@pytest.fixture(scope="module")
def checkins(nyc_events) -> pd.DataFrame:
    """user, venue and time of every check-in as integers, sorted by user (as ``ev`` is)."""
    ev = nyc_events[2]
    out = pd.DataFrame({"user": pd.factorize(ev[USER], sort=True)[0],
                        "item": pd.factorize(ev[ITEM], sort=True)[0],
                        "us": ev[TS].to_numpy("datetime64[us]").view(np.int64)})
    return out.sort_values(["user", "us"], ignore_index=True)


def _want(df: pd.DataFrame, key: str) -> pd.DataFrame:
    g = df.groupby(key)["user"]
    return pd.DataFrame({"key": g.size().index.to_numpy(np.int64),
                         "rows": g.size().to_numpy(np.int64),
                         "users": g.nunique().to_numpy(np.int64)})


@pytest.mark.parametrize("dense", [1 << 25, 0])
@pytest.mark.parametrize("keying", ["item", "item and week", "huge"])
def test_distinct_users_per_key_equal_pandas(checkins, monkeypatch, dense, keying):
    """Each way of counting (a flag per (user, key) where few, a packed sort, a two-column
    sort for keys too wide to pack) gives pandas' rows and distinct users per key; summed
    over batches of whole users they equal the counts over all."""
    monkeypatch.setattr(runs, "DENSE_CELLS", dense)
    df = checkins.copy()
    week = (df["us"] // (7 * 86_400_000_000)).to_numpy()
    df["k"] = {"item": df["item"].to_numpy(),
               "item and week": (week - week.min()) * (df["item"].max() + 1) + df["item"],
               "huge": df["item"].to_numpy(np.int64) << 40}[keying]
    want = _want(df, "k")
    assert (want["users"] > 1).sum() > 100
    got = runs.distinct_per_key(df["user"].to_numpy(), df["k"].to_numpy())
    pd.testing.assert_frame_equal(pd.DataFrame(dict(zip(want.columns, got, strict=True))),
                                  want)
    cut = np.r_[0, np.searchsorted(df["user"].to_numpy(),
                                   np.linspace(0, df["user"].max(), 7)[1:-1]), len(df)]
    parts = [runs.distinct_per_key(b["user"].to_numpy(), b["k"].to_numpy())
             for b in (df.iloc[lo:hi] for lo, hi in zip(cut[:-1], cut[1:], strict=True))]
    assert len(parts) == 6
    summed = runs.sum_per_key(parts)
    pd.testing.assert_frame_equal(pd.DataFrame(dict(zip(want.columns, summed, strict=True))),
                                  want)
    # counting the batches' distinct users per key without whole users would differ
    shuffled = df.sample(frac=1, random_state=0)
    split = [runs.distinct_per_key(b["user"].to_numpy(), b["k"].to_numpy())
             for b in (shuffled.iloc[i::6] for i in range(6))]
    assert runs.sum_per_key(split)[2].sum() > want["users"].sum()


@pytest.mark.parametrize("window", ["day", "week", "month", "quarter", "hour", "6h", "2D",
                                    "edges"])
@pytest.mark.parametrize("shift_days", [0, -16_000])
def test_window_index_is_window_start(checkins, window, shift_days):
    """Each time's window and its start (found once per day where every window starts at
    midnight) are the ones ``window_start`` gives, the window as an index into
    ``all_windows``; -1 outside custom edges. Also for the same times moved before 1970."""
    us = checkins["us"].to_numpy() + shift_days * 86_400_000_000
    ts = pd.Series(us.view("datetime64[us]"))
    if window == "edges":
        window = list(pd.to_datetime([ts.min() + pd.Timedelta(days=10),
                                      ts.min() + pd.Timedelta(days=40, hours=6),
                                      ts.min() + pd.Timedelta(days=80),
                                      ts.min() + pd.Timedelta(days=120),
                                      ts.max() - pd.Timedelta(days=3)]))
    starts = all_windows(ts.min(), ts.max(), window)
    got = window_index(us, window, starts)
    want = window_start(ts, window)
    inside = want.notna().to_numpy()
    assert (got[~inside] == -1).all() and (got[inside] >= 0).all()
    np.testing.assert_array_equal(starts[got[inside]].to_numpy(),
                                  want[inside].to_numpy("datetime64[us]"))
    assert len(np.unique(got)) > 3
    # the starts themselves (per day where whole days), NaT's int64 outside the edges
    np.testing.assert_array_equal(window_starts_us(us, window),
                                  want.to_numpy("datetime64[us]").view(np.int64))

"""How users' interests move: category shares per user per window, and their drift.

* ``interest_profiles``: per user and window (hour/day/week/month), the share of the user's
  events in each category (counted in the engine; shares in pandas);
* ``interest_drift``: Jensen-Shannon divergence (base 2, so 0 = same mix, 1 = disjoint
  categories) between each user's consecutive active windows;
* ``segment_drift``: drift summarised per activity segment (light / medium / heavy users);
* ``top_changers``: the users whose interests changed most, with what they gained and lost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..engine import EVENTS, PERIOD, USERS, as_table, check_freq, execute, period_start

SHARE = "share"
PREV_PERIOD = "prev_period"
PREV_EVENTS = "prev_events"
JS = "js"
SEGMENT = "segment"
MEAN_JS = "mean_js"
MEDIAN_JS = "median_js"
MAX_JS = "max_js"
PAIRS = "pairs"
GAINED = "gained"      # category whose share grew most from the first to the last window
LOST = "lost"          # category whose share shrank most
SEGMENT_LABELS = ("light", "medium", "heavy")


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions in base 2 (0..1).

    ``p`` and ``q`` are non-negative weights over the same categories; each is normalised to
    sum to 1 first. Raises when either is all zeros.
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape or (p < 0).any() or (q < 0).any() or p.sum() == 0 or q.sum() == 0:
        raise ValueError("js_divergence needs two non-negative, non-empty weight vectors of "
                         "the same length")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    return float(0.5 * _kl_terms(p, m).sum() + 0.5 * _kl_terms(q, m).sum())


def _kl_terms(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """p * log2(p / m) with 0 * log(0) = 0 (m > 0 wherever p > 0 by construction)."""
    out = np.zeros_like(p, dtype=float)
    pos = p > 0
    out[pos] = p[pos] * np.log2(p[pos] / m[pos])
    return out


def interest_profiles(events: Any, freq: str = "month", column: str = schema.CATEGORY,
                      missing: str | None = None,
                      user: str | list[str] | None = None) -> pd.DataFrame:
    """Each user's category mix per window: ``user_id, period, <column>, events, share``.

    Events with a null ``column`` are dropped (unknown interest), unless ``missing`` names a
    label to count them under. ``share`` sums to 1 per (user, period). ``user`` keeps one
    user's rows, or those of a list of users (a profile page need not profile everyone).
    """
    check_freq(freq)
    t = as_table(events)
    if user is not None:
        t = t.filter(t[schema.USER].isin(user_list(user)))
    if column not in t.columns:
        raise ValueError(f"cannot profile by {column!r}: the events have no such column")
    key = t[column]
    if missing is None:
        t = t.filter(key.notnull())
        key = t[column]
    else:
        key = key.fill_null(missing)
    expr = t.group_by(**{schema.USER: t[schema.USER], PERIOD: period_start(t, freq),
                         column: key}).aggregate(**{EVENTS: t.count()})
    out = execute(expr)
    out[PERIOD] = pd.to_datetime(out[PERIOD]).astype("datetime64[us]")
    out[EVENTS] = out[EVENTS].astype("int64")
    out[SHARE] = out[EVENTS] / out.groupby([schema.USER, PERIOD])[EVENTS].transform("sum")
    return out.sort_values([schema.USER, PERIOD, column]).reset_index(drop=True)


def user_list(user: str | list[str]) -> list[str]:
    """One user id or a list of them, as a list of strings."""
    return [str(user)] if isinstance(user, str) else [str(u) for u in user]


def user_interest(events: Any, user: str, freq: str = "month",
                  min_events: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(interest_profiles(events, freq, user=user), drift(events, freq, min_events,
    user=user))``: what the Users page shows for one user."""
    return (interest_profiles(events, freq, user=str(user)),
            drift(events, freq, min_events, user=str(user)))


def drift(events: Any, freq: str = "month", min_events: int = 1,
          user: str | None = None) -> pd.DataFrame:
    """``interest_drift(interest_profiles(events, freq), min_events=min_events)``, for one
    ``user`` or everyone."""
    return interest_drift(interest_profiles(events, freq, user=user), min_events=min_events)


def interest_drift(profiles: pd.DataFrame, column: str = schema.CATEGORY,
                   min_events: int = 1) -> pd.DataFrame:
    """JS divergence between each user's consecutive active windows.

    One row per user and window after their first active one: ``user_id, prev_period,
    period, prev_events, events, js``. Windows with fewer than ``min_events`` categorised
    events are skipped (one check-in per month says little about a mix), so ``prev_period``
    is the user's previous active window, not necessarily the calendar one before.
    """
    totals = profiles.groupby([schema.USER, PERIOD], as_index=False)[EVENTS].sum()
    totals = totals[totals[EVENTS] >= min_events]
    totals = totals.sort_values([schema.USER, PERIOD])
    totals["_rank"] = totals.groupby(schema.USER).cumcount()
    prof = profiles[[schema.USER, PERIOD, column, SHARE]].merge(
        totals[[schema.USER, PERIOD, "_rank"]], on=[schema.USER, PERIOD])
    prev = prof.assign(_rank=prof["_rank"] + 1)  # window k-1's shares, keyed as window k
    pairs = prev.merge(prof, on=[schema.USER, "_rank", column], how="outer",
                       suffixes=("_p", "_q"))
    # keep only ranks where both windows exist
    ranks = totals[[schema.USER, "_rank"]]
    both = ranks.merge(ranks.assign(_rank=ranks["_rank"] + 1), on=[schema.USER, "_rank"])
    pairs = pairs.merge(both, on=[schema.USER, "_rank"])
    p = pairs[f"{SHARE}_p"].fillna(0.0).to_numpy()
    q = pairs[f"{SHARE}_q"].fillna(0.0).to_numpy()
    m = (p + q) / 2
    pairs[JS] = 0.5 * _kl_terms(p, m) + 0.5 * _kl_terms(q, m)
    js = pairs.groupby([schema.USER, "_rank"], as_index=False)[JS].sum()
    js[JS] = js[JS].clip(0.0, 1.0)  # rounding can step a hair outside [0, 1]
    prv = totals.assign(_rank=totals["_rank"] + 1).rename(
        columns={PERIOD: PREV_PERIOD, EVENTS: PREV_EVENTS})
    out = js.merge(totals, on=[schema.USER, "_rank"]).merge(prv, on=[schema.USER, "_rank"])
    cols = [schema.USER, PREV_PERIOD, PERIOD, PREV_EVENTS, EVENTS, JS]
    return out.sort_values([schema.USER, PERIOD])[cols].reset_index(drop=True)


def activity_segments(profiles: pd.DataFrame,
                      labels: tuple[str, ...] = SEGMENT_LABELS) -> pd.DataFrame:
    """Users split into equal-sized activity segments by total events (ranks, so ties in
    counts do not leave a segment empty): ``user_id, events, segment``."""
    totals = profiles.groupby(schema.USER, as_index=False)[EVENTS].sum()
    if totals.empty:
        return totals.assign(**{SEGMENT: pd.Series(dtype="string")})
    k = min(len(labels), len(totals))
    ranks = totals[EVENTS].rank(method="first")
    totals[SEGMENT] = pd.qcut(ranks, k, labels=list(labels[:k])).astype("string")
    return totals


def segment_drift(drift: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Drift per activity segment and window: ``segment, period, users, mean_js,
    median_js``; ``segments`` comes from ``activity_segments``."""
    j = drift.merge(segments[[schema.USER, SEGMENT]], on=schema.USER)
    out = j.groupby([SEGMENT, PERIOD], as_index=False).agg(
        **{USERS: (schema.USER, "nunique"), MEAN_JS: (JS, "mean"), MEDIAN_JS: (JS, "median")})
    order = {label: i for i, label in enumerate(SEGMENT_LABELS)}
    out["_o"] = out[SEGMENT].map(order).fillna(len(order))
    return out.sort_values(["_o", PERIOD]).drop(columns="_o").reset_index(drop=True)


def top_users(drift: pd.DataFrame, n: int = 10, min_pairs: int = 1) -> pd.DataFrame:
    """``user_id, pairs, mean_js, max_js`` of the ``n`` users with the highest mean drift over
    at least ``min_pairs`` window pairs, highest first (ties by user id). ``top_changers``
    needs the profiles of these users only."""
    per_user = drift.groupby(schema.USER, as_index=False).agg(
        **{PAIRS: (JS, "size"), MEAN_JS: (JS, "mean"), MAX_JS: (JS, "max")})
    per_user = per_user[per_user[PAIRS] >= min_pairs]
    return per_user.sort_values([MEAN_JS, schema.USER], ascending=[False, True]).head(n)


def top_changers(drift: pd.DataFrame, profiles: pd.DataFrame, n: int = 10,
                 column: str = schema.CATEGORY, min_pairs: int = 1) -> pd.DataFrame:
    """The ``n`` users with the highest mean drift over at least ``min_pairs`` window pairs.

    Columns: ``user_id, pairs, mean_js, max_js, gained, lost`` where gained / lost are the
    categories whose share rose / fell most between the user's first and last window (null
    when nothing rose / fell).
    """
    top = top_users(drift, n, min_pairs)
    prof = profiles[profiles[schema.USER].isin(top[schema.USER])]
    first = prof[PERIOD] == prof.groupby(schema.USER)[PERIOD].transform("min")
    last = prof[PERIOD] == prof.groupby(schema.USER)[PERIOD].transform("max")
    a = prof[first].set_index([schema.USER, column])[SHARE]
    b = prof[last].set_index([schema.USER, column])[SHARE]
    change = b.sub(a, fill_value=0.0).rename("delta").reset_index()
    change = change.sort_values([schema.USER, "delta", column])
    lost = change[change["delta"] < 0].groupby(schema.USER).first()
    gained = change[change["delta"] > 0].groupby(schema.USER).last()
    top = top.merge(gained[[column]].rename(columns={column: GAINED}), left_on=schema.USER,
                    right_index=True, how="left")
    top = top.merge(lost[[column]].rename(columns={column: LOST}), left_on=schema.USER,
                    right_index=True, how="left")
    return top.reset_index(drop=True)

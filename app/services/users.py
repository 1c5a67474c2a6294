"""Memoised per-user analytics for the Users page: finding users, their events, interest drift,
mobility over time, churn risk, and the users whose interests changed most.

Dataset-wide results (drift of every user, churn model) are computed once per dataset in the
DuckDB engine and memoised; per-user results read one user's events (a filtered scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ...analytics.rollups import users as answers
from ...analytics.schema import CATEGORY, ITEM, TS, USER
from ...analytics.spatial import mobility
from ...analytics.users import churn as ch
from ...analytics.users import evolution as ev
from .analytics import dataset_cursor, events_table, robust_span
from .workspace import ServiceError, get_store, memoize_dataset

MAX_OPTIONS = 50
#: Windows with fewer categorised events are skipped by the drift (one check-in says little).
DRIFT_MIN_EVENTS = 3


@memoize_dataset
def active_users(name: str, limit: int = MAX_OPTIONS) -> pd.DataFrame:
    """The ``limit`` most active users: ``user_id, events``."""
    return _per_user(name, "", [], f"ORDER BY 2 DESC, 1 LIMIT {int(limit)}")


def _per_user(name: str, where: str, params: list, tail: str) -> pd.DataFrame:
    """``user_id, events`` of the users matching ``where`` (on ``user_id``), ``tail`` for
    order and limit: from the rollup's per-user table, else grouping the events."""
    with dataset_cursor(name) as (cur, table):
        return answers.per_user(cur, table, where, params, tail)


def search_users(name: str, text: str | None, limit: int = MAX_OPTIONS) -> pd.DataFrame:
    """Users whose id contains ``text`` (case-insensitive), most active first; the most
    active users when ``text`` is empty. Columns ``user_id, events``."""
    if not text or not text.strip():
        return active_users(name, limit)
    text = text.strip().lower()
    return _per_user(name, f"WHERE contains(lower({USER}), ?)", [text, text],
                     f"ORDER BY (lower({USER}) = ?) DESC, 2 DESC, 1 LIMIT {int(limit)}")


def user_exists(name: str, user: str | None) -> bool:
    if not user:
        return False
    with dataset_cursor(name) as (cur, table):
        return answers.user_exists(cur, table, str(user))


@memoize_dataset
def user_events(name: str, user: str) -> pd.DataFrame:
    """All events of one user in time order (canonical columns); from the rollup's events
    sorted by user when the dataset has one (a row group or two), else a filtered scan."""
    con = get_store().cursor()
    try:
        out = answers.user_events_sql(con, get_store().table(name), str(user))
    finally:
        con.close()
    if out.empty:
        raise ServiceError(f"{name!r} has no user {user!r}; pick one from the list or search "
                           "for part of the id")
    return out


def drift_freq(name: str) -> str:
    """Windows of interest profiles: weeks for up to ~4 months of data, months beyond."""
    return mobility.page_window(*robust_span(name))


def has_categories(name: str) -> bool:
    with dataset_cursor(name) as (cur, table):
        return answers.has_categories(cur, table)


@dataclass(frozen=True)
class DriftResult:
    profiles: pd.DataFrame    # user_id, period, category, events, share
    drift: pd.DataFrame       # user_id, prev_period, period, prev_events, events, js
    reference: pd.DataFrame   # period, median_js, users (all users)
    freq: str


@memoize_dataset
def drift(name: str) -> DriftResult:
    """Category mix per user per window and the JS divergence between consecutive windows,
    for every user (``analytics.evolution``); windows with under 3 events are skipped.
    Both come from the dataset's rollup when it stores that window's drift."""
    freq = drift_freq(name)
    with events_table(name) as t:
        profiles = answers.interest_profiles(t, freq)
        dr = answers.drift(t, freq, DRIFT_MIN_EVENTS) if not profiles.empty else None
    return _drift_result(profiles, dr, freq, None)


def _drift_result(profiles: pd.DataFrame, dr: pd.DataFrame | None, freq: str,
                  reference: pd.DataFrame | None) -> DriftResult:
    if profiles.empty or dr is None:  # no categorised events: nothing to compare
        empty = pd.DataFrame({USER: pd.Series(dtype="string"),
                              ev.PERIOD: pd.Series(dtype="datetime64[us]"),
                              ev.JS: pd.Series(dtype="float64")})
        return DriftResult(profiles=profiles, drift=empty,
                           reference=_reference(None) if reference is None else reference,
                           freq=freq)
    return DriftResult(profiles=profiles, drift=dr,
                       reference=_reference(dr) if reference is None else reference, freq=freq)


def _reference(dr: pd.DataFrame | None) -> pd.DataFrame:
    """Median drift and users per window of all users' drift ``dr``."""
    if dr is None:
        return pd.DataFrame(columns=[ev.PERIOD, ev.MEDIAN_JS, ev.USERS])
    return dr.groupby(ev.PERIOD, as_index=False).agg(
        **{ev.MEDIAN_JS: (ev.JS, "median"), ev.USERS: (USER, "nunique")})


@memoize_dataset
def drift_reference(name: str) -> pd.DataFrame:
    """Median drift of all users per window (``period, median_js, users``)."""
    if not has_categories(name):
        return _reference(None)
    with events_table(name) as t:
        return _reference(answers.drift(t, drift_freq(name), DRIFT_MIN_EVENTS))


@memoize_dataset
def top_changers(name: str, n: int = 12) -> pd.DataFrame:
    """The users whose interests changed most (mean JS over at least 2 window pairs, else 1);
    only those users' profiles are read."""
    empty = pd.DataFrame(columns=[USER, ev.PAIRS, ev.MEAN_JS, ev.MAX_JS, ev.GAINED, ev.LOST])
    if not has_categories(name):
        return empty
    freq = drift_freq(name)
    with events_table(name) as t:
        dr = answers.drift(t, freq, DRIFT_MIN_EVENTS)
        for min_pairs in (2, 1):
            top = ev.top_users(dr, n, min_pairs)
            if len(top):
                profiles = answers.interest_profiles(t, freq, user=top[USER].tolist())
                return ev.top_changers(dr, profiles, n=n, min_pairs=min_pairs)
    return empty


def user_drift(name: str, user: str) -> DriftResult:
    """The drift result of one user (the reference stays dataset-wide): only that user's
    profiles and drift are read."""
    freq = drift_freq(name)
    with events_table(name) as t:
        profiles, dr = answers.user_interest(t, str(user), freq, DRIFT_MIN_EVENTS)
    return _drift_result(profiles, dr, freq, drift_reference(name))


@memoize_dataset
def user_mobility(name: str, user: str) -> pd.DataFrame:
    """Events, distinct places, radius of gyration and travel per window for one user
    (``analytics.mobility.user_mobility``, stored in the dataset's rollup for the page's
    window); rg/travel are NaN without coordinates."""
    if not user_exists(name, user):
        raise ServiceError(f"{name!r} has no user {user!r}; pick one from the list or search "
                           "for part of the id")
    window = drift_freq(name)
    con = get_store().cursor()
    try:
        return answers.user_mobility_sql(con, get_store().table(name), str(user), window)
    finally:
        con.close()


@dataclass(frozen=True)
class ChurnResult:
    risk: pd.DataFrame        # user_id, features, risk, rank (1 = riskiest), percentile
    backtest: pd.DataFrame    # model, roc_auc, users, churn_rate, train_cut, test_cut
    window: str
    note: str                 # why churn could not be computed, else ""


@memoize_dataset
def churn(name: str) -> ChurnResult:
    """Churn risk of every user at the end of the data and the temporal backtest (ROC-AUC of
    the model and of recency alone). The window is a tenth of the span (1 to 30 days); when
    a cut leaves every user in one class a shorter window is tried."""
    lo, hi = robust_span(name)
    days = max(1, min(30, round((hi - lo).days / 10)))
    last_error = ""
    for d in dict.fromkeys((days, max(1, days // 2), 1)):
        window = f"{d}D"
        try:
            with events_table(name) as t:
                risk, bt = answers.churn_panel(t, window=window)
        except ValueError as exc:
            last_error = str(exc)
            continue
        risk = risk.assign(rank=range(1, len(risk) + 1))
        risk["percentile"] = 100.0 * risk[ch.RISK].rank(pct=True)
        return ChurnResult(risk=risk, backtest=bt, window=window, note="")
    return ChurnResult(risk=pd.DataFrame(), backtest=pd.DataFrame(), window="",
                       note=f"Churn risk cannot be estimated on this dataset: {last_error}")


def user_summary(name: str, user: str) -> dict[str, object]:
    """Headline facts of one user: events, distinct items, first/last time, top category."""
    e = user_events(name, user)
    cats = e[CATEGORY].dropna()
    return {"events": len(e), "items": int(e[ITEM].nunique()), "first": e[TS].min(),
            "last": e[TS].max(),
            "top_category": str(cats.value_counts().index[0]) if len(cats) else None}

"""Memoised per-user analytics for the Users page: finding users, their events, interest drift,
mobility over time, churn risk, and the users whose interests changed most.

Dataset-wide results (drift of every user, churn model) are stored by the summary build
(analytics/rollups) and the page reads only what it shows: the most changed users' drift, the
median drift per window (aggregated by DuckDB), the stored churn panel; per-user results read
one user's rows. Without summary tables (read-only workspaces) they are computed and memoised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ...analytics.rollups import users as answers
from ...analytics.schema import CATEGORY, ITEM, TS, USER
from ...analytics.spatial import mobility
from ...analytics.users import churn as ch
from ...analytics.users import evolution as ev
from .analytics import dataset_cursor, events_table, robust_span
from .workspace import ServiceError, dataset_info, get_store, memoize_dataset

MAX_OPTIONS = 50
#: Drift settings (``evolution.MIN_EVENTS_PER_WINDOW`` / ``PRIOR_EVENTS``: what the summary
#: tables store too) ...
DRIFT_MIN_EVENTS = ev.MIN_EVENTS_PER_WINDOW
DRIFT_PRIOR = ev.PRIOR_EVENTS
#: ... and the most-changed list needs this many window pairs.
DRIFT_MIN_PAIRS = 2
#: The zone basis's cells (``evolution.ZONE_RESOLUTION``) in words.
ZONE_AREA = "areas of about 2.5 km across (H3 resolution 7, some 5 km²)"


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
class DriftBasis:
    column: str | None        # "category", "zone" (H3 cells) or None: no drift
    note: str                 # the sentence the page and the CLI show about it


@memoize_dataset
def drift_basis(name: str) -> DriftBasis:
    """What interests are profiled over: the categories when the data has them, else the
    areas users visit (H3 cells) when it has coordinates, else nothing."""
    if has_categories(name):
        return DriftBasis(CATEGORY, "Interests are profiled over the event categories.")
    if dataset_info(name).has_coordinates:
        return DriftBasis(ev.ZONE, f"Interests are profiled over {ZONE_AREA} because the "
                                   "data has no categories.")
    return DriftBasis(None, "This dataset has no categories and no coordinates, so "
                            "interests cannot be profiled and no drift is measured.")


@dataclass(frozen=True)
class DriftResult:
    profiles: pd.DataFrame    # user_id, period, <basis>, events, share
    drift: pd.DataFrame       # user_id, prev_period, period, prev_events, events, js, shrunk_js
    reference: pd.DataFrame   # period, median_js (shrunk), users (all users)
    freq: str
    basis: DriftBasis


@memoize_dataset
def drift(name: str) -> DriftResult:
    """Mix per user per window (over the basis) and the JS divergence between consecutive
    windows, raw and shrunk, for every user (``analytics.evolution``); windows with under
    ``DRIFT_MIN_EVENTS`` events are skipped."""
    basis, freq = drift_basis(name), drift_freq(name)
    if basis.column is None:
        return _drift_result(_no_profiles(), None, freq, None, basis)
    with events_table(name) as t:
        profiles = answers.interest_profiles(t, freq, basis.column)
    dr = ev.interest_drift(profiles, basis.column, DRIFT_MIN_EVENTS, DRIFT_PRIOR)
    return _drift_result(profiles, dr, freq, None, basis)


def _no_profiles() -> pd.DataFrame:
    return pd.DataFrame({USER: pd.Series(dtype="string"),
                         ev.PERIOD: pd.Series(dtype="datetime64[us]"),
                         ev.EVENTS: pd.Series(dtype="int64"),
                         ev.SHARE: pd.Series(dtype="float64")})


def _drift_result(profiles: pd.DataFrame, dr: pd.DataFrame | None, freq: str,
                  reference: pd.DataFrame | None, basis: DriftBasis) -> DriftResult:
    if profiles.empty or dr is None:  # no profiled events: nothing to compare
        dr = pd.DataFrame({USER: pd.Series(dtype="string"),
                           ev.PERIOD: pd.Series(dtype="datetime64[us]"),
                           ev.JS: pd.Series(dtype="float64"),
                           ev.SHRUNK_JS: pd.Series(dtype="float64")})
    return DriftResult(profiles=profiles, drift=dr,
                       reference=ev.reference(dr) if reference is None else reference,
                       freq=freq, basis=basis)


@memoize_dataset
def drift_reference(name: str) -> pd.DataFrame:
    """Median drift of all users per window (``period, median_js, users``), aggregated in
    the engine from the stored drift (no page holds every user's drift)."""
    basis = drift_basis(name)
    if basis.column is None:
        return ev.reference(None)
    with events_table(name) as t:
        return answers.drift_reference(t, drift_freq(name), DRIFT_MIN_EVENTS,
                                       column=basis.column, prior=DRIFT_PRIOR)


@memoize_dataset
def top_changers(name: str, n: int = 12) -> pd.DataFrame:
    """The users whose interests changed most: highest mean shrunk drift over at least
    ``DRIFT_MIN_PAIRS`` window pairs, with the evidence (windows, pairs, events) and what
    they gained and lost; only those users' profiles are read."""
    basis = drift_basis(name)
    if basis.column is None:
        return pd.DataFrame(columns=[USER, ev.WINDOWS, ev.PAIRS, ev.EVENTS, ev.MEAN_JS,
                                     ev.MAX_JS, ev.RAW_MEAN_JS, ev.GAINED, ev.LOST])
    freq = drift_freq(name)
    with events_table(name) as t:
        dr = answers.top_drift(t, freq, n, DRIFT_MIN_PAIRS, DRIFT_MIN_EVENTS,
                               column=basis.column, prior=DRIFT_PRIOR)
        profiles = answers.interest_profiles(t, freq, basis.column,
                                             user=dr[USER].unique().tolist())
    return ev.top_changers(dr, profiles, n=n, column=basis.column, min_pairs=DRIFT_MIN_PAIRS)


def user_drift(name: str, user: str) -> DriftResult:
    """The drift result of one user (the reference stays dataset-wide): only that user's
    profiles and drift are read."""
    basis, freq = drift_basis(name), drift_freq(name)
    if basis.column is None:
        return _drift_result(_no_profiles(), None, freq, ev.reference(None), basis)
    with events_table(name) as t:
        profiles, dr = answers.user_interest(t, str(user), freq, DRIFT_MIN_EVENTS,
                                             basis.column, DRIFT_PRIOR)
    return _drift_result(profiles, dr, freq, drift_reference(name), basis)


def zone_labels(cells: Any) -> dict[str, str]:
    """Readable names of H3 cells (the zone basis): ``area at lat, lon`` of their centres."""
    return ev.zone_labels(cells)


def drift_summary(name: str, limit: int | None = None) -> dict[str, Any]:
    """The drift of dataset ``name`` as a JSON-safe dict (``trailscope aggregate drift``):
    ``dataset, basis, basis_note, freq, min_events_per_window, prior_events, min_pairs``;
    ``users``: every user with a measured drift, most changed first (``limit`` keeps the
    first ones), each with ``user, windows, pairs, events, drift`` (mean shrunk JS),
    ``raw_drift`` (mean JS of the unsmoothed shares), ``gained, lost``; ``most_changed``:
    the Users page's list (at least ``min_pairs`` pairs); ``segments``: drift per activity
    segment (light / medium / heavy users)."""
    res = drift(name)
    out: dict[str, Any] = {
        "dataset": name, "basis": res.basis.column, "basis_note": res.basis.note,
        "freq": res.freq, "min_events_per_window": DRIFT_MIN_EVENTS,
        "prior_events": DRIFT_PRIOR, "min_pairs": DRIFT_MIN_PAIRS,
        "users": [], "most_changed": [], "segments": []}
    if res.basis.column is None or res.drift.empty:
        return out
    table = ev.user_drift_table(res.drift)
    if limit is not None:
        table = table.head(int(limit))
    table = table.merge(ev.changes(res.drift[res.drift[USER].isin(table[USER])],
                                   res.profiles, res.basis.column), on=USER, how="left")
    out["users"] = [
        {"user": str(r[USER]), "windows": int(r[ev.WINDOWS]), "pairs": int(r[ev.PAIRS]),
         "events": int(r[ev.EVENTS]), "drift": _num(r[ev.MEAN_JS]),
         "raw_drift": _num(r[ev.RAW_MEAN_JS]), "gained": _text(r[ev.GAINED]),
         "lost": _text(r[ev.LOST])} for r in table.to_dict("records")]
    out["most_changed"] = [str(u) for u in top_changers(name)[USER]]
    seg = ev.segment_summary(res.drift, ev.activity_segments(res.profiles))
    out["segments"] = [
        {"segment": str(r[ev.SEGMENT]), "users": int(r[ev.USERS]), "pairs": int(r[ev.PAIRS]),
         "mean_drift": _num(r[ev.MEAN_JS]), "median_drift": _num(r[ev.MEDIAN_JS])}
        for r in seg.to_dict("records")]
    return out


def _num(v: Any) -> float | None:
    return None if v is None or v != v else round(float(v), 6)


def _text(v: Any) -> str | None:
    return None if v is None or v != v else str(v)


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
    a cut leaves every user in one class a shorter window is tried (``churn.page_windows``).
    The summary build stores this panel, so the page reads it instead of fitting it."""
    lo, hi = robust_span(name)
    with events_table(name) as t:
        risk, bt, window, why = answers.page_churn(t, lo, hi)
    if not window:
        return ChurnResult(risk=pd.DataFrame(), backtest=pd.DataFrame(), window="",
                           note=f"Churn risk cannot be estimated on this dataset: {why}")
    risk = risk.assign(rank=range(1, len(risk) + 1))
    risk["percentile"] = 100.0 * risk[ch.RISK].rank(pct=True)
    return ChurnResult(risk=risk, backtest=bt, window=window, note="")


def user_summary(name: str, user: str) -> dict[str, object]:
    """Headline facts of one user: events, distinct items, first/last time, top category."""
    e = user_events(name, user)
    cats = e[CATEGORY].dropna()
    return {"events": len(e), "items": int(e[ITEM].nunique()), "first": e[TS].min(),
            "last": e[TS].max(),
            "top_category": str(cats.value_counts().index[0]) if len(cats) else None}

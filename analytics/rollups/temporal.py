"""Temporal questions answered from the summary tables when they can, else by the analyses.

Each function takes what its analysis takes (an Ibis events table, or a DuckDB connection and
a stored table) and returns exactly what the analysis returns: from the dataset's fresh
summary tables (lookup.py) when the request is answerable from them, else by calling the
analysis on the raw events. tests/analytics/test_rollup.py holds both paths equal. The
dataset facts the services ask for (robust span, top values, time-zone facts) follow the
same rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..engine import EVENTS, PERIOD, SECONDS, USERS, check_freq
from ..temporal import activity, cohorts, forecast, sessions
from . import lookup
from .tables import SESSION_GAPS, USER_FREQS, Rollup


# -- activity -------------------------------------------------------------------------------
def kpis(events: Any) -> pd.DataFrame:
    """``activity.kpis``."""
    ru = lookup.for_events(events)
    if ru is None:
        return activity.kpis(events)
    return activity.finish_kpis(ru.df(
        f"SELECT {EVENTS}, {USERS}, {activity.ITEMS}, {activity.FIRST_TS}, "
        f"{activity.LAST_TS} FROM {ru.t('summary')}"))


def series_rows(ru: Rollup, freq: str, users: str | None) -> pd.DataFrame | None:
    """Events (and distinct users) per period from the hourly / per-user-period tables, before
    ``activity.finish_series``; None when they cannot answer (hourly distinct users after an
    append). Users asked for "approx" come exact."""
    activity.check_user_counts(users)
    if users is None:
        return ru.df(f"SELECT date_trunc('{freq}', {PERIOD}) AS {PERIOD}, CAST(sum({EVENTS}) "
                     f"AS BIGINT) AS {EVENTS} FROM {ru.t('hourly')} GROUP BY 1")
    if freq == "hour" and not _appended(ru):
        return ru.df(f"SELECT {PERIOD}, {EVENTS}, {USERS} FROM {ru.t('hour_users')}")
    if freq not in USER_FREQS:
        return None
    return ru.df(f"SELECT {PERIOD}, {EVENTS}, {USERS} FROM {ru.t('periods')} WHERE freq = "
                 f"'{freq}'")


def _appended(ru: Rollup) -> bool:
    """Whether events were appended since the build (``hour_users`` then lacks them: the
    raw table answers)."""
    return ru.has("pending") and bool(ru.one(f"SELECT count(*) FROM {ru.t('pending')}")[0])


def activity_series(events: Any, freq: str = "day", by: str | None = None,
                    fill: bool = True, users: str | None = "exact") -> pd.DataFrame:
    """``activity.activity_series``."""
    check_freq(freq)
    ru = lookup.for_events(events) if by is None else None
    out = series_rows(ru, freq, users) if ru is not None else None
    if out is None:
        return activity.activity_series(events, freq, by, fill, users)
    return activity.finish_series(out, freq, by, fill)


def active_users(events: Any, freq: str = "day", fill: bool = True) -> pd.DataFrame:
    """``activity.active_users``: each user's first period is the period of their first
    event."""
    check_freq(freq)
    ru = lookup.for_events(events) if freq in USER_FREQS else None
    if ru is None:
        return activity.active_users(events, freq, fill)
    return activity.finish_active_users(ru.df(
        f"SELECT p.{PERIOD}, count(*) AS {activity.ACTIVE_USERS}, CAST(sum(CASE WHEN "
        f"p.{PERIOD} = date_trunc('{freq}', u.first_ts) THEN 1 ELSE 0 END) AS BIGINT) AS "
        f"{activity.NEW_USERS}, CAST(sum(p.{EVENTS}) AS BIGINT) AS {EVENTS} FROM "
        f"{ru.t('user_' + freq)} p JOIN {ru.t('users')} u ON p.user_idx = u.user_idx "
        "GROUP BY 1"), freq, fill)


def rhythm_matrix(events: Any, local: bool = True, tz_fallback_min: int | None = None,
                  users: str | None = "exact") -> pd.DataFrame:
    """``activity.rhythm_matrix``."""
    activity.check_user_counts(users)
    ru = lookup.for_events(events)
    got = None if ru is None else _rhythm_cells(ru, local, tz_fallback_min, users)
    if got is None:
        return activity.rhythm_matrix(events, local, tz_fallback_min, users)
    return activity.finish_rhythm(got)


def _rhythm_cells(ru: Rollup, local: bool, tz_fallback_min: int | None,
                  users: str | None) -> pd.DataFrame | None:
    """The rhythm cells: stored as they are for UTC and the usual local-time fallbacks, else
    from the per (user, offset, UTC hour of week) table, which is exact when every shift is
    whole hours (the local hour is then the UTC hour moved by whole hours); None otherwise.
    Users asked for "approx" come exact."""
    weekday, hour = activity.WEEKDAY, activity.HOUR
    fallback = int(tz_fallback_min or 0) if local else 0
    count = "" if users is None else f", {USERS}"
    got = ru.df(f"SELECT {weekday}, {hour}, {EVENTS}{count} FROM {ru.t('rhythm_cells')} "
                "WHERE mode = ? AND fallback = ?", ["local" if local else "utc", fallback])
    if len(got) or (local and (fallback % 60 or not ru.summary()["tz_whole_hours"])):
        return got if len(got) else None
    shift = f"coalesce({schema.TZ_OFFSET}, {fallback}) // 60" if local else "0"
    count = "" if users is None else f", count(DISTINCT user_idx) AS {USERS}"
    return ru.df(f"SELECT (lh // 24 + 3) % 7 AS {weekday}, lh % 24 AS {hour}, CAST(sum("
                 f"{EVENTS}) AS BIGINT) AS {EVENTS}{count} FROM (SELECT *, ((how + {shift}) % "
                 f"168 + 168) % 168 AS lh FROM {ru.t('rhythm')}) GROUP BY 1, 2")


# -- cohorts --------------------------------------------------------------------------------
def cohort_retention(events: Any, freq: str = "week",
                     max_periods: int | None = None) -> pd.DataFrame:
    """``cohorts.cohort_retention``, from the per user-period table: a user's cohort is the
    period of their first event."""
    cohorts.check_retention_args(freq, max_periods)
    ru = lookup.for_events(events) if freq in USER_FREQS else None
    if ru is None:
        return cohorts.cohort_retention(events, freq, max_periods)
    if freq == "month":
        since = ("(year(p.period) - year(c.cohort)) * 12 + month(p.period) - "
                 "month(c.cohort)")
    else:
        since = (f"(CAST(EPOCH(p.period) AS BIGINT) - CAST(EPOCH(c.cohort) AS BIGINT)) "
                 f"// {SECONDS[freq]}")
    keep = "" if max_periods is None else f"WHERE {since} <= {int(max_periods)}"
    out = ru.df(
        f"SELECT c.{cohorts.COHORT}, CAST({since} AS BIGINT) AS {cohorts.PERIODS_SINCE}, "
        f"count(*) AS {USERS} FROM {ru.t('user_' + freq)} p JOIN (SELECT user_idx, "
        f"date_trunc('{freq}', first_ts) AS {cohorts.COHORT} FROM {ru.t('users')}) c "
        f"ON p.user_idx = c.user_idx {keep} GROUP BY 1, 2")
    last = ru.one(f"SELECT max(period) FROM {ru.t('user_' + freq)}")[0]
    return cohorts.finish_retention(out, last, freq)


# -- sessions -------------------------------------------------------------------------------
def interval_histogram(events: Any, bins_per_decade: int = 4,
                       per_user: bool = False) -> pd.DataFrame:
    """``sessions.interval_histogram``: the stored histogram of exact gaps, binned the same
    way."""
    sessions.check_bins(bins_per_decade)
    ru = None if per_user else lookup.for_events(events)
    if ru is None:
        return sessions.interval_histogram(events, bins_per_decade, per_user)
    gap = "CAST(gap AS DOUBLE)"
    return sessions.finish_histogram(ru.df(
        f"SELECT CASE WHEN {gap} < 1 THEN -1 ELSE CAST(floor(log10({gap}) * "
        f"{int(bins_per_decade)}) AS BIGINT) END AS _k, CAST(sum(n) AS BIGINT) AS "
        f"{sessions.COUNT} FROM {ru.t('gaps')} GROUP BY 1"), bins_per_decade)


def session_summary(events: Any, gap: str | float | int | pd.Timedelta = "30min"
                    ) -> pd.DataFrame:
    """``sessions.session_summary`` from the stored histogram of session durations for this
    gap; the median is interpolated between the two middle sessions exactly as DuckDB's
    quantile_cont does."""
    limit = sessions.gap_seconds(gap)
    ru = lookup.for_events(events) if limit in SESSION_GAPS else None
    if ru is None:
        return sessions.session_summary(events, gap)
    hist = ru.df(f"SELECT duration, single, n FROM {ru.t('sessions')} WHERE gap_limit = ?",
                 [limit])
    s = ru.summary()
    by_duration = hist.groupby("duration", sort=True)["n"].sum()
    n = int(by_duration.sum())
    median = 0.0
    if n:
        ends = by_duration.cumsum().to_numpy()     # rank (0-based) of each duration's last
        values = by_duration.index.to_numpy()
        pos = 0.5 * (n - 1)
        lo = float(values[np.searchsorted(ends, int(np.floor(pos)), side="right")])
        hi = float(values[np.searchsorted(ends, int(np.ceil(pos)), side="right")])
        median = lo if lo == hi else lo + (hi - lo) * (pos - np.floor(pos))
    single = int(hist.loc[hist["single"], "n"].sum())
    return sessions.summary_row(n, int(s["users"]), int(s["events"]), float(median), single)


# -- the Overview page's forecast ------------------------------------------------------------
def complete_forecast(series: pd.DataFrame, freq: str, first: Any, last: Any, horizon: int,
                      alpha: float, spec: forecast.ModelSpec | None, max_history: int | None,
                      origins: int) -> forecast.CompleteForecast:
    """``forecast.complete_forecast``: always fitted (the summary tables store no forecast:
    the fit depends on the data's span without its strays, which the services judge)."""
    return forecast.complete_forecast(series, freq, first, last, horizon, alpha, spec,
                                      max_history, origins)


# -- dataset facts the pages show -----------------------------------------------------------
def robust_span(con: Any, table: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The 1st and 99th percentile of the event times of ``table``: the span without stray
    timestamps."""
    ru = lookup.for_sql(con, table)
    if ru is not None:
        s = ru.summary()
        return pd.Timestamp(s["ts_p01"]), pd.Timestamp(s["ts_p99"])
    lo, hi = con.execute(f"SELECT quantile_disc({schema.TS}, 0.01), quantile_disc({schema.TS}, "
                         f"0.99) FROM {table}").fetchone()
    return pd.Timestamp(lo), pd.Timestamp(hi)


def top_values(con: Any, table: str, column: str, n: int) -> pd.DataFrame:
    """The ``n`` most frequent non-null values of ``column`` (category or behavior) of
    ``table`` with their event counts, most frequent first: ``value, events``."""
    ru = lookup.for_sql(con, table)
    if ru is not None:
        return ru.df(f"SELECT value, events FROM {ru.t('values')} WHERE col = ? AND value "
                     f"IS NOT NULL ORDER BY 2 DESC, 1 LIMIT {int(n)}", [column])
    return con.execute(
        f"SELECT {column} AS value, count(*) AS events FROM {table} WHERE {column} IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(n)}").df()


def tz_facts(con: Any, table: str) -> tuple[int, float | None]:
    """(events with a known time-zone offset, median longitude or None) of ``table``: what
    the local-time fallback is decided from."""
    ru = lookup.for_sql(con, table)
    if ru is not None:
        known, lon = ru.one(f"SELECT tz_known, lon_median FROM {ru.t('summary')}")
    else:
        known, lon = con.execute(f"SELECT count({schema.TZ_OFFSET}), median({schema.LON}) "
                                 f"FROM {table}").fetchone()
    return int(known or 0), None if lon is None else float(lon)

"""Time between a user's events: inter-event intervals and sessions split by an idle gap.

Gaps are computed in the engine (a lag over each user's events in time order), so only
per-user statistics, histogram bins or per-session rows come back to pandas. Events with the
same timestamp have a gap of 0 seconds. Inputs as in analytics.temporal: an Ibis events
table or a pandas DataFrame in the canonical schema.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..engine import EVENTS, as_table, epoch_seconds, execute

GAP_S = "gap_s"
INTERVALS = "intervals"
MEAN_S = "mean_s"
MEDIAN_S = "median_s"
P10_S = "p10_s"
P90_S = "p90_s"
QUANTILE = "quantile"
SECONDS = "seconds"
BIN_LO_S = "bin_lo_s"
BIN_HI_S = "bin_hi_s"
COUNT = "count"
SHARE = "share"
SESSION = "session"          # 1, 2, ... within each user, in time order
START = "start"
END = "end"
DURATION_S = "duration_s"
ITEMS = "items"

DEFAULT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _with_gaps(events: Any, columns: tuple[str, ...] = (schema.USER,)) -> Any:
    """``columns`` of the events plus ``_s`` (epoch seconds) and ``gap_s``: seconds since the
    same user's previous event (null for the first). Selecting only the columns a query needs
    before the window keeps the engine from sorting whole rows."""
    import ibis

    t = as_table(events)
    keep = list(dict.fromkeys((schema.USER, *columns)))
    t = t.select(*keep, _s=epoch_seconds(t))
    w = ibis.window(group_by=t[schema.USER], order_by=[t._s])
    return t.mutate(**{GAP_S: t._s - t._s.lag().over(w)})


def intervals_per_user(events: Any) -> pd.DataFrame:
    """Inter-event interval statistics per user (users with at least two events).

    Columns: ``user_id, intervals, mean_s, median_s, p10_s, p90_s`` (seconds; quantiles are
    exact, linearly interpolated).
    """
    t = _with_gaps(events)
    g = t.filter(t[GAP_S].notnull())
    expr = g.group_by(schema.USER).aggregate(**{
        INTERVALS: g.count(),
        MEAN_S: g[GAP_S].mean(),
        MEDIAN_S: g[GAP_S].quantile(0.5),
        P10_S: g[GAP_S].quantile(0.1),
        P90_S: g[GAP_S].quantile(0.9),
    })
    out = execute(expr)
    out[INTERVALS] = out[INTERVALS].astype("int64")
    return out.sort_values(schema.USER).reset_index(drop=True)


def interval_quantiles(events: Any,
                       quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> pd.DataFrame:
    """Quantiles of all users' inter-event intervals together: ``quantile, seconds``."""
    bad = [q for q in quantiles if not 0 <= q <= 1]
    if bad:
        raise ValueError(f"quantiles must lie in [0, 1]; got {bad}")
    t = _with_gaps(events)
    g = t.filter(t[GAP_S].notnull())
    expr = g.aggregate(**{f"q{i}": g[GAP_S].quantile(q) for i, q in enumerate(quantiles)})
    row = execute(expr).iloc[0]
    return pd.DataFrame({QUANTILE: list(quantiles),
                         SECONDS: [float(row[f"q{i}"]) for i in range(len(quantiles))]})


def interval_histogram(events: Any, bins_per_decade: int = 4,
                       per_user: bool = False) -> pd.DataFrame:
    """Histogram of inter-event intervals on a log scale.

    Bin ``k`` holds gaps in ``[10**(k / bins_per_decade), 10**((k + 1) / bins_per_decade))``
    seconds; gaps under one second (same-second events) share the first bin ``[0, 1)``.
    Only non-empty bins are returned. Columns: ``[user_id,] bin_lo_s, bin_hi_s, count,
    share`` (share of all gaps, or of the user's gaps with ``per_user``).
    """
    check_bins(bins_per_decade)
    t = _with_gaps(events)
    g = t.filter(t[GAP_S].notnull())
    gap = g[GAP_S].cast("float64")
    k = (gap < 1).ifelse(-1, (gap.log10() * bins_per_decade).floor().cast("int64"))
    g = g.mutate(_k=k)
    keys = [schema.USER, "_k"] if per_user else ["_k"]
    out = execute(g.group_by(keys).aggregate(**{COUNT: g.count()}))
    return finish_histogram(out, bins_per_decade, per_user)


def check_bins(bins_per_decade: int) -> None:
    if bins_per_decade < 1:
        raise ValueError(f"bins_per_decade must be at least 1, got {bins_per_decade}")


def finish_histogram(out: pd.DataFrame, bins_per_decade: int,
                     per_user: bool = False) -> pd.DataFrame:
    """``interval_histogram``'s last steps on its ``[user_id,] _k, count`` rows (``_k``: the
    bin index, -1 for gaps under a second): bin edges, shares, order."""
    out["_k"] = out["_k"].astype("int64")
    out[COUNT] = out[COUNT].astype("int64")
    lo = np.where(out["_k"] < 0, 0.0, 10.0 ** (out["_k"] / bins_per_decade))
    hi = np.where(out["_k"] < 0, 1.0, 10.0 ** ((out["_k"] + 1) / bins_per_decade))
    out[BIN_LO_S] = lo
    out[BIN_HI_S] = hi
    if per_user:
        out[SHARE] = out[COUNT] / out.groupby(schema.USER)[COUNT].transform("sum")
    else:
        out[SHARE] = out[COUNT] / out[COUNT].sum()
    cols = ([schema.USER] if per_user else []) + [BIN_LO_S, BIN_HI_S, COUNT, SHARE]
    sort = ([schema.USER] if per_user else []) + ["_k"]
    return out.sort_values(sort)[cols].reset_index(drop=True)


def gap_seconds(gap: str | float | int | pd.Timedelta) -> int:
    seconds = pd.Timedelta(gap).total_seconds() if isinstance(gap, str | pd.Timedelta) \
        else float(gap)
    if seconds <= 0:
        raise ValueError(f"the idle gap must be positive, got {gap!r}; e.g. '30min' or 1800")
    return int(seconds)


def _sessionized(events: Any, gap: str | float | int | pd.Timedelta,
                 columns: tuple[str, ...]) -> Any:
    import ibis

    limit = gap_seconds(gap)
    t = _with_gaps(events, columns)
    starts = (t[GAP_S].isnull() | (t[GAP_S] > limit)).cast("int64")
    t = t.mutate(_new=starts)
    # A RANGE frame sums over all events up to and including the current second, so events
    # sharing a timestamp always land in the same session whatever order the engine gives
    # them (the same partition and order as the lag, so one sort serves both windows).
    w = ibis.window(group_by=t[schema.USER], order_by=[t._s], range=(None, 0))
    return t.mutate(**{SESSION: t._new.sum().over(w)})


def sessionize(events: Any, gap: str | float | int | pd.Timedelta = "30min") -> pd.DataFrame:
    """The events with a ``session`` number: a new session starts after more than ``gap``
    idle (a pandas Timedelta string like ``"30min"``, or seconds).

    Returns the canonical columns plus ``gap_s`` (seconds since the user's previous event,
    NaN for the first) and ``session`` (1, 2, ... per user), sorted by user and time.
    A session is identified by (``user_id``, ``session``).
    """
    table = as_table(events)
    t = _sessionized(table, gap, tuple(c for c in schema.COLUMNS if c in table.columns))
    cols = [c for c in schema.COLUMNS if c in t.columns] + [GAP_S, SESSION]
    out = execute(t.select(cols))
    out = out.astype({c: schema.PANDAS_DTYPES[c] for c in schema.COLUMNS if c in out.columns})
    out[SESSION] = out[SESSION].astype("int64")
    return out.sort_values([schema.USER, schema.TS, SESSION]).reset_index(drop=True)


def _session_rows(events: Any, gap: str | float | int | pd.Timedelta) -> Any:
    """Ibis expression: one row per (user, session) with its times, counts and duration."""
    t = _sessionized(events, gap, (schema.USER, schema.ITEM, schema.TS))
    per = t.group_by([schema.USER, SESSION]).aggregate(**{
        START: t[schema.TS].min(), END: t[schema.TS].max(), EVENTS: t.count(),
        ITEMS: t[schema.ITEM].nunique(), "_s0": t._s.min(), "_s1": t._s.max()})
    return per.mutate(**{DURATION_S: per._s1 - per._s0})


def session_stats(events: Any, gap: str | float | int | pd.Timedelta = "30min") -> pd.DataFrame:
    """One row per session: ``user_id, session, start, end, events, items, duration_s``.

    ``items`` counts distinct items; ``duration_s`` is last minus first event time (0 for a
    single-event session). As many rows as sessions: for a dashboard, ``session_summary``
    is the small answer.
    """
    out = execute(_session_rows(events, gap))
    for col in (SESSION, EVENTS, ITEMS, DURATION_S):
        out[col] = out[col].astype("int64")
    cols = [schema.USER, SESSION, START, END, EVENTS, ITEMS, DURATION_S]
    return out.sort_values([schema.USER, SESSION])[cols].reset_index(drop=True)


SESSIONS = "sessions"
USERS = "users"
SESSIONS_PER_USER = "sessions_per_user"
EVENTS_PER_SESSION = "events_per_session"
MEDIAN_DURATION_S = "median_duration_s"
SINGLE_EVENT_SHARE = "single_event_share"


def session_summary(events: Any, gap: str | float | int | pd.Timedelta = "30min") -> pd.DataFrame:
    """Headline session numbers in one row: ``sessions, users, sessions_per_user,
    events_per_session, median_duration_s, single_event_share``.

    Same sessions as ``session_stats`` but computed without materialising them: window
    functions over each user's events in time order mark the last event of every session
    (the next event starts a new one, or there is none) and carry the session's start time
    along, so only those session-end rows are aggregated.
    """
    import ibis

    limit = gap_seconds(gap)
    t = _with_gaps(events)
    t = t.mutate(_new=(t[GAP_S].isnull() | (t[GAP_S] > limit)).cast("int64"))
    ordered = ibis.window(group_by=t[schema.USER], order_by=[t._s])
    running = ibis.window(group_by=t[schema.USER], order_by=[t._s], range=(None, 0))
    t = t.mutate(_next=t._new.lead().over(ordered),
                 _start=(t._new == 1).ifelse(t._s, ibis.null("int64")).max().over(running))
    ends = t.filter(t._next.isnull() | (t._next == 1))
    row = execute(ends.aggregate(**{
        SESSIONS: ends.count(), USERS: ends[schema.USER].nunique(),
        MEDIAN_DURATION_S: (ends._s - ends._start).quantile(0.5),
        "_single": (ends._new == 1).cast("int64").sum()})).iloc[0]
    n_events = int(as_table(events).count().execute())
    n = int(row[SESSIONS])
    return summary_row(n, int(row[USERS]), n_events,
                       float(row[MEDIAN_DURATION_S]) if n else 0.0, float(row["_single"]))


def summary_row(sessions: int, users: int, events: int, median_duration_s: float,
                single: float) -> pd.DataFrame:
    """``session_summary``'s one row from its counts (``single``: single-event sessions)."""
    n = sessions
    return pd.DataFrame([{
        SESSIONS: n, USERS: users,
        SESSIONS_PER_USER: n / users if users else 0.0,
        EVENTS_PER_SESSION: events / n if n else 0.0,
        MEDIAN_DURATION_S: float(median_duration_s) if n else 0.0,
        SINGLE_EVENT_SHARE: float(single) / n if n else 0.0,
    }])

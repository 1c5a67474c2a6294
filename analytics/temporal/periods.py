"""The one rule for partial periods: which periods of a series the data covers only in part.

A dataset rarely starts or ends at a period boundary: NYC check-ins end on 2013-02-16 at
02:35 UTC, so that "day" holds a tenth of a day's events and a trend drawn through it looks
like a collapse. Every analysis that fits, tests or compares periods (forecasts, backtests,
trend tests, zone trends) leaves such periods out, and every chart marks them, by this rule.

**The rule.** The data covers the span [``first``, ``last``] (first and last event; with a
time filter, those of the filtered events). A period [start, next start) is *complete* when the
part of it outside that span is at most ``max(1% of the period, SLACK[freq])``, where
``SLACK`` is one finer unit, capped at an hour (hour: 1 minute, day/week/month: 1 hour). So a
day is complete when the data misses at most its first or last hour together (which also
keeps the day complete for data stamped to the hour, whose last event reads 23:00), a week at
most 1.7 hours and a month at most about 7 hours; an hour at most one minute. Every other
period is *partial*; only the first and the last period of a series filled between the first
and the last event can be (periods wholly outside the span have coverage 0 and are partial
too). Weeks start on Monday and months on the 1st, as ``analytics.engine.period_start``.

``coverage`` is the fraction of the period inside the span (0..1).

**Stray timestamps.** Some files hold a few events far from the rest (Taobao's UserBehavior:
one on 2017-09-11 and some thirty more before collection starts on 2017-11-24 16:00 UTC). A
span from such a stray would make weeks of empty "complete" periods. ``bulk_hours`` finds the
span without them: leading and trailing hours holding fewer than ``STRAY_SHARE`` (5%) of the
median events of a non-empty hour are strays; the caller takes the first and last event
inside the remaining hours as ``first`` and ``last``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..engine import EVENTS, PERIOD, check_freq

COVERAGE = "coverage"
EDGE = "edge"
END = "end"
WHY = "why"

#: The share of a period the data may miss and the period still count as complete.
MIN_COVERAGE = 0.99
#: Missing time always tolerated at an edge (one finer unit, capped at an hour).
SLACK = {"hour": pd.Timedelta(minutes=1), "day": pd.Timedelta(hours=1),
         "week": pd.Timedelta(hours=1), "month": pd.Timedelta(hours=1)}


#: Leading and trailing hours below this share of a median non-empty hour are strays.
STRAY_SHARE = 0.05


def period_ends(starts: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex:
    """The start of the next period of each of ``starts`` (a calendar month for months)."""
    starts = pd.DatetimeIndex(starts)
    if check_freq(freq) == "month":
        return starts + pd.DateOffset(months=1)
    return starts + pd.Timedelta({"hour": "1h", "day": "1D", "week": "7D"}[freq])


def coverage(starts: pd.DatetimeIndex, freq: str, first: Any, last: Any) -> np.ndarray:
    """The fraction (0..1) of each period [start, next start) inside [``first``, ``last``]."""
    starts = pd.DatetimeIndex(starts)
    if not len(starts):
        return np.zeros(0)
    s, e = _ns(starts), _ns(period_ends(starts, freq))
    lo_ns, hi_ns = float(_naive(first).value), float(_naive(last).value)
    inside = np.clip(np.minimum(e, hi_ns) - np.maximum(s, lo_ns), 0.0, None)
    return inside / (e - s)


def complete_mask(starts: pd.DatetimeIndex, freq: str, first: Any, last: Any) -> np.ndarray:
    """True where the period [start, next start) lies inside [``first``, ``last``] within the
    module's tolerance (see the module doc): the periods fits, backtests and trend tests use.
    """
    starts = pd.DatetimeIndex(starts)
    if not len(starts):
        return np.zeros(0, dtype=bool)
    ends = period_ends(starts, freq)
    length = _ns(ends) - _ns(starts)
    missing = length * (1.0 - coverage(starts, freq, first, last))
    allowed = np.maximum((1.0 - MIN_COVERAGE) * length, float(SLACK[freq].value))
    return missing <= allowed


def partial_periods(starts: pd.DatetimeIndex, freq: str, first: Any, last: Any
                    ) -> pd.DataFrame:
    """The periods ``complete_mask`` leaves out, each with its coverage, which edge of the data
    it is on and a sentence for users saying why. Columns: ``period, coverage, edge`` ("first":
    the data starts inside it, "last": ends inside it, "both", or "outside" when the data
    does not reach it) ``, why, end`` (the next period's start), in period order."""
    starts = pd.DatetimeIndex(starts)
    keep = complete_mask(starts, freq, first, last)
    cover = coverage(starts, freq, first, last)
    lo, hi = _naive(first), _naive(last)
    rows = []
    for start, end, c in zip(starts[~keep], period_ends(starts[~keep], freq), cover[~keep],
                             strict=True):
        edge = _edge(start, end, lo, hi, c)
        rows.append({PERIOD: start, COVERAGE: float(c), EDGE: edge,
                     WHY: _why(edge, freq, lo, hi, c), END: end})
    out = pd.DataFrame(rows, columns=[PERIOD, COVERAGE, EDGE, WHY, END])
    for col in (PERIOD, END):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[us]")
    return out


def complete_rows(series: pd.DataFrame, freq: str, first: Any, last: Any) -> pd.DataFrame:
    """The rows of a period series (a ``period`` column of period starts, as
    ``activity_series`` returns) whose period is complete, in their order."""
    keep = complete_mask(pd.DatetimeIndex(series[PERIOD]), freq, first, last)
    return series.loc[keep].reset_index(drop=True)


def overlapping_rows(series: pd.DataFrame, freq: str, first: Any, last: Any) -> pd.DataFrame:
    """The rows of a period series whose period overlaps [``first``, ``last``] (complete or
    partial), in their order: a series filled from a stray timestamp cut to the data's span."""
    starts = pd.DatetimeIndex(series[PERIOD])
    keep = (period_ends(starts, freq) > _naive(first)) & (starts <= _naive(last))
    return series.loc[np.asarray(keep)].reset_index(drop=True)


def bulk_hours(hourly: pd.DataFrame, value: str = EVENTS
               ) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(start of the first hour, start of the last hour) of an hourly series (``period,
    events``) without leading and trailing stray hours (see the module doc); None when the
    series has no events."""
    counts = hourly[value].to_numpy(dtype=float)
    busy = counts[counts > 0]
    if not len(busy):
        return None
    bulk = np.flatnonzero(counts >= max(STRAY_SHARE * float(np.median(busy)), 1.0))
    hours = pd.DatetimeIndex(hourly[PERIOD])
    return pd.Timestamp(hours[bulk[0]]), pd.Timestamp(hours[bulk[-1]])


def describe(parts: pd.DataFrame, freq: str) -> str:
    """The partial periods of ``partial_periods`` as users read them, "" when there are none:
    "the first day (2012-04-03, 25% covered) and the last day (2013-02-16, 11% covered)"."""
    items = []
    for p, c, edge in zip(parts[PERIOD], parts[COVERAGE], parts[EDGE], strict=True):
        which = {"first": "the first ", "last": "the last ", "both": "the only "}.get(edge, "")
        items.append(f"{which}{freq} ({label(p, freq)}, {c:.0%} covered)")
    return " and ".join(items)


def label(period: Any, freq: str) -> str:
    """A period start as users read it: 2013-02-16, 2013-02-16 14:00, week of 2013-02-11,
    2013-02."""
    ts = pd.Timestamp(period)
    if freq == "hour":
        return ts.strftime("%Y-%m-%d %H:00")
    if freq == "week":
        return "week of " + ts.strftime("%Y-%m-%d")
    if freq == "month":
        return ts.strftime("%Y-%m")
    return ts.strftime("%Y-%m-%d")


def _edge(start: pd.Timestamp, end: pd.Timestamp, lo: pd.Timestamp, hi: pd.Timestamp,
          c: float) -> str:
    if c <= 0:
        return "outside"
    if lo > start and hi < end:
        return "both"
    return "first" if lo > start else "last"


def _why(edge: str, freq: str, lo: pd.Timestamp, hi: pd.Timestamp, c: float) -> str:
    when = {"first": f"the data starts at {lo:%Y-%m-%d %H:%M}",
            "last": f"the data ends at {hi:%Y-%m-%d %H:%M}",
            "both": f"the data starts at {lo:%Y-%m-%d %H:%M} and ends at {hi:%Y-%m-%d %H:%M}"}
    if edge not in when:
        return f"the data does not reach this {freq}"
    return f"{when[edge]}, so only {c:.0%} of this {freq} is covered"


def _naive(ts: Any) -> pd.Timestamp:
    """A timestamp as naive UTC in nanoseconds."""
    t = pd.Timestamp(ts)
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return t.as_unit("ns")


def _ns(idx: pd.DatetimeIndex) -> np.ndarray:
    return pd.DatetimeIndex(idx).as_unit("ns").asi8.astype("float64")

"""Memoised analytics for the Overview page, plus the event filter every analytics page shares.

Pages never aggregate themselves: they call these functions, which ask ``analytics.rollups``
(its per-question answers read the dataset's summary tables when they are fresh and can
answer, else run the analyses of ``analytics.temporal`` on the stored events table through the
DuckDB engine; only aggregated rows come back to pandas) and are memoised per dataset,
arguments and import time with ``services.memoize_dataset``. Before answering, the services
make the summary tables fresh (``ensure_rollups``: built on first use).
Results are shared between requests: treat returned frames as read-only.

:class:`EventFilter` is the one description of "which events": a UTC time range (the Overview's
cross-filter), categories, behaviours and an activity segment. It renders as a DuckDB WHERE
clause with ``?`` parameters (for the spatial SQL functions) and as an Ibis filter (for the
engine functions). It is a frozen dataclass, so its ``repr`` is a stable cache key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import pandas as pd

from ...analytics import engine
from ...analytics.rollups import build, lookup
from ...analytics.rollups import temporal as answers
from ...analytics.schema import BEHAVIOR, CATEGORY, TS, USER
from ...analytics.spacetime import clock_text
from . import cache
from .workspace import ServiceError, dataset_info, get_store, memoize_dataset

FREQS = ("hour", "day", "week", "month")
SPLITS = ("none", BEHAVIOR, CATEGORY)
SEGMENTS = ("light", "medium", "heavy")
OTHER = "other"
UNKNOWN = "(none)"
#: Forecast horizon per granularity (periods ahead).
HORIZONS = {"hour": 24, "day": 14, "week": 8, "month": 6}
#: Periods of history fitted per granularity: two weeks of hours keep hourly SARIMA (season
#: 24) to a few seconds; the coarser series use up to two years.
HISTORY = {"hour": 336, "day": 730, "week": 104, "month": 60}
#: Rolling origins of the backtest per granularity.
ORIGINS = {"hour": 4, "day": 8, "week": 8, "month": 6}


# -- the shared filter ----------------------------------------------------------------------
@dataclass(frozen=True)
class EventFilter:
    """Which events an analysis looks at; the default keeps every event.

    ``start`` (inclusive) and ``end`` (exclusive) are ISO timestamps in UTC. ``segment`` is
    one of SEGMENTS: users split into three equal-sized groups by their number of events (as
    ``analytics.evolution.activity_segments`` does).
    """

    start: str | None = None
    end: str | None = None
    categories: tuple[str, ...] = field(default_factory=tuple)
    behaviors: tuple[str, ...] = field(default_factory=tuple)
    segment: str | None = None

    @classmethod
    def make(cls, start: Any = None, end: Any = None, categories: Any = None,
             behaviors: Any = None, segment: Any = None) -> EventFilter:
        """A filter from loose UI values (lists, empty strings, "all"), checked and sorted."""
        seg = segment if segment not in (None, "", "all") else None
        if seg is not None and seg not in SEGMENTS:
            raise ServiceError(f"unknown user segment {seg!r}; pick one of {list(SEGMENTS)}")
        return cls(start=_iso(start), end=_iso(end),
                   categories=tuple(sorted({str(c) for c in categories or ()})),
                   behaviors=tuple(sorted({str(b) for b in behaviors or ()})), segment=seg)

    @property
    def is_empty(self) -> bool:
        return self == EventFilter()

    def where(self, table: str) -> tuple[str | None, list[Any]]:
        """A DuckDB condition on the events of ``table`` and its parameters (None: all)."""
        conds: list[str] = []
        params: list[Any] = []
        if self.start:
            conds.append(f"{TS} >= CAST(? AS TIMESTAMP)")
            params.append(self.start)
        if self.end:
            conds.append(f"{TS} < CAST(? AS TIMESTAMP)")
            params.append(self.end)
        for col, values in ((CATEGORY, self.categories), (BEHAVIOR, self.behaviors)):
            if values:
                conds.append(f"{col} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if self.segment:
            conds.append(
                f"{USER} IN (SELECT {USER} FROM (SELECT {USER}, ntile(3) OVER (ORDER BY "
                f"count(*), {USER}) AS _seg FROM {table} GROUP BY {USER}) WHERE _seg = ?)")
            params.append(SEGMENTS.index(self.segment) + 1)
        return (" AND ".join(conds) or None), params

    def apply(self, t: Any) -> Any:
        """The same filter on an Ibis events table."""
        import ibis

        if self.start:
            t = t.filter(t[TS] >= pd.Timestamp(self.start).to_pydatetime())
        if self.end:
            t = t.filter(t[TS] < pd.Timestamp(self.end).to_pydatetime())
        if self.categories:
            t = t.filter(t[CATEGORY].isin(list(self.categories)))
        if self.behaviors:
            t = t.filter(t[BEHAVIOR].isin(list(self.behaviors)))
        if self.segment:
            per_user = t.group_by(USER).aggregate(_n=t.count())
            ranked = per_user.mutate(_seg=ibis.ntile(3).over(
                order_by=[per_user._n, per_user[USER]]))
            keep = ranked.filter(ranked._seg == SEGMENTS.index(self.segment))[USER]
            t = t.filter(t[USER].isin(keep))
        return t


def _iso(value: Any) -> str | None:
    """A timestamp-like UI value as ``YYYY-MM-DD HH:MM:SS`` (UTC, naive), None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ServiceError(f"{value!r} is not a date or time; use e.g. 2012-05-01 or "
                           "2012-05-01 18:00") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%d %H:%M:%S")


@contextmanager
def dataset_cursor(name: str) -> Iterator[tuple[Any, str]]:
    """(a DuckDB cursor of its own, quoted events table) of dataset ``name`` for the block,
    its summary tables made fresh first (``ensure_rollups``): the ``analytics.rollups``
    answers then read them, or the raw table where there can be none (read-only)."""
    table = get_store().table(name)  # DatasetNotFound with a helpful message
    cur = get_store().cursor()
    try:
        if lookup.enabled():
            build.ensure(cur, name)
        yield cur, table
    finally:
        cur.close()


def ensure_rollups(name: str) -> bool:
    """Build the dataset's summary tables now unless they are fresh (one small query when
    they are); True when the dataset has them. Call after an import or when a dataset is
    opened; every analytics call below does it too."""
    get_store().table(name)  # DatasetNotFound with a helpful message
    if not lookup.enabled():
        return False
    cur = get_store().cursor()
    try:
        return build.ensure(cur, name) is not None
    finally:
        cur.close()


@contextmanager
def events_table(name: str, flt: EventFilter | None = None) -> Iterator[Any]:
    """An Ibis table of a dataset's stored events (filtered), on its own DuckDB cursor.

    Unfiltered, the ``analytics.rollups`` answers read the dataset's summary tables, built
    here on first use."""
    ensure_rollups(name)
    backend = engine.duckdb_backend(get_store())
    try:
        t = engine.events_table(backend, name)
        yield flt.apply(t) if flt is not None and not flt.is_empty else t
    finally:
        backend.con.close()


def sql_where(name: str, flt: EventFilter | None) -> tuple[str, str | None, list[Any]]:
    """(quoted events table, WHERE condition or None, parameters) of a filtered dataset."""
    table = get_store().table(name)
    if flt is None or flt.is_empty:
        ensure_rollups(name)
        return table, None, []
    where, params = flt.where(table)
    return table, where, params


def auto_freq(start: Any, end: Any, target: int = 120) -> str:
    """The coarsest of hour/day/week/month that still gives about ``target`` periods or more
    over [start, end] (day for a missing span)."""
    if start is None or end is None or pd.isna(start) or pd.isna(end):
        return "day"
    hours = (pd.Timestamp(end) - pd.Timestamp(start)) / pd.Timedelta(hours=1)
    for freq, h in (("month", 730.0), ("week", 168.0), ("day", 24.0)):
        if hours / h >= target:
            return freq
    return "hour"


#: The granularities the Overview offers its forecast in.
FORECAST_FREQS = ("hour", "day", "week")


def forecast_freq(name: str) -> str:
    """The Overview's default forecast granularity: about 60 periods over the data's span
    without strays (``robust_span``), one of ``FORECAST_FREQS`` (day when coarser)."""
    freq = auto_freq(*robust_span(name), target=60)
    return freq if freq in FORECAST_FREQS else "day"


def prefit_overview(name: str) -> float:
    """Fit the Overview's forecast (at its default granularity) and periodicity once, right
    after an import's summary tables are built, so their file memos (``cache.FORECASTS``,
    ``cache.PERIODS``) answer the first view; the seconds taken. A dataset too short for a
    forecast is no error here (the page says why)."""
    t0 = time.perf_counter()
    try:
        forecast(name, forecast_freq(name))
    except ServiceError:
        pass
    dominant_periods(name, "hour", None)
    return time.perf_counter() - t0


@memoize_dataset
def robust_span(name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The 1st and 99th percentile of event times: the span without stray timestamps."""
    with dataset_cursor(name) as (cur, table):
        return answers.robust_span(cur, table)


def check_freq(freq: Any) -> str:
    if freq not in FREQS:
        raise ServiceError(f"unknown granularity {freq!r}; pick one of {list(FREQS)}")
    return str(freq)


# -- overview -------------------------------------------------------------------------------
@memoize_dataset
def kpis(name: str, flt: EventFilter | None = None) -> pd.DataFrame:
    """Events, users, items, first/last time of the (filtered) dataset, in one row."""
    with events_table(name, flt) as t:
        return answers.kpis(t)


@memoize_dataset
def top_values(name: str, column: str, n: int = 30) -> pd.DataFrame:
    """The ``n`` most frequent non-null values of ``column`` (category or behavior) with
    their event counts, most frequent first: columns ``value, events``."""
    if column not in (CATEGORY, BEHAVIOR):
        raise ServiceError(f"cannot list values of {column!r}; use {CATEGORY!r} or {BEHAVIOR!r}")
    with dataset_cursor(name) as (cur, table):
        return answers.top_values(cur, table, column, n)


@memoize_dataset
def trend(name: str, freq: str = "day", split: str = "none", flt: EventFilter | None = None,
          top: int = 8) -> pd.DataFrame:
    """Events and users per period, optionally split by behaviour or category.

    With a split the ``top`` most frequent values keep their name and the rest are summed as
    ``other``; events without a value count as ``(none)``. Columns: ``period, [split],
    events, users`` with every period present (zeros where nothing happened).
    """
    check_freq(freq)
    if split not in SPLITS:
        raise ServiceError(f"cannot split the trend by {split!r}; pick one of {list(SPLITS)}")
    with events_table(name, flt) as t:
        if split == "none":
            return answers.activity_series(t, freq)
        keep = top_values(name, split, top)["value"].astype(str).tolist()
        col = t[split]
        label = col.isnull().ifelse(UNKNOWN, col.isin(keep).ifelse(col, OTHER))
        return answers.activity_series(t.mutate(**{split: label}), freq, by=split)


@memoize_dataset
def event_series(name: str, freq: str = "day", flt: EventFilter | None = None) -> pd.DataFrame:
    """Events per period, every period present (no distinct users: what forecasts and
    periodicity need, answered from the hourly rollup without counting users)."""
    with events_table(name, flt) as t:
        return answers.activity_series(t, check_freq(freq), users=None)


@memoize_dataset
def user_activity(name: str, freq: str = "day", flt: EventFilter | None = None) -> pd.DataFrame:
    """Active, new and returning users per period (``analytics.temporal.active_users``)."""
    with events_table(name, flt) as t:
        return answers.active_users(t, check_freq(freq))


def tz_fallback(name: str) -> tuple[int | None, str]:
    """(offset in minutes used where ``tz_offset_min`` is unknown, text saying which time).

    The one rule is ``analytics.spacetime.clock_text``: datasets imported with the local-time
    step name their basis (the file's offsets, the time zone at each event's coordinates, the
    longitude estimate at sea, UTC without coordinates); older datasets use their offsets, else
    the solar time zone of their median longitude (New York: UTC-5), else UTC.
    """
    with dataset_cursor(name) as (cur, table):
        known, lon = answers.tz_facts(cur, table)
    extra = (dataset_info(name).report or {}).get("extra")
    return clock_text(extra if isinstance(extra, dict) else None, known, lon)


@memoize_dataset
def rhythm(name: str, flt: EventFilter | None = None) -> pd.DataFrame:
    """Events per weekday (0 = Monday) x hour in local time; ``attrs["clock"]`` says which."""
    fallback, clock = tz_fallback(name)
    with events_table(name, flt) as t:
        out = answers.rhythm_matrix(t, local=True, tz_fallback_min=fallback)
    out.attrs["clock"] = clock
    return out


@memoize_dataset
def dominant_periods(name: str, freq: str = "hour", flt: EventFilter | None = None,
                     top: int = 3) -> pd.DataFrame:
    """The significant periods of the activity series, strongest first
    (``analytics.temporal.activity.dominant_periods``: each beats a shuffled baseline and
    fits at least three times; empty when there is none or the series is too short). Only
    the complete periods inside the data's span count (``data_span``): weeks of empty hours
    before a stray timestamp are no part of any cycle."""
    from ...analytics.temporal import activity as temporal
    from ...analytics.temporal import periods

    series = event_series(name, check_freq(freq), flt)
    try:
        span = data_span(name, flt)
        inside = periods.overlapping_rows(series, freq, span.first, span.last)
        complete = periods.complete_rows(inside, freq, span.first, span.last)
        return cache.PERIODS.get_or_compute(
            get_store().path.parent, _fit_key(complete, ("dominant_periods", top)),
            lambda: temporal.dominant_periods(complete, top=top))
    except (ValueError, ServiceError):
        return pd.DataFrame(columns=[temporal.LAG, temporal.PERIOD_LENGTH, temporal.STRENGTH,
                                     temporal.BASELINE, temporal.METHOD])


class DataSpan(NamedTuple):
    """First and last event time without strays, and the stray events left out."""

    first: pd.Timestamp
    last: pd.Timestamp
    strays: int


@dataclass(frozen=True)
class ForecastResult:
    """History, forecast with interval, and the rolling-origin backtest of both models, fitted
    on complete periods only (partial first and last periods are shown, flagged, never
    fitted)."""

    history: pd.DataFrame     # period, events, partial: the fit window's last periods and a
    #                           partial last period after them
    forecast: pd.DataFrame    # period, forecast, lower, upper
    backtest: pd.DataFrame    # model, origins, horizon, mae, mape, smape, mase (may be empty)
    freq: str
    horizon: int
    note: str                 # why the backtest is missing, else ""
    model: str = ""           # e.g. SARIMA(1,0,1)(0,1,1)[7]
    partial: pd.DataFrame = field(default_factory=pd.DataFrame)  # period, coverage, edge, why
    partial_note: str = ""    # the partial periods left out, for users; "" when none
    span: DataSpan | None = None  # the events' span the partial periods are judged against
    mape_note: str = ""       # why MAPE is not shown, else ""


@memoize_dataset
def data_span(name: str, flt: EventFilter | None = None) -> DataSpan:
    """The span of the (filtered) dataset's events that partial periods are judged against:
    from the first to the last event, leaving out stray timestamps at either end
    (``analytics.temporal.periods.bulk_hours``). Raises ServiceError when there are no
    events."""
    from ...analytics.temporal import periods

    row = kpis(name, flt).iloc[0]
    if pd.isna(row["first_ts"]) or pd.isna(row["last_ts"]):
        raise ServiceError("no events in this selection")
    bulk = periods.bulk_hours(event_series(name, "hour", flt))
    first, last = pd.Timestamp(row["first_ts"]), pd.Timestamp(row["last_ts"])
    if bulk is None or (bulk[0] <= first and last < bulk[1] + pd.Timedelta(hours=1)):
        return DataSpan(first, last, 0)
    flt = flt or EventFilter()
    start = max(pd.Timestamp(flt.start), bulk[0]) if flt.start else bulk[0]
    end = bulk[1] + pd.Timedelta(hours=1)
    end = min(pd.Timestamp(flt.end), end) if flt.end else end
    inner = kpis(name, replace(flt, start=_iso(start), end=_iso(end))).iloc[0]
    return DataSpan(pd.Timestamp(inner["first_ts"]), pd.Timestamp(inner["last_ts"]),
                    int(row["events"]) - int(inner["events"]))


@memoize_dataset
def partial_periods(name: str, freq: str, flt: EventFilter | None = None) -> pd.DataFrame:
    """The partial periods (``analytics.temporal.periods.partial_periods``) of dataset
    ``name``'s (filtered) ``freq`` series within its span (``data_span``): ``period,
    coverage, edge, why``."""
    from ...analytics.temporal import periods

    series = event_series(name, check_freq(freq), flt)
    if series.empty:
        return periods.partial_periods(pd.DatetimeIndex([]), freq, 0, 0)
    first, last, _ = data_span(name, flt)
    series = periods.overlapping_rows(series, freq, first, last)
    return periods.partial_periods(pd.DatetimeIndex(series[engine.PERIOD]), freq, first, last)


def stray_note(span: DataSpan) -> str:
    """A sentence for users on the stray events left out of the span, "" when none."""
    if not span.strays:
        return ""
    s = "s" if span.strays > 1 else ""
    return (f"{span.strays:,} event{s} with times far from the rest (before "
            f"{span.first:%Y-%m-%d %H:%M} or after {span.last:%Y-%m-%d %H:%M}) "
            f"{'are' if s else 'is'} treated as stray and left out of the forecast.")


def partial_note(parts: pd.DataFrame, freq: str, left_out: str) -> str:
    """A sentence for users on the partial periods, "" when there are none: "The last day
    (2013-02-16, 10% covered) is partial: <left_out>."."""
    from ...analytics.temporal import periods

    text = periods.describe(parts, freq)
    if not text:
        return ""
    verb = "is" if len(parts) == 1 else "are"
    return f"{text[0].upper()}{text[1:]} {verb} partial: {left_out}."


#: Part of the file-memo keys of the forecast and the periodicity: bump when their code
#: changes their answers.
FIT_VERSION = 1


def _fit_key(series: pd.DataFrame, args: tuple) -> str:
    """Everything a fit on ``series`` (forecast, periodicity) is computed from: the series'
    values, the arguments, this code's, numpy's and statsmodels' versions."""
    import hashlib

    import numpy
    import statsmodels

    values = hashlib.sha256(pd.util.hash_pandas_object(series, index=False).to_numpy())
    return (f"{FIT_VERSION}|{numpy.__version__}|{statsmodels.__version__}|"
            f"{list(series.columns)}|{values.hexdigest()}|{args!r}")


@memoize_dataset
def forecast(name: str, freq: str = "day", horizon: int | None = None,
             alpha: float = 0.05) -> ForecastResult:
    """SARIMA forecast of events per ``freq`` with a 1 - alpha interval, and its backtest
    against the seasonal-naive baseline (``analytics.temporal.forecast.complete_forecast``),
    both on complete periods only. Raises ServiceError with a hint when the series is too
    short."""
    from ...analytics.temporal import forecast as fc
    from ...analytics.temporal import periods

    check_freq(freq)
    horizon = int(horizon or HORIZONS[freq])
    series = event_series(name, freq)
    fitted = HISTORY[freq]
    # hourly: AR(1) with a seasonal MA at lag 24 fits ~5x faster than the default ARMA(1,1)
    # part, with the same backtest error on the shared datasets
    spec = fc.ModelSpec(order=(1, 0, 0), seasonal_order=(0, 1, 1), season=24) \
        if freq == "hour" and len(series) >= 72 else None
    span = data_span(name)
    args = (freq, span.first, span.last, horizon, alpha, spec, fitted, ORIGINS[freq])
    try:
        got = cache.FORECASTS.get_or_compute(
            get_store().path.parent, _fit_key(series, args),
            lambda: answers.complete_forecast(series, *args))
    except ValueError as exc:
        adjective = {"hour": "hourly", "day": "daily", "week": "weekly", "month": "monthly"}
        raise ServiceError(f"no {adjective[freq]} forecast: {exc}") from exc
    keep = min(max(4 * horizon, 60), fitted)
    shown = periods.overlapping_rows(series[[engine.PERIOD, engine.EVENTS]], freq,
                                     span.first, span.last)
    shown = shown[shown[engine.PERIOD] >= got.fitted[engine.PERIOD].iloc[-keep:].min()]
    history = shown.assign(partial=shown[engine.PERIOD].isin(got.partial[engine.PERIOD]))
    return ForecastResult(
        history=history.reset_index(drop=True), forecast=got.forecast, backtest=got.backtest,
        freq=freq, horizon=horizon, note=got.note, model=fc.describe_spec(got.spec),
        partial=got.partial, mape_note=got.mape_note, span=span,
        partial_note=" ".join(n for n in (
            partial_note(got.partial, freq, "left out of the forecast and its backtest"),
            stray_note(span)) if n))


def forecast_summary(name: str, freq: str = "day") -> dict[str, Any]:
    """The Overview forecast of dataset ``name`` as one JSON-safe dict (``trailscope
    aggregate forecast NAME --json``): ``dataset, freq, model, history`` (``period, events,
    partial``), ``forecast`` (``period, yhat, lo, hi``), ``backtest`` (the model's ``mase,
    smape, mape`` (null when an actual is near zero), ``mape_note, mae, horizon, origins``,
    the seasonal-naive ``baseline`` and ``note``), ``partial_periods`` (``period, coverage,
    why``), ``partial_note`` and ``span`` (``first, last`` event judged against and the
    ``stray_events`` left out)."""
    res = forecast(name, check_freq(freq))
    bt = res.backtest.set_index("model") if len(res.backtest) else pd.DataFrame()

    def metrics(model: str) -> dict[str, Any]:
        if model not in bt.index:
            return {}
        row = bt.loc[model]
        return {k: _num(row[k]) for k in ("mase", "smape", "mape", "mae")}

    backtest = {**metrics("sarima"), "mape_note": res.mape_note or None,
                "horizon": res.horizon,
                "origins": int(bt["origins"].iloc[0]) if len(bt) else 0,
                "baseline": {"model": "seasonal_naive", **metrics("seasonal_naive")},
                "note": res.note or None}
    return {
        "dataset": name, "freq": res.freq, "model": res.model,
        "history": [{"period": _iso_period(p), "events": int(e), "partial": bool(q)}
                    for p, e, q in res.history[["period", "events", "partial"]].itertuples(
                        index=False)],
        "forecast": [{"period": _iso_period(p), "yhat": _num(y), "lo": _num(lo),
                      "hi": _num(hi)} for p, y, lo, hi in res.forecast[
                          ["period", "forecast", "lower", "upper"]].itertuples(index=False)],
        "backtest": backtest,
        "partial_periods": [{"period": _iso_period(p), "coverage": round(float(c), 4),
                             "why": str(w)} for p, c, w in res.partial[
                                 ["period", "coverage", "why"]].itertuples(index=False)],
        "partial_note": res.partial_note or None,
        "span": None if res.span is None else {
            "first": res.span.first.isoformat(), "last": res.span.last.isoformat(),
            "stray_events": res.span.strays},
    }


def _num(x: Any) -> float | None:
    """A float for JSON, None for NaN."""
    return None if x is None or pd.isna(x) else round(float(x), 4)


def _iso_period(p: Any) -> str:
    return pd.Timestamp(p).isoformat()


@memoize_dataset
def cohorts(name: str, freq: str = "week", max_periods: int = 26) -> pd.DataFrame:
    """Cohort x periods-since retention table (rates; NaN where a cohort has not got there)."""
    from ...analytics.temporal import cohorts as co

    with events_table(name) as t:
        long = answers.cohort_retention(t, check_freq(freq), max_periods=max_periods)
    table = co.retention_table(long)
    if not table.empty:
        table.attrs["sizes"] = long.groupby(co.COHORT)[co.COHORT_SIZE].first().reindex(
            table.index).tolist()
    return table


def cohort_freq(name: str) -> str:
    """Week cohorts for spans up to about a year, month cohorts beyond."""
    info = dataset_info(name)
    if info.time_min is None or info.time_max is None:
        return "week"
    days = (pd.Timestamp(info.time_max) - pd.Timestamp(info.time_min)).days
    return "week" if days <= 400 else "month"

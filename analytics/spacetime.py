"""Time windows and local time for the spatial analytics (density, zones, mobility).

A *window* splits the time axis into bins; every windowed result carries the bin's start in
a ``window_start`` column (UTC, naive, like ``ts``). Accepted specs:

* a calendar name: ``"hour"``, ``"day"``, ``"week"`` (ISO, starting Monday), ``"month"``,
  ``"quarter"``, ``"year"``;
* a fixed width: a ``pd.Timedelta`` or a string pandas reads as one (``"6h"``, ``"2D"``),
  counted from 1970-01-01 00:00;
* custom bins: a sorted sequence of at least two edges; bin i is [edge_i, edge_i+1) and
  events outside [first, last) belong to no window (dropped by windowed aggregations).

Each spec has a pandas form (:func:`window_start`) and a DuckDB form (:func:`window_sql`)
that put every timestamp in the same bin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from .schema import LON, TS, TZ_OFFSET

WINDOW = "window_start"

Window = str | pd.Timedelta | Sequence | None

CALENDAR: dict[str, tuple[str, str]] = {
    # name: (numpy unit used to floor, pandas frequency of consecutive starts)
    "hour": ("h", "h"),
    "day": ("D", "D"),
    "week": ("W", "W-MON"),
    "month": ("M", "MS"),
    "quarter": ("Q", "QS"),
    "year": ("Y", "YS"),
}


def _parse(window: Window) -> tuple[str, object]:
    """('calendar', name) | ('fixed', Timedelta) | ('edges', DatetimeIndex)."""
    if isinstance(window, str):
        key = window.strip().lower()
        if key in CALENDAR:
            return "calendar", key
        try:
            width = pd.Timedelta(window)
        except ValueError as exc:
            raise ValueError(
                f"unknown time window {window!r}: use one of {', '.join(CALENDAR)}, a fixed "
                "width such as '6h' or '2D', or a list of bin edges"
            ) from exc
        window = width
    if isinstance(window, pd.Timedelta):
        if window <= pd.Timedelta(0):
            raise ValueError(f"time window width must be positive, got {window}")
        return "fixed", window
    if isinstance(window, Sequence | np.ndarray | pd.Index | pd.Series):
        edges = pd.DatetimeIndex(pd.to_datetime(list(window)))
        if edges.tz is not None:
            edges = edges.tz_convert("UTC").tz_localize(None)
        if len(edges) < 2 or not edges.is_monotonic_increasing or edges.has_duplicates:
            raise ValueError(
                "custom time bins need at least two strictly increasing edges, "
                f"got {list(window)!r}"
            )
        return "edges", edges.astype("datetime64[us]")
    raise ValueError(f"unsupported time window {window!r}: pass a name, a width or edges")


def utc_naive(ts: pd.Series) -> np.ndarray:
    """Timestamps as a naive UTC ``datetime64[us]`` numpy array (tz-aware input converted)."""
    s = pd.to_datetime(ts)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.to_numpy(dtype="datetime64[us]")


def window_start(ts: pd.Series, window: Window) -> pd.Series:
    """Start of the window containing each timestamp (NaT outside custom edges or for NaT)."""
    kind, spec = _parse(window)
    t = utc_naive(ts)
    nat = np.isnat(t)
    if kind == "calendar":
        unit = CALENDAR[spec][0]
        if unit == "W":  # ISO weeks start Monday; 1970-01-01 was a Thursday (weekday 3)
            d = t.astype("datetime64[D]").astype("int64")
            out = (d - (d + 3) % 7).astype("datetime64[D]")
        elif unit == "Q":
            m = t.astype("datetime64[M]").astype("int64")
            out = (m - m % 3).astype("datetime64[M]")
        else:
            out = t.astype(f"datetime64[{unit}]")
        out = out.astype("datetime64[us]")
    elif kind == "fixed":
        w = int(spec / pd.Timedelta(microseconds=1))
        us = t.astype("int64")
        out = ((us // w) * w).astype("datetime64[us]")
    else:
        edges = spec.to_numpy(dtype="datetime64[us]")
        i = np.searchsorted(edges, t, side="right") - 1
        inside = (i >= 0) & (i < len(edges) - 1)
        out = np.where(inside, edges[np.clip(i, 0, len(edges) - 1)], np.datetime64("NaT"))
        nat |= ~inside
    out = np.where(nat, np.datetime64("NaT"), out).astype("datetime64[us]")
    return pd.Series(out, index=ts.index, name=WINDOW)


def window_starts_us(us: np.ndarray, window: Window) -> np.ndarray:
    """:func:`window_start` of times in microseconds since 1970, in microseconds (NaT's
    int64, ``np.iinfo(np.int64).min``, outside custom edges)."""
    return _per_day(us, window, lambda t: _starts_us(t, window))


def window_index(us: np.ndarray, window: Window, starts: pd.DatetimeIndex) -> np.ndarray:
    """Index in ``starts`` (:func:`all_windows` of a span holding them) of the window of each
    time given in microseconds since 1970 (:func:`window_start`'s rule); -1 where there is
    none (outside custom edges)."""
    bounds = starts.to_numpy("datetime64[us]").view(np.int64)

    def index(times: np.ndarray) -> np.ndarray:
        first = _starts_us(times, window)
        i = np.searchsorted(bounds, first)
        found = i < len(bounds)
        found[found] = bounds[i[found]] == first[found]
        return np.where(found, i, -1)

    return _per_day(us, window, index)


def _starts_us(times: np.ndarray, window: Window) -> np.ndarray:
    return window_start(pd.Series(times.view("datetime64[us]")), window).to_numpy(
        "datetime64[us]").view(np.int64)


def _per_day(us: np.ndarray, window: Window,
             per_time: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``per_time`` of each time (microseconds since 1970), computed once per day when every
    window of ``window`` starts at midnight (all of a day's times share their window)."""
    us = np.asarray(us, np.int64)
    if not len(us):
        return np.zeros(0, np.int64)
    if _whole_days(window):
        day = us // _DAY_US
        d0 = int(day.min())
        return per_time(np.arange(d0, int(day.max()) + 1) * _DAY_US)[day - d0]
    return per_time(us)


_DAY_US = 86_400_000_000


def _whole_days(window: Window) -> bool:
    """Whether every boundary of ``window`` falls at midnight (UTC)."""
    kind, spec = _parse(window)
    if kind == "calendar":
        return spec != "hour"
    if kind == "fixed":
        return int(spec / pd.Timedelta(microseconds=1)) % _DAY_US == 0
    return bool((spec.to_numpy("datetime64[us]").view(np.int64) % _DAY_US == 0).all())


def _ts_literal(t: pd.Timestamp) -> str:
    return f"TIMESTAMP '{t.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def window_sql(window: Window, ts: str = TS) -> tuple[str, str]:
    """(DuckDB expression of the window start, condition selecting rows inside a window)."""
    kind, spec = _parse(window)
    if kind == "calendar":
        return f"CAST(date_trunc('{spec}', {ts}) AS TIMESTAMP)", "TRUE"
    if kind == "fixed":
        w = int(spec / pd.Timedelta(microseconds=1))
        # exact integer floor division (// truncates toward zero for pre-1970 times)
        return (f"make_timestamp((epoch_us({ts}) - (((epoch_us({ts}) % {w}) + {w}) % {w})))",
                "TRUE")
    edges = list(spec)
    whens = " ".join(
        f"WHEN {ts} < {_ts_literal(hi)} THEN {_ts_literal(lo)}"
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    )
    cond = f"({ts} >= {_ts_literal(edges[0])} AND {ts} < {_ts_literal(edges[-1])})"
    return f"(CASE {whens} END)", cond


def all_windows(first: pd.Timestamp, last: pd.Timestamp, window: Window) -> pd.DatetimeIndex:
    """Every window start from the window of ``first`` to the window of ``last`` inclusive."""
    kind, spec = _parse(window)
    if kind == "edges":
        return pd.DatetimeIndex(spec[:-1])
    lo, hi = window_start(pd.Series([first, last]), window)
    if pd.isna(lo):
        return pd.DatetimeIndex([], dtype="datetime64[us]")
    freq = CALENDAR[spec][1] if kind == "calendar" else spec
    return pd.date_range(lo, hi, freq=freq).astype("datetime64[us]")


def solar_offset_min(lon: float | np.ndarray) -> int | np.ndarray:
    """Minutes east of UTC of the solar time zone at longitude ``lon``: round(lon / 15) hours
    (halves to even). The local-time rule for events without ``tz_offset_min``: right within
    an hour for most places, no DST. A scalar gives an int; an array a float array (NaN where
    ``lon`` is NaN)."""
    if np.ndim(lon) == 0:
        return int(round(float(lon) / 15.0)) * 60
    return np.round(np.asarray(lon, dtype="float64") / 15.0) * 60.0


def solar_offset_sql(lon: str) -> str:
    """SQL form of :func:`solar_offset_min` (INTEGER minutes, halves to even; NULL for a NULL
    longitude): the same rule where DuckDB fills offsets (analytics/ingest/localtime.py)."""
    return f"(CAST(round_even({lon} / 15.0, 0) AS INTEGER) * 60)"


def offset_minutes(tz: np.ndarray, lon: np.ndarray | None = None) -> np.ndarray:
    """Each event's local clock in minutes east of UTC: ``tz`` (NaN where unknown), else the
    solar zone of ``lon`` (when given, :func:`solar_offset_min`), else 0 (UTC)."""
    offset = tz if lon is None else np.where(np.isnan(tz), solar_offset_min(lon), tz)
    return np.nan_to_num(offset, nan=0.0).astype("int64")


def local_time(df: pd.DataFrame,
               fallback: Literal["longitude", "utc"] = "longitude") -> pd.Series:
    """Local wall-clock time of each event: ``ts`` shifted by ``tz_offset_min`` when known.

    Where the offset is unknown, ``fallback="longitude"`` uses the solar-time zone
    (:func:`solar_offset_min`), ``"utc"`` keeps UTC.
    """
    if fallback not in ("longitude", "utc"):
        raise ValueError(f"unknown local-time fallback {fallback!r}: use 'longitude' or 'utc'")
    t = utc_naive(df[TS])
    offset = np.full(len(df), np.nan)
    if TZ_OFFSET in df.columns:
        offset = pd.to_numeric(df[TZ_OFFSET]).to_numpy(dtype="float64", na_value=np.nan)
    lon = (pd.to_numeric(df[LON]).to_numpy(dtype="float64", na_value=np.nan)
           if fallback == "longitude" and LON in df.columns else None)
    local = t + offset_minutes(offset, lon).astype("timedelta64[m]")
    return pd.Series(local, index=df.index, name="local_ts")


# -- which clock a dataset's local times follow ------------------------------------------------
#: Where an event's ``tz_offset_min`` came from (keys of the import report's
#: ``extra["local_time"]["events"]``, written by analytics/ingest/localtime.py):
#: the file's own offsets (a tz column or ``+hh:mm`` in the times), the format's fixed zone
#: (Taobao, Tianchi: China), the IANA time zone at the event's coordinates (with daylight
#: saving), the solar zone of its longitude (coordinates in no zone: open sea), or none (no
#: coordinates: the event stays in UTC).
BASIS_FILE = "file offsets"
BASIS_FORMAT = "format time zone"
BASIS_ZONE = "time zone from coordinates"
BASIS_LONGITUDE = "longitude estimate"
BASIS_UTC = "UTC"
BASES: tuple[str, ...] = (BASIS_FILE, BASIS_FORMAT, BASIS_ZONE, BASIS_LONGITUDE, BASIS_UTC)

_BASIS_TEXT = {
    BASIS_FILE: "local time from the time-zone offsets given in the file",
    BASIS_FORMAT: "local time of the time zone the data comes from",
    BASIS_ZONE: "local time from each event's time zone (looked up from its coordinates, "
                "with daylight saving)",
    BASIS_LONGITUDE: "local time estimated from each event's longitude (no daylight saving)",
    BASIS_UTC: "UTC (the file gives no time-zone offsets and no coordinates)",
}
_BASIS_SHORT = {
    BASIS_FILE: "local time from the file's offsets",
    BASIS_FORMAT: "local time of the data's own time zone",
    BASIS_ZONE: "local time from the time zone at their coordinates",
    BASIS_LONGITUDE: "local time estimated from their longitude",
    BASIS_UTC: "UTC, having neither an offset nor coordinates",
}


def _share(n: int, total: int) -> str:
    pct = 100.0 * n / total
    return f"{pct:.0f}%" if pct >= 1 else "under 1%"


def clock_text(report_extra: dict | None, tz_known: int,
               lon_median: float | None) -> tuple[int | None, str]:
    """(offset in minutes for events whose ``tz_offset_min`` is unknown, or None for UTC;
    the sentence saying which clock the dataset's local times show).

    Datasets imported with the local-time step carry ``report_extra["local_time"]``: every
    event with coordinates got its offset at import, the rest are UTC, so no fallback applies
    and the sentence names the basis (and the share of any other basis). Older datasets
    (no such key) keep the earlier rule: the events' own offsets when some are known, else
    the solar zone of the median longitude ``lon_median``, else UTC.
    """
    info = (report_extra or {}).get("local_time")
    raw = info.get("events") if isinstance(info, dict) else None
    counts = {b: int(n) for b, n in (raw if isinstance(raw, dict) else {}).items()
              if b in _BASIS_TEXT and int(n) > 0}
    if counts:
        total = sum(counts.values())
        main = max(counts, key=lambda b: counts[b])
        text = _BASIS_TEXT[main]
        zones = [str(z) for z in info.get("zones") or []]
        if main == BASIS_ZONE and zones:
            text += (f": {zones[0]}" if len(zones) == 1
                     else f", mostly {', '.join(zones[:3])}")
        others = [f"{_share(n, total)} of events: {_BASIS_SHORT[b]}"
                  for b, n in sorted(counts.items(), key=lambda kv: -kv[1]) if b != main]
        return None, "; ".join([text, *others])
    if tz_known:
        return None, "local time (from the events' time-zone offsets)"
    if lon_median is not None:
        minutes = solar_offset_min(lon_median)
        return minutes, f"local time estimated from longitude (UTC{minutes / 60:+.0f}, no DST)"
    return None, "UTC (the dataset has no time-zone offsets or coordinates)"

"""Timestamp recognition: guess a column's time format from samples, then parse it in DuckDB SQL.

Stored timestamps are naive UTC (analytics/schema.py). Recognised forms:

* ``unix``: seconds or milliseconds since 1970, decided per value by magnitude (a value of
  1e11 or more is milliseconds: 1e11 s would be the year 5138, 1e11 ms is 1973);
* ``iso``: ISO 8601 / SQL, e.g. ``2012-04-07 17:42``, ``2012-04-03T18:00:09Z``,
  ``2012-04-03 18:00:09.5+02:00`` (an offset or ``Z`` is converted to UTC; without one the
  time is taken as UTC);
* ``tsmc``: Foursquare TSMC2014's ``Tue Apr 03 18:00:09 +0000 2012``;
* ``date_hour``: Tianchi's ``2014-12-06 02`` (date and hour);
* ``auto``: try all of the above, in that order, row by row (slower; used for mixed columns).

The SQL needs the session time zone pinned to UTC (:data:`SESSION_SQL`) so that converting a
``TIMESTAMPTZ`` to ``TIMESTAMP`` yields UTC wall time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime

#: Run once on the cursor that evaluates the expressions below.
SESSION_SQL = "SET TimeZone = 'UTC'"

TIME_KINDS: tuple[str, ...] = ("unix", "iso", "tsmc", "date_hour", "auto")

TSMC_FORMAT = "%a %b %d %H:%M:%S %z %Y"
DATE_HOUR_FORMAT = "%Y-%m-%d %H"
#: Extra layouts tried by ``auto`` after the ones above.
OTHER_FORMATS: tuple[str, ...] = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d",
                                  "%d.%m.%Y %H:%M:%S", "%Y%m%dT%H%M%S")

#: Times outside [TIME_MIN, TIME_MAX) are rejected row by row (reason ``time_out_of_range``):
#: sentinels like ``0001-01-01``, ``9999-12-31 23:59:59`` or unix ``-62135596800`` are no
#: events, and the bounds keep every kept time inside pandas' nanosecond range (1677-2262)
#: and Python's ``datetime``, which the analyses and the report's arithmetic rely on.
TIME_MIN = "1900-01-01"
TIME_MAX = "2200-01-01"

#: A number at or above this is milliseconds, below it seconds.
MS_THRESHOLD = 1e11
#: Numbers at or above this are not accepted as times at all (microseconds, garbage).
MAX_UNIX_MS = 1e14

_PATTERNS: dict[str, re.Pattern[str]] = {
    "unix": re.compile(r"^[+-]?\d+(\.\d+)?$"),
    "iso": re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?"
                      r"\s*(Z|z|[+-]\d{2}(:?\d{2})?)?)?$"),
    "tsmc": re.compile(r"^[A-Za-z]{3} [A-Za-z]{3} \d{1,2} \d{2}:\d{2}:\d{2} [+-]\d{4} \d{4}$"),
    "date_hour": re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}$"),
}
#: Plain ISO layouts (no offset, no fraction, two-digit fields) -> the strptime format with
#: which DuckDB's CSV reader parses them natively. The reader refuses any value that does not
#: fit the format exactly, and every value it takes gets the same time as :func:`iso_sql`.
PLAIN_ISO: dict[str, re.Pattern[str]] = {
    "%Y-%m-%d %H:%M:%S": re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"),
    "%Y-%m-%dT%H:%M:%S": re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"),
    "%Y-%m-%d %H:%M": re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"),
    "%Y-%m-%d": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
}
_OFFSET_RE = re.compile(r"[T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(?P<off>[+-]\d{2}(:?\d{2})?)$")


def matches(kind: str, value: str) -> bool:
    """True if ``value`` looks like time form ``kind`` (one of :data:`TIME_KINDS` but auto)."""
    return bool(_PATTERNS[kind].match(value.strip()))


def detect_kind(values: Iterable[str | None]) -> str:
    """The time form most of the non-empty ``values`` have, or ``"auto"`` if none dominates."""
    vals = [v.strip() for v in values if v is not None and str(v).strip()]
    if not vals:
        return "auto"
    best, best_n = "auto", 0
    for kind in ("unix", "iso", "tsmc", "date_hour"):
        n = sum(1 for v in vals if _PATTERNS[kind].match(v))
        if n > best_n:
            best, best_n = kind, n
    return best if best_n == len(vals) else "auto"


def plain_iso_format(values: Iterable[str | None]) -> str | None:
    """The :data:`PLAIN_ISO` format every non-empty value has, or None."""
    vals = [str(v) for v in values if v is not None and str(v) != ""]
    for fmt, pattern in PLAIN_ISO.items():
        if vals and all(pattern.match(v) for v in vals):
            return fmt
    return None


def has_local_offsets(values: Iterable[str | None]) -> bool:
    """True if some ISO values carry a non-zero ``+hh:mm``/``-hhmm`` offset: the offset of
    where the event happened. ``Z`` and ``+00:00`` on every value are a UTC marker instead
    (SNAP Gowalla's ``2010-10-19T23:55:27Z``, ``2012-04-03 18:00:09+00:00`` in GETNext's
    CSVs): the times are UTC and say nothing of local time."""
    for v in values:
        m = _OFFSET_RE.search(str(v).strip()) if v is not None else None
        if m and m.group("off").strip("+-:0"):
            return True
    return False


#: Unix times before this (1990-01-01) in a whole numeric column are taken for something
#: else (hours, weekdays, counts, codes) and refused: event logs of that age are rare, and
#: those can give their times as dates.
UNIX_MIN_S = 631152000


def _unix_seconds(v: float) -> float:
    return v / 1000.0 if abs(v) >= MS_THRESHOLD else v


def _num(v: float) -> str:
    return f"{v:.0f}" if v == int(v) else f"{v:g}"


def _year(seconds: float) -> str:
    try:
        return str(datetime.fromtimestamp(seconds, UTC).year)
    except (OverflowError, OSError, ValueError):
        return "before 1900"


def _yyyymmdd(x: float) -> bool:
    """``x`` reads as a date written YYYYMMDD (e.g. 20120403)."""
    if x != int(x) or not 19000101 <= x < 22000101:
        return False
    month, day = int(x) // 100 % 100, int(x) % 100
    return 1 <= month <= 12 and 1 <= day <= 31


def not_a_time(values: Iterable[str | None]) -> str | None:
    """Why a numeric time column's sampled ``values`` cannot be timestamps (what they look
    like, for the user), or None when they may be unix times."""
    vals = [str(v).strip() for v in values if v is not None and str(v).strip()]
    try:
        nums = [float(v) for v in vals]
    except ValueError:
        return None
    if not nums or not all(math.isfinite(x) for x in nums):
        return None
    lo, hi = min(nums), max(nums)

    def held(kind: str) -> str:
        return (f"holds {kind}s from {_num(lo)} to {_num(hi)}" if lo != hi
                else f"holds only the {kind} {_num(lo)}")

    if all(x == int(x) for x in nums) and lo >= 0 and hi <= 23:
        like = ("days of the week (or hours of the day)" if hi <= 7
                else "hours of the day")
        return (f"{held('whole number')}, which {'look' if lo != hi else 'looks'} like {like}, "
                "not timestamps")
    if all(_unix_seconds(x) < UNIX_MIN_S for x in nums):
        if all(_yyyymmdd(x) for x in nums):
            return (f"{held('number')}, which look like dates written as YYYYMMDD, not "
                    "timestamps: as unix time they would all fall in 1970")
        first, last = _year(_unix_seconds(lo)), _year(_unix_seconds(hi))
        years = f"in {first}" if first == last else f"between {first} and {last}"
        return (f"{held('number')}, which as unix time (seconds or milliseconds since "
                f"1970) would all fall {years}: they look like counts or codes, not "
                "timestamps")
    return None


def not_a_time_help() -> str:
    """What a time column needs to hold (the end of a refusal by :func:`not_a_time`)."""
    return ("map a column with a date and time (e.g. 2012-04-03 18:00:09) or unix seconds "
            "(e.g. 1333476009) as the time; a file with times before 1990 needs them as "
            "dates")


def _q(fmt: str) -> str:
    return "'" + fmt.replace("'", "''") + "'"


def unix_sql(x: str) -> str:
    """SQL: unix seconds/milliseconds text ``x`` -> naive UTC TIMESTAMP (NULL if not a time)."""
    d = f"TRY_CAST({x} AS DOUBLE)"
    return (f"(CASE WHEN abs({d}) < {MS_THRESHOLD:.0f} "
            f"THEN make_timestamp(CAST(round({d} * 1000000) AS BIGINT)) "
            f"WHEN abs({d}) < {MAX_UNIX_MS:.0f} "
            f"THEN make_timestamp(CAST(round({d} * 1000) AS BIGINT)) END)")


def iso_sql(x: str) -> str:
    """SQL: ISO 8601 text -> naive UTC TIMESTAMP. Values with an offset or Z (a '+', a final
    Z, or a '-' after the first ':') take the slower time-zone-aware cast; plain ones (the
    common case) the fast one."""
    return (f"(CASE WHEN contains({x}, '+') OR ends_with({x}, 'Z') OR ends_with({x}, 'z') "
            f"OR {x} LIKE '%:%-%' THEN CAST(TRY_CAST({x} AS TIMESTAMPTZ) AS TIMESTAMP) "
            f"ELSE TRY_CAST({x} AS TIMESTAMP) END)")


def tsmc_sql(x: str) -> str:
    return f"CAST(try_strptime({x}, {_q(TSMC_FORMAT)}) AS TIMESTAMP)"


def date_hour_sql(x: str) -> str:
    return f"try_strptime({x}, {_q(DATE_HOUR_FORMAT)})"


def other_sql(x: str) -> str:
    fmts = ", ".join(_q(f) for f in OTHER_FORMATS)
    return f"try_strptime({x}, [{fmts}])"


def ts_sql(x: str, kind: str = "auto") -> str:
    """SQL turning text expression ``x`` into a naive UTC TIMESTAMP, NULL when unparseable."""
    if kind == "unix":
        return unix_sql(x)
    if kind == "iso":
        return iso_sql(x)
    if kind == "tsmc":
        return tsmc_sql(x)
    if kind == "date_hour":
        return date_hour_sql(x)
    if kind != "auto":
        raise ValueError(f"unknown time kind {kind!r}; use one of {', '.join(TIME_KINDS)}")
    parts = [iso_sql(x), tsmc_sql(x), date_hour_sql(x), other_sql(x), unix_sql(x)]
    return "COALESCE(" + ", ".join(parts) + ")"


def in_range_sql(x: str) -> str:
    """SQL: TIMESTAMP ``x`` lies inside [TIME_MIN, TIME_MAX)."""
    return f"({x} >= TIMESTAMP '{TIME_MIN}' AND {x} < TIMESTAMP '{TIME_MAX}')"


def offset_minutes_sql(x: str) -> str:
    """SQL: the ``+hh:mm`` / ``-hhmm`` offset at the end of ISO text ``x`` in minutes east of
    UTC (NULL when there is none; ``Z`` gives NULL too: UTC says nothing of local time)."""
    pat = "'[T ][0-9:.]+ *([+-])([0-9]{2}):?([0-9]{2})?$'"

    def grp(i: int) -> str:
        return f"regexp_extract({x}, {pat}, {i})"

    return (f"(CASE WHEN regexp_matches({x}, {pat}) THEN "
            f"(CASE WHEN {grp(1)} = '-' THEN -1 ELSE 1 END) * (CAST({grp(2)} AS INTEGER) * 60 "
            f"+ coalesce(TRY_CAST(nullif({grp(3)}, '') AS INTEGER), 0)) END)")

"""The importer's data contracts, shared by every step and every format module: the error,
the sniff result (:class:`Sniff`), the column plan (:class:`Plan`) and the import report.

``analytics.ingest.pipeline`` re-exports the public ones; other code imports them from there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .. import schema

#: Canonical fields a mapping may name (keys of ``mapping``).
FIELDS: tuple[str, ...] = schema.COLUMNS

#: Why a row can be rejected, in the order the checks run (the first failing check wins).
#: ``malformed``: the line could not be split into the file's columns (too many fields, a
#: broken quote); ``time_out_of_range``: a readable time outside the years the workspace
#: accepts (timeparse.TIME_MIN .. TIME_MAX: sentinels such as 0001-01-01 or 9999-12-31);
#: ``duplicate``: an exact repeat of an earlier kept row. A location is optional: a row with
#: invalid coordinates is kept without them (flag ``location_dropped``), never rejected.
REASONS: tuple[str, ...] = ("malformed", "missing_user", "missing_item", "missing_time",
                            "bad_time", "time_out_of_range", "duplicate")

#: Flags count kept rows that look suspicious but are not rejected. ``location_dropped``:
#: rows whose coordinates were given but invalid (not numbers, out of range, only one of the
#: two, exactly 0,0, not a geohash), kept without a location.
FLAGS: tuple[str, ...] = ("ts_before_1990", "ts_in_future", "ts_outlier", "location_dropped")

#: The rejection reasons and flags in words (the Data page and the CLI show these).
REASON_TEXT: dict[str, str] = {
    "malformed": "line could not be split into the file's columns",
    "missing_user": "no user id",
    "missing_item": "no item id",
    "missing_time": "no timestamp",
    "bad_time": "timestamp could not be read",
    "time_out_of_range": "timestamp before 1900 or after 2199 (a placeholder date)",
    # not a reason since invalid locations are kept without one; in reports imported before
    "bad_coordinates": "latitude/longitude out of range",
    "duplicate": "exact repeat of an earlier row",
}
FLAG_TEXT: dict[str, str] = {
    "ts_before_1990": "rows with a timestamp before 1990",
    "ts_in_future": "rows with a timestamp in the future",
    "ts_outlier": "rows with a timestamp far from the rest of the data",
}

#: How many example line numbers the report keeps per reason.
EXAMPLES_PER_REASON = 5

#: Inner alias of each canonical field's source text in a :class:`Plan`.
ALIAS: dict[str, str] = {schema.USER: "u", schema.ITEM: "i", schema.TS: "t", schema.LAT: "la",
                         schema.LON: "lo", schema.BEHAVIOR: "b", schema.CATEGORY: "c",
                         schema.VALUE: "v", schema.TZ_OFFSET: "z"}


#: An absolute path of two or more parts (not a URL's): shown by its last part only.
_ABS_PATH = re.compile(r"(?<![\w:/.~])/(?:[^\s/\"']+/)+([^\s/\"']+)")


def without_paths(text: str) -> str:
    """``text`` with absolute server paths (DuckDB names the file it read, the workspace's
    temp folder included) cut to their file names: a message names the file, not the server."""
    return _ABS_PATH.sub(r"\1", text)


class IngestError(ValueError):
    """A file that cannot be imported as asked. The message says what was wrong and what to do.

    It names the file and, where they apply, the 1-based line number, the column and the
    columns that were found; never a server path (:func:`without_paths`).
    """

    def __init__(self, message: str, *, path: str | Path | None = None,
                 line: int | None = None, column: str | None = None,
                 columns: list[str] | None = None) -> None:
        message = without_paths(message)
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.columns = list(columns) if columns is not None else None
        where = []
        if self.path:
            where.append(Path(self.path).name)
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        text = (": ".join([", ".join(where), message]) if where else message)
        if self.columns is not None:
            shown = ", ".join(str(c) for c in self.columns[:40])
            more = f" and {len(self.columns) - 40} more" if len(self.columns) > 40 else ""
            text += f" (columns found: {shown or 'none'}{more})"
        super().__init__(text)
        self.message = message


@dataclass
class Sniff:
    """What :func:`analytics.ingest.pipeline.sniff` learnt from the head of a file.

    ``mapping`` maps canonical field -> source column (the guess the import would use);
    ``preview`` holds the first rows as strings; ``has_header`` is True when the first line of
    a text file names the columns (False for Parquet / JSON, which name them anyway). The
    last fields describe how the file is read (``kind`` is csv, parquet or json) and are used
    by the importer itself.
    """

    format: str
    columns: list[str]
    mapping: dict[str, str]
    preview: pd.DataFrame
    delimiter: str | None
    has_header: bool
    kind: str = "csv"
    variant: str = ""
    encoding: str = "utf-8"
    quote: str = ""
    skip: int = 0
    compression: str = "none"
    member: str | None = None
    padded: bool = False
    #: a quoted field of the head spans lines: DuckDB must read the file serially
    multiline: bool = False
    column_types: dict[str, str] = field(default_factory=dict)
    sample: list[list[str]] = field(default_factory=list, repr=False)
    #: how the file was recognised and read, in the user's words
    notes: list[str] = field(default_factory=list)
    #: what looks wrong in the head (e.g. latitude and longitude swapped), in the user's words
    warnings: list[str] = field(default_factory=list)

    @property
    def first_data_line(self) -> int:
        """1-based line number of the first data row."""
        return self.skip + 1 + (1 if self.has_header else 0)


@dataclass
class Plan:
    """How one sniffed file becomes canonical columns: two layers of DuckDB SQL, evaluated by
    the stage step (analytics/ingest/stage.py).

    * ``inner``: text-level values taken from the source columns, keyed by :data:`ALIAS`
      (``u`` user, ``i`` item, ``t`` time, ``la``/``lo`` coordinates as given, ``b``
      behaviour, ``c`` category, ``v`` value, ``z`` tz offset), empty strings as NULL;
    * ``typed``: canonical columns computed from those aliases (parsed time, numbers, defaults).

    A format module adjusts both (analytics/ingest/formats/) and may add ``macros`` (SQL run on
    the import's cursor first, e.g. the geohash decoder) and ``genres_sql`` (SELECT item,
    genre: a category per item from a file beside the data, applied when publishing).
    """

    fmt: str
    variant: str
    mapping: dict[str, str]
    inner: dict[str, str]
    typed: dict[str, str]
    ts_kind: str
    #: strptime format of a plain ISO time column (timeparse.PLAIN_ISO), else None
    ts_format: str | None = None
    genres_sql: str | None = None
    macros: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _iso(t: Any) -> str | None:
    if t is None or (isinstance(t, float) and math.isnan(t)):
        return None
    if isinstance(t, datetime | pd.Timestamp):
        return t.isoformat()
    return str(t)


@dataclass
class ImportReport:
    """The outcome of one import: what was read, kept and rejected (and why), and the result.

    ``rejected_by_reason`` lists the reasons that occurred (``REASONS``; absent = none);
    ``examples`` holds the first few 1-based line numbers (counting the header line) of each
    rejection reason; ``flags`` counts kept rows that look suspicious. ``located_rows`` and
    ``located_items`` count the kept events with coordinates and the items with at least one
    of them. ``warnings`` (something is probably wrong: check it) and ``notes`` (how the file
    was read) are sentences written for the user. ``extra`` carries format-specific numbers
    (GeoLife: fixes kept, stay points, places) and details of how the file was read.
    """

    name: str
    source: str
    format: str
    rows_read: int
    rows_kept: int
    rows_rejected: int
    rejected_by_reason: dict[str, int]
    examples: dict[str, list[int]]
    flags: dict[str, int]
    users: int
    items: int
    time_min: datetime | None
    time_max: datetime | None
    has_coordinates: bool
    seconds: float
    mapping: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    located_rows: int = 0
    located_items: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-safe dict (times as ISO strings)."""
        return {
            "name": self.name, "source": self.source, "format": self.format,
            "rows_read": int(self.rows_read), "rows_kept": int(self.rows_kept),
            "rows_rejected": int(self.rows_rejected),
            "rejected_by_reason": {k: int(v) for k, v in self.rejected_by_reason.items()},
            "examples": {k: [int(x) for x in v] for k, v in self.examples.items()},
            "flags": {k: int(v) for k, v in self.flags.items()},
            "users": int(self.users), "items": int(self.items),
            "time_min": _iso(self.time_min), "time_max": _iso(self.time_max),
            "has_coordinates": bool(self.has_coordinates),
            "located_rows": int(self.located_rows), "located_items": int(self.located_items),
            "warnings": [str(w) for w in self.warnings], "notes": [str(n) for n in self.notes],
            "seconds": round(float(self.seconds), 3),
            "mapping": dict(self.mapping),
            "extra": {k: (v if isinstance(v, int | float | str | bool | None | list | dict)
                          else str(v)) for k, v in self.extra.items()},
        }

"""The contract every format module fills in: one :class:`Format` value per module, listed in
analytics/ingest/formats/registry.py.

A format takes part in three steps of the importer:

* **sniff**: :attr:`Format.claim` takes a file outright from its name or first line (before
  the text layout is read, so it can ask to skip a preamble); :attr:`Format.recognise` tells
  from a text layout (header names or the shapes of headerless fields) whether the file is
  this format, and which variant; :attr:`Format.fit` does the same, more leniently, when the
  user names the format;
* **plan**: :attr:`Format.columns` names the source column of each canonical field per variant
  (headerless files get :attr:`Format.names` first); :attr:`Format.required`,
  :attr:`Format.complete` and :attr:`Format.time_text` change the defaults where they do not
  fit (GeoLife's .plt files); :attr:`Format.rules` then adjusts the SQL of the
  :class:`~analytics.ingest.types.Plan` (time zone, behaviour codes, decoders);
* **publish**: :attr:`Format.derive`, when set, turns the kept rows into different events in
  Python before they are saved (GeoLife: GPS fixes -> stay points).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ... import schema
from ..layout import TextLayout
from ..types import Plan, Sniff

#: Field -> candidate source columns (matched ignoring case and ``_ - space``), first found wins.
ColumnTable = Mapping[str, tuple[str, ...]]
#: What a format expects when the file is no text file (Parquet/JSON), or no other is said.
TEXT_FILE = "a delimited text file (CSV/TSV)"
#: China Standard Time in minutes east of UTC: Alibaba's logs (Taobao, Tianchi) come from China.
CHINA_TZ_MIN = 480
#: The fields every event needs unless a format says otherwise.
REQUIRED: tuple[str, ...] = (schema.USER, schema.ITEM, schema.TS)


def _never(lay: TextLayout, path: Path) -> str | None:
    return None


def _no_claim(path: Path, text: str | None) -> str | None:
    return None


def _no_rules(plan: Plan, sn: Sniff, path: Path, user_set: set[str]) -> None:
    return None


def _no_time_text(sn: Sniff, mapping: dict[str, str],
                  user_set: set[str]) -> tuple[str, list[str]] | None:
    return None


@dataclass(frozen=True)
class Derive:
    """Events computed from the kept rows in Python, replacing them (GeoLife's stay points).

    ``params`` checks the import's options (``import_file(stay_params=...)``) before anything
    is staged and raises ValueError/TypeError on a bad one; ``events`` gets the kept rows'
    :attr:`inputs`, ordered by user and time, and returns the events plus numbers for the
    report's ``extra``; ``empty`` is the error message when it finds no event at all.
    """

    params: Callable[[dict[str, float] | None], Any]
    events: Callable[[pd.DataFrame, Any], tuple[pd.DataFrame, dict[str, Any]]]
    empty: str
    inputs: tuple[str, ...] = (schema.USER, schema.TS, schema.LAT, schema.LON)


@dataclass(frozen=True)
class Format:
    """One file format: its name for ``--format`` and every rule the importer applies to it."""

    name: str
    #: what the format is, in the user's words, to follow "Recognised as" (sniff notes)
    label: str = ""
    #: sniff: variant from the text layout (header names, field shapes), None if not this one
    recognise: Callable[[TextLayout, Path], str | None] = _never
    #: sniff, named format: the variant the file can be read as, None if it does not fit
    fit: Callable[[Sniff], str | None] = lambda sn: None
    #: the error's "expected ..." when :attr:`fit` refuses a text file
    expect: str = TEXT_FILE
    #: :attr:`fit` is asked for text files only; a Parquet/JSON file never fits
    text_only: bool = True
    #: sniff, first of all: variant of a file this format takes by its path or first line
    #: (``text`` is None for Parquet/JSON), None if it makes no claim
    claim: Callable[[Path, str | None], str | None] = _no_claim
    #: lines to skip before the text layout, per claimed variant
    preamble: Mapping[str, int] = field(default_factory=dict)
    #: normalised column names that mark a first line as a header
    header_names: frozenset[str] = frozenset()
    #: column names given to headerless files, per variant
    names: Mapping[str, list[str]] = field(default_factory=dict)
    #: plan: the source column of each field per variant (a variant missing here, e.g. a
    #: JSON array, has its columns guessed from their names like a generic file)
    columns: Mapping[str, ColumnTable] = field(default_factory=dict)
    #: plan: the fields without which a row is no event, given the variant
    required: Callable[[str], tuple[str, ...]] = lambda variant: REQUIRED
    #: plan: fills in a mapping before it is checked (both the guess and the user's)
    complete: Callable[[dict[str, str], Sniff], None] = lambda mapping, sn: None
    #: plan: (SQL, samples) of a time built from several columns, None for the mapped one
    time_text: Callable[[Sniff, dict[str, str], set[str]], tuple[str, list[str]] | None] = (
        _no_time_text)
    #: plan: the format's own SQL rules, applied last (``user_set``: fields the user mapped)
    rules: Callable[[Plan, Sniff, Path, set[str]], None] = _no_rules
    #: publish: events derived from the kept rows, or None to keep the rows as they are
    derive: Derive | None = None


def fixed_offset(plan: Plan, minutes: int) -> None:
    """Give every event the time zone ``minutes`` east of UTC unless a column gives one."""
    if schema.TZ_OFFSET not in plan.mapping:
        plan.typed[schema.TZ_OFFSET] = f"CAST({minutes} AS INTEGER)"

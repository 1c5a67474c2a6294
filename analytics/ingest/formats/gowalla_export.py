"""Gowalla check-in exports with a header (format ``gowalla``), as next-POI research code writes
them from the Gowalla crawl (Cho et al. 2011; the spot list of Liu et al.), e.g. the California
set of the GETNext / STHGCN line of papers (``UserId,PoiId,PoiCategoryId,Latitude,Longitude,
UTCTime``) or ``UserId,PlaceId,datetime,lng,lat,SpotCategories``.

The category column holds Gowalla's spot categories as a Python list of dicts in one string
(``[{'url': '/categories/45', 'name': 'Airport'}]``); the stage step keeps their names
(``Airport``) for every format (analytics/ingest/sql.py, ``category_sql``).

Such a file has the column names of a processed Foursquare TSMC file (``PoiId``, ``UTCTime``),
so it is recognised before ``tsmc``, from what only Gowalla has: a ``SpotCategories`` column
or category values in that list shape, with ``/categories/`` URLs.
"""

from __future__ import annotations

import re
from pathlib import Path

from ... import schema
from ..layout import TextLayout, norm
from ..types import Sniff
from .base import Format

U, IT, T, LAT, LON, CAT, TZ = (schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON,
                               schema.CATEGORY, schema.TZ_OFFSET)

COLUMNS = {U: ("userid", "user"), IT: ("placeid", "spotid", "poiid", "locationid", "venueid"),
           T: ("utctime", "datetime", "checkintime", "utctimestamp", "time", "timestamp"),
           LAT: ("latitude", "lat"), LON: ("longitude", "lng", "lon"),
           CAT: ("poicategoryname", "poicatname", "spotcategories", "categories", "category",
                 "poicategoryid", "poicatid"),
           TZ: ("timezoneoffset", "timezone")}
#: Column names only Gowalla exports use (``place_id`` is common in any event log).
GOWALLA_NAMES = frozenset({"spotcategories"})
#: A category value in Gowalla's shape: a list of dicts with a /categories/ URL.
SPOT_CATEGORIES = re.compile(r"""^\s*\[\s*\{.*['"]url['"]\s*:\s*['"]/categories/""")


def _column(columns: list[str], field: str) -> int | None:
    names = [norm(c) for c in columns]
    for cand in COLUMNS[field]:
        if cand in names:
            return names.index(cand)
    return None


def _spot_categories(columns: list[str], rows: list[list[str]]) -> bool:
    """Most non-empty sampled values of a category column have Gowalla's list shape."""
    names = [norm(c) for c in columns]
    for j, name in enumerate(names):
        if name not in COLUMNS[CAT]:
            continue
        vals = [r[j] for r in rows[:200] if j < len(r) and r[j].strip()]
        if vals and sum(bool(SPOT_CATEGORIES.match(v)) for v in vals) >= 0.5 * len(vals):
            return True
    return False


def _is_gowalla(columns: list[str], rows: list[list[str]]) -> bool:
    if any(_column(columns, f) is None for f in (U, IT, T)):
        return False
    return bool(GOWALLA_NAMES & {norm(c) for c in columns}) or _spot_categories(columns, rows)


def _recognise(lay: TextLayout, path: Path) -> str | None:
    return "" if lay.has_header and _is_gowalla(lay.columns, lay.rows) else None


def _fit(sn: Sniff) -> str | None:
    ok = sn.has_header or sn.kind != "csv"
    return "" if ok and all(_column(sn.columns, f) is not None for f in (U, IT, T)) else None


FORMAT = Format(
    name="gowalla", label="a Gowalla check-in export", recognise=_recognise, fit=_fit,
    text_only=False,
    expect="a header with user, place (PoiId, PlaceId or SpotId) and time columns",
    header_names=GOWALLA_NAMES,
    columns={"": COLUMNS})

"""SNAP location-based social network check-ins (format ``snap``): Gowalla and Brightkite
(Cho et al. 2011). A TSV without a header: user, ISO time, latitude, longitude, location id.
"""

from __future__ import annotations

from pathlib import Path

from ... import schema
from .. import timeparse
from ..layout import TextLayout, column_all, is_number
from ..types import Sniff
from .base import Format


def _recognise(lay: TextLayout, path: Path) -> str | None:
    rows = lay.rows
    if (not lay.has_header and lay.delimiter == "\t" and len(lay.columns) == 5
            and column_all(rows, 1, lambda v: timeparse.matches("iso", v))
            and column_all(rows, 2, is_number) and column_all(rows, 3, is_number)):
        return ""
    return None


def _fit(sn: Sniff) -> str | None:
    return "" if not sn.has_header and len(sn.columns) == 5 and sn.delimiter == "\t" else None


FORMAT = Format(
    name="snap", label="a SNAP Gowalla / Brightkite check-in file", recognise=_recognise, fit=_fit,
    expect="5 tab-separated columns (user, ISO time, lat, lon, location id), no header",
    names={"": ["user_id", "check_in_time", "latitude", "longitude", "location_id"]},
    columns={"": {schema.USER: ("userid",), schema.ITEM: ("locationid",),
                  schema.TS: ("checkintime",), schema.LAT: ("latitude",),
                  schema.LON: ("longitude",)}})

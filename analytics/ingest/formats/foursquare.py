"""Foursquare check-ins (format ``tsmc``): the TSMC2014 NYC/Tokyo dataset (Yang et al.).

Variants:

* ``raw``: the original TSV without a header (user, venue, venue category id and name,
  lat, lon, ``timezoneOffset`` in minutes, UTC time as ``Tue Apr 03 18:00:09 +0000 2012``);
  ``timezoneOffset`` -> tz_offset_min, ``venueCategory`` -> category;
* ``processed``: CSVs with a header (``POI_id``/``venue_id``, ``UTC_time``/``utc_timestamp``);
* ``reconstructed``: the reconstructed NYC file (item = ``stan_poi_id``, time =
  ``utc_time_minute``, category = ``venue_category``, empty for ~30% of rows and kept).
"""

from __future__ import annotations

from pathlib import Path

from ... import schema
from .. import timeparse
from ..layout import TextLayout, column_all, norm
from ..types import Sniff
from .base import Format

U, IT, T, CAT, TZ = schema.USER, schema.ITEM, schema.TS, schema.CATEGORY, schema.TZ_OFFSET
LAT, LON = schema.LAT, schema.LON


def _recognise(lay: TextLayout, path: Path) -> str | None:
    cols = lay.names
    if lay.has_header:
        if {"stanpoiid", "utctimeminute"} <= cols:
            return "reconstructed"
        if {"poiid", "utctime"} <= cols or {"venueid", "utctimestamp"} <= cols:
            return "processed"
        return None
    if (lay.delimiter == "\t" and len(lay.columns) == 8
            and column_all(lay.rows, 7, lambda v: timeparse.matches("tsmc", v))):
        return "raw"
    return None


def _fit(sn: Sniff) -> str | None:
    if sn.has_header:
        return "reconstructed" if "stanpoiid" in {norm(c) for c in sn.columns} else "processed"
    if len(sn.columns) == 8 and sn.delimiter == "\t":
        return "raw"
    return None


FORMAT = Format(
    name="tsmc", label="a Foursquare TSMC2014 check-in export", recognise=_recognise, fit=_fit,
    expect="8 tab-separated columns without a header, or a header with POI_id/UTC_time",
    header_names=frozenset({"poiid", "poicatid", "poicatname", "utctime", "venuecategoryid",
                            "stanpoiid", "utctimeminute", "minuteoffset"}),
    names={"raw": ["user_id", "venue_id", "venue_category_id", "venue_category", "latitude",
                   "longitude", "timezone_offset", "utc_time"]},
    columns={
        "raw": {U: ("userid",), IT: ("venueid",), T: ("utctime",), LAT: ("latitude",),
                LON: ("longitude",), CAT: ("venuecategory",), TZ: ("timezoneoffset",)},
        "processed": {U: ("userid",), IT: ("poiid", "venueid"), T: ("utctime", "utctimestamp"),
                      LAT: ("latitude",), LON: ("longitude",),
                      CAT: ("poicatname", "poicategoryname", "venuecategory"),
                      TZ: ("timezone", "timezoneoffset")},
        "reconstructed": {U: ("userid",), IT: ("stanpoiid",), T: ("utctimeminute",),
                          LAT: ("latitude",), LON: ("longitude",), CAT: ("venuecategory",)},
    })

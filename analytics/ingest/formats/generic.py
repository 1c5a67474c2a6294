"""Generic event files: any CSV/TSV/Parquet/JSON lines file whose columns are found from their
names (:data:`ALIASES`) or given by the user's mapping. Every file that no other format
recognises is read this way, so this format comes last in the registry."""

from __future__ import annotations

from pathlib import Path

from ... import schema
from ..layout import TextLayout, norm
from ..types import Sniff
from .base import Format

U, IT, T, BEH, CAT, VAL, TZ = (schema.USER, schema.ITEM, schema.TS, schema.BEHAVIOR,
                              schema.CATEGORY, schema.VALUE, schema.TZ_OFFSET)

#: Column names guessed for each field (matched ignoring case and ``_ - space``). Also used
#: for files of a known format that has no column table for their variant (JSON arrays).
ALIASES: dict[str, tuple[str, ...]] = {
    U: ("user_id", "user", "uid", "customer_id", "customer", "visitor_id", "member_id"),
    IT: ("item_id", "item", "poi_id", "poi", "venue_id", "venue", "product_id", "product",
        "movie_id", "location_id", "place_id", "stan_poi_id", "sku"),
    T: ("utc_time", "timestamp", "ts", "datetime", "time", "date", "event_time", "created_at",
        "checkin_time", "utc_timestamp", "time_stamp"),
    schema.LAT: ("lat", "latitude"),
    schema.LON: ("lon", "lng", "long", "longitude"),
    CAT: ("category", "cat", "genre", "genres", "venue_category", "poi_catname",
          "item_category", "category_name"),
    BEH: ("behavior", "behaviour", "event", "action", "type", "event_type", "behavior_type"),
    VAL: ("rating", "value", "amount", "score"),
    TZ: ("tz_offset_min", "tz_offset", "timezone_offset", "utc_offset", "timezone"),
}


def _recognise(lay: TextLayout, path: Path) -> str:
    return ""  # the fallback: every file is a generic file


def _fit(sn: Sniff) -> str:
    return "array" if sn.variant == "array" else ""


FORMAT = Format(
    name="generic", label="a generic event table", recognise=_recognise, fit=_fit, text_only=False,
    header_names=frozenset(norm(a) for names in ALIASES.values() for a in names))

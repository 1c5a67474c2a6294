"""Tianchi mobile recommendation (format ``tianchi``): Alibaba's mobile shopping log, a CSV with
the header ``user_id,item_id,behavior_type,user_geohash,item_category,time``.

* behaviour codes 1..4 -> pv, fav, cart, buy;
* ``time`` (``2014-12-06 02``, date and hour) is Beijing wall time: shifted by -8 h to UTC,
  and every event gets tz_offset_min = 480;
* ``user_geohash`` feeds both lat and lon and is decoded to its cell centre (empty -> no
  coordinates; not a geohash -> kept without a location, flag ``location_dropped``) by the
  SQL macros of analytics/ingest/geohash.py. Tianchi's geohashes are perturbed, so decoded
  points may spread over continents: the report then warns (publish.location_warnings).
"""

from __future__ import annotations

from pathlib import Path

from ... import schema
from .. import geohash
from ..layout import TextLayout, norm
from ..sql import lit
from ..types import Plan, Sniff
from .base import CHINA_TZ_MIN, Format, fixed_offset

T, BEH, LAT, LON = schema.TS, schema.BEHAVIOR, schema.LAT, schema.LON
HEADER = {"userid", "itemid", "behaviortype", "time"}
BEHAVIOR_CODES = {"1": "pv", "2": "fav", "3": "cart", "4": "buy"}


def _recognise(lay: TextLayout, path: Path) -> str | None:
    return "" if lay.has_header and HEADER <= lay.names else None


def _fit(sn: Sniff) -> str | None:
    return "" if HEADER <= {norm(c) for c in sn.columns} else None


def _rules(plan: Plan, sn: Sniff, path: Path, user_set: set[str]) -> None:
    typed, mapping = plan.typed, plan.mapping
    fixed_offset(plan, CHINA_TZ_MIN)
    cases = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in BEHAVIOR_CODES.items())
    typed[BEH] = f"CASE b {cases} ELSE coalesce(b, {lit(schema.DEFAULT_BEHAVIOR)}) END"
    if T not in user_set or plan.ts_kind == "date_hour":
        typed[T] = f"({typed[T]}) - INTERVAL {CHINA_TZ_MIN} MINUTE"
        plan.notes.append("The times are Beijing time (UTC+8) and were converted to UTC.")
    if mapping.get(LAT) and mapping.get(LAT) == mapping.get(LON):
        typed[LAT], typed[LON] = "_ts_gh_lat(la)", "_ts_gh_lon(lo)"
        plan.macros.extend(geohash.MACROS_SQL)


FORMAT = Format(
    name="tianchi", label="Tianchi mobile recommendation (Alibaba)", recognise=_recognise, fit=_fit,
    expect="a header user_id,item_id,behavior_type,user_geohash,item_category,time",
    header_names=frozenset({"behaviortype", "usergeohash"}),
    columns={"": {schema.USER: ("userid",), schema.ITEM: ("itemid",), T: ("time",),
                  BEH: ("behaviortype",), schema.CATEGORY: ("itemcategory",),
                  LAT: ("usergeohash",), LON: ("usergeohash",)}},
    rules=_rules)

"""The dashboard's default answers stored with a dataset's summary tables, and reading them.

Some page requests are the same for every visit of an unfiltered dataset and cost seconds to
answer, so the summary build (build.py) stores their answers:

* the Map page's replay paths (``paths``, one row per trip; the point lists as JSON text,
  which gives the floats back exactly): ``mobility.user_paths`` of the first
  PAGE_PATH_USERS users by a hash of the id among those with 3 located events, 12 h idle gap,
  PAGE_PATH_POINTS points per trip, timestamps from the first located event;
* the Map page's zones (``zones`` / ``zone_activity`` / ``zone_places``) for
  ``zones_sql.page_zone_params`` and their flows (``zone_flows``) for ``PAGE_FLOW_GAP``.

Each ``stored_*`` function returns the stored answer exactly as the computation would, or
None when the request is not the stored one or the set has none.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pandas as pd

from ..schema import LAT, LON
from ..spacetime import WINDOW
from ..spatial import mobility
from ..spatial.zones import POLYGON, ZONE, Zones
from ..spatial.zones_sql import PAGE_FLOW_GAP, page_zone_params
from .tables import Rollup

#: The Map page's replay request: users sampled, most points per trip, idle gap splitting trips.
PAGE_PATH_USERS = 25
PAGE_PATH_POINTS = 120
PAGE_IDLE_GAP = "12h"


# -- the Map page's replay paths ---------------------------------------------------------------
def is_page_paths(where: str | None, users: int, max_points: int) -> bool:
    """Whether a paths request is the stored one (unfiltered, the page's sample)."""
    return where is None and (users, max_points) == (PAGE_PATH_USERS, PAGE_PATH_POINTS)


def stored_page_paths(ru: Rollup | None) -> pd.DataFrame | None:
    """The stored paths as ``spatial.page_paths`` returns them, or None when there are
    none."""
    if ru is None:
        return None
    try:
        out = ru.df(f"SELECT * FROM {ru.t('paths')} ORDER BY rowid")
    except duckdb.CatalogException:  # a set from before the paths were stored
        return None
    if out.empty:
        return None
    ref = pd.Timestamp(out.pop("reference").iloc[0])
    for c in (mobility.PATH, mobility.TIMESTAMPS):  # one parse: 4x faster than one per row
        out[c] = json.loads("[" + ",".join(out[c].tolist()) + "]")
    out = out.astype({"start": "datetime64[us]", "end": "datetime64[us]"})
    out.attrs["reference"] = ref
    return out


# -- the Map page's zones and flows ------------------------------------------------------------
def page_params(ru: Rollup) -> dict:
    """``zones_sql.page_zone_params`` of the whole dataset of ``ru``."""
    n, first, last = ru.one(f"SELECT located, located_first, located_last "
                            f"FROM {ru.t('summary')}")
    return page_zone_params(int(n), first, last)


def zone_params(ru: Rollup) -> dict:
    """The parameters the stored page zones were found with (the ``zone_params`` table, kept
    from the build: appended events move the located count and span that :func:`page_params`
    reads, and must not make the Map look for other zones until the next build); else
    :func:`page_params`."""
    if ru.has("zone_params"):
        return json.loads(ru.one(f"SELECT params FROM {ru.t('zone_params')}")[0])
    return page_params(ru)


def stored_zones(ru: Rollup, call: dict) -> Zones | None:
    """The stored page zones when ``call`` (find_zones_sql's parameters) asks for them."""
    if call != zone_params(ru) or not ru.has("zones"):
        return None
    zones = ru.df(f"SELECT * FROM {ru.t('zones')}")
    zones[POLYGON] = [json.loads(r) for r in zones[POLYGON]]
    activity = ru.df(f"SELECT * FROM {ru.t('zone_activity')}")
    activity[WINDOW] = activity[WINDOW].astype("datetime64[us]")
    return Zones(zones=zones, places=ru.df(f"SELECT * FROM {ru.t('zone_places')}"),
                 activity=activity)


def stored_flows(ru: Rollup, zones: pd.DataFrame, max_gap: Any,
                 include_self: bool) -> pd.DataFrame | None:
    """The stored moves between the page's zones (``origin, destination, trips, users``),
    when ``zones`` are those zones and the gap and self-moves are the page's; else None."""
    if include_self or max_gap is None or pd.Timedelta(max_gap) != pd.Timedelta(PAGE_FLOW_GAP) \
            or not ru.has("zones"):
        return None
    keys = ru.df(f"SELECT {ZONE}, {LAT}, {LON} FROM {ru.t('zones')}")
    if len(keys) != len(zones) or not keys.equals(
            zones[[ZONE, LAT, LON]].reset_index(drop=True).astype(keys.dtypes.to_dict())):
        return None
    return ru.df(f"SELECT * FROM {ru.t('zone_flows')}")

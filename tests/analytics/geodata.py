"""Real located data for the spatial analytics tests: NYC check-ins and GeoLife GPS fixes, from
the slices committed in tests/data.

NYC goes through the project's importer (tests/analytics/realdata.py). GeoLife is read as raw
fixes (``lat,lng,datetime,uid``, times in GMT) and mapped to the canonical schema here, with
the 200 m grid cell of each fix as its item, the way raw GPS is stored (DESIGN.md).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
from trailscope.analytics import schema
from trailscope.analytics.spatial.density import grid_cell_ids
from trailscope.analytics.store import Store

from tests.analytics.realdata import import_nyc, open_store
from tests.conftest import GEOLIFE

#: Midtown Manhattan (Times Square), for "is there a Manhattan zone" checks.
MIDTOWN = (40.7580, -73.9855)
#: A generous box around New York City's five boroughs and the near suburbs in the file.
NYC_BOX = (40.45, 41.05, -74.35, -73.65)  # min_lat, max_lat, min_lon, max_lon


def nyc_store(tmp_dir: Path) -> tuple[Store, str]:
    """A workspace in ``tmp_dir`` holding the NYC check-ins; returns (store, dataset name)."""
    store = open_store(tmp_dir)
    return store, import_nyc(store)


@lru_cache(maxsize=1)
def _geolife() -> pd.DataFrame:
    raw = pd.read_csv(GEOLIFE, dtype={"uid": "string"})
    cells = grid_cell_ids(raw["lat"].to_numpy(), raw["lng"].to_numpy(), 200.0)
    return pd.DataFrame({
        schema.USER: raw["uid"],
        schema.ITEM: pd.array(cells.astype(str), dtype="string"),
        schema.TS: pd.to_datetime(raw["datetime"]).astype("datetime64[us]"),
        schema.LAT: raw["lat"].astype("float64"),
        schema.LON: raw["lng"].astype("float64"),
        schema.TZ_OFFSET: pd.array([480] * len(raw), dtype="Int32"),  # Beijing, UTC+8
    })


def geolife_events() -> pd.DataFrame:
    """GeoLife fixes in the canonical schema (a fresh copy; the parse is cached)."""
    return _geolife().copy()

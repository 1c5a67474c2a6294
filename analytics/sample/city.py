"""The synthetic city behind the built-in sample data: Berlin neighbourhoods, POIs, time zone.

The city is Berlin (centre 52.5200 N, 13.4050 E, Alexanderplatz/Mitte). Places are clustered
around the real centres of 18 districts, each with its own mix of venue types (offices in
Mitte and Potsdamer Platz, nightlife in Kreuzberg and Friedrichshain, housing in Marzahn,
...). Local time is Europe/Berlin: CET (+60 min) in winter, CEST (+120 min) between the last
Sundays of March and October, computed here so the generator needs no tz database.

analytics/sample.py builds users and events on top of this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema

CITY = "Berlin"
CENTER: tuple[float, float] = (52.5200, 13.4050)  # (lat, lon) of Mitte / Alexanderplatz
#: (min_lat, max_lat, min_lon, max_lon): Berlin's administrative extent, rounded outwards.
BBOX: tuple[float, float, float, float] = (52.33, 52.68, 13.08, 13.77)

PLACE_ID = "place_id"  # columns of the places table that are not event columns
NEIGHBOURHOOD = "neighbourhood"

#: Venue types. Order matters: sample.py indexes these by position.
CATEGORIES: tuple[str, ...] = (
    "Home", "Office", "Transit", "Cafe", "Restaurant", "Bar", "Nightclub",
    "Gym", "Park", "Museum", "Shop", "Supermarket",
)
CAT = {c: i for i, c in enumerate(CATEGORIES)}
#: Categories whose share in a user's life follows that user's (drifting) tastes.
LEISURE: tuple[str, ...] = (
    "Cafe", "Restaurant", "Bar", "Nightclub", "Gym", "Park", "Museum", "Shop", "Supermarket",
)

#: Share of each venue type among all places, before the neighbourhood profile is applied.
_BASE_MIX = np.array([30, 12, 4, 10, 12, 6, 1.5, 3, 3, 1.5, 10, 4], dtype=float)

#: Mean dwell time in minutes per category (the event ``value``), log-normally spread.
DWELL_MIN = np.array([480, 240, 6, 35, 70, 95, 180, 65, 50, 95, 25, 18], dtype=float)

# name, lat, lon, spread (km), weight (share of places), profile multipliers on _BASE_MIX
# (profile: residential, business, nightlife, leisure)
_NEIGHBOURHOODS: tuple[tuple[str, float, float, float, float, tuple[float, ...]], ...] = (
    ("Mitte", 52.5200, 13.4050, 1.2, 1.6, (0.5, 2.5, 1.2, 1.8)),
    ("Potsdamer Platz", 52.5096, 13.3760, 0.8, 0.8, (0.3, 3.5, 0.8, 1.2)),
    ("Prenzlauer Berg", 52.5390, 13.4240, 1.1, 1.2, (1.3, 0.7, 1.2, 1.1)),
    ("Kreuzberg", 52.4990, 13.4030, 1.2, 1.3, (1.1, 0.7, 2.5, 1.2)),
    ("Friedrichshain", 52.5150, 13.4540, 1.1, 1.1, (1.1, 0.8, 2.5, 1.0)),
    ("Neukoelln", 52.4810, 13.4350, 1.3, 1.1, (1.4, 0.5, 1.6, 0.8)),
    ("Charlottenburg", 52.5160, 13.3040, 1.4, 1.2, (1.0, 1.4, 0.8, 1.5)),
    ("Schoeneberg", 52.4830, 13.3530, 1.1, 0.9, (1.2, 0.8, 1.3, 1.0)),
    ("Tiergarten", 52.5145, 13.3500, 0.9, 0.5, (0.4, 1.0, 0.5, 3.0)),
    ("Moabit", 52.5300, 13.3420, 1.0, 0.7, (1.2, 1.1, 0.6, 0.8)),
    ("Wedding", 52.5500, 13.3660, 1.2, 0.9, (1.4, 0.6, 0.7, 0.8)),
    ("Pankow", 52.5690, 13.4020, 1.4, 0.7, (1.6, 0.5, 0.4, 0.9)),
    ("Lichtenberg", 52.5150, 13.4990, 1.4, 0.8, (1.5, 0.7, 0.5, 0.7)),
    ("Marzahn", 52.5450, 13.5600, 1.6, 0.7, (2.0, 0.4, 0.3, 0.6)),
    ("Koepenick", 52.4450, 13.5750, 1.8, 0.6, (1.5, 0.5, 0.3, 1.2)),
    ("Tempelhof", 52.4660, 13.3850, 1.3, 0.7, (1.4, 0.8, 0.5, 1.1)),
    ("Steglitz", 52.4570, 13.3220, 1.4, 0.8, (1.5, 0.7, 0.4, 1.0)),
    ("Spandau", 52.5350, 13.2000, 1.7, 0.6, (1.6, 0.7, 0.4, 0.8)),
)
#: Which profile multiplier applies to each category (index into the profile tuple).
_PROFILE_OF = np.array([0, 1, 1, 3, 3, 2, 2, 3, 3, 3, 3, 0])

KM_PER_DEG_LAT = 111.2
KM_PER_DEG_LON = KM_PER_DEG_LAT * np.cos(np.radians(CENTER[0]))


def neighbourhoods() -> pd.DataFrame:
    """The districts the places are clustered in: name, centre, spread (km) and weight."""
    return pd.DataFrame(
        [(n, la, lo, s, w) for n, la, lo, s, w, _ in _NEIGHBOURHOODS],
        columns=[NEIGHBOURHOOD, schema.LAT, schema.LON, "spread_km", "weight"],
    )


def _category_mix() -> np.ndarray:
    """(n_neighbourhoods, n_categories) probability of each venue type inside each district."""
    prof = np.array([p for *_, p in _NEIGHBOURHOODS])  # (H, 4)
    mix = _BASE_MIX[None, :] * prof[:, _PROFILE_OF]  # (H, C)
    return mix / mix.sum(axis=1, keepdims=True)


def generate_places(seed: int = 7, n: int = 3000) -> pd.DataFrame:
    """``n`` points of interest clustered in Berlin's districts, deterministic in ``seed``.

    Columns: ``place_id`` (0..n-1), item_id (``"P00042"``), lat, lon, category, neighbourhood
    (name) and ``hood`` (its index in :func:`neighbourhoods`).
    """
    if n < len(CATEGORIES) * len(_NEIGHBOURHOODS):
        raise ValueError(f"n={n} places is too few for a city; use at least "
                         f"{len(CATEGORIES) * len(_NEIGHBOURHOODS)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x91ACE]))
    hoods = neighbourhoods()
    w = hoods["weight"].to_numpy()
    hood = rng.choice(len(hoods), size=n, p=w / w.sum())
    mix = _category_mix()
    cum = mix.cumsum(axis=1)[hood]  # (n, C)
    cat = (cum < rng.random(n)[:, None]).sum(axis=1).clip(0, len(CATEGORIES) - 1)
    # Every district gets at least one place of every type, so no (district, type) is empty.
    first = np.arange(len(hoods) * len(CATEGORIES))
    hood[first] = first // len(CATEGORIES)
    cat[first] = first % len(CATEGORIES)
    spread = hoods["spread_km"].to_numpy()[hood]
    lat = hoods[schema.LAT].to_numpy()[hood] + rng.normal(0, 1, n) * spread / KM_PER_DEG_LAT
    lon = hoods[schema.LON].to_numpy()[hood] + rng.normal(0, 1, n) * spread / KM_PER_DEG_LON
    lat = lat.clip(BBOX[0] + 1e-4, BBOX[1] - 1e-4)
    lon = lon.clip(BBOX[2] + 1e-4, BBOX[3] - 1e-4)
    return pd.DataFrame({
        PLACE_ID: np.arange(n),
        schema.ITEM: pd.array([f"P{i:05d}" for i in range(n)], dtype="string"),
        schema.LAT: lat.round(6),
        schema.LON: lon.round(6),
        schema.CATEGORY: pd.array(np.array(CATEGORIES)[cat], dtype="string"),
        NEIGHBOURHOOD: pd.array(hoods[NEIGHBOURHOOD].to_numpy()[hood], dtype="string"),
        "hood": hood,
    })


def hood_distances_km(places: pd.DataFrame) -> np.ndarray:
    """(n_neighbourhoods, n_places) distance in km from each district centre to each place."""
    hoods = neighbourhoods()
    dlat = (places[schema.LAT].to_numpy()[None, :] - hoods[schema.LAT].to_numpy()[:, None])
    dlon = (places[schema.LON].to_numpy()[None, :] - hoods[schema.LON].to_numpy()[:, None])
    return np.hypot(dlat * KM_PER_DEG_LAT, dlon * KM_PER_DEG_LON)


def _last_sunday(year: int, month: int) -> np.datetime64:
    first_next = np.datetime64(f"{year + (month == 12)}-{month % 12 + 1:02d}-01")
    last = first_next - np.timedelta64(1, "D")
    # 1970-01-01 was a Thursday: day-number + 3 is the weekday with Monday = 0.
    weekday = (last.astype("int64") + 3) % 7
    return last - np.timedelta64(int((weekday - 6) % 7), "D")


def berlin_offset_min(local_day: np.ndarray) -> np.ndarray:
    """UTC offset in minutes (60 or 120) of Europe/Berlin on each ``datetime64[D]`` local day.

    Summer time runs from the last Sunday of March to the last Sunday of October (the switch
    hour within those two days is ignored).
    """
    local_day = np.asarray(local_day, dtype="datetime64[D]")
    years = local_day.astype("datetime64[Y]").astype(int) + 1970
    out = np.full(local_day.shape, 60, dtype=np.int32)
    for y in np.unique(years):
        summer = ((years == y) & (local_day >= _last_sunday(int(y), 3))
                  & (local_day < _last_sunday(int(y), 10)))
        out[summer] = 120
    return out

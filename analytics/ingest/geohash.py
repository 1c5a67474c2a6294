"""Geohash decoding (Tianchi's ``user_geohash``), as DuckDB SQL macros and in plain Python.

A geohash interleaves longitude and latitude bisection bits (longitude first), five bits per
base-32 character. Decoding returns the centre of the cell. The SQL macros return NULL for a
string that is not a geohash (letters a, i, l, o or longer than 12 characters).
"""

from __future__ import annotations

ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
_VALID_RE = "[0-9b-hjkmnp-z]{1,12}"

#: Run on the cursor before using ``_ts_gh_lat(g)`` / ``_ts_gh_lon(g)`` in a query.
MACROS_SQL: tuple[str, ...] = (
    "CREATE OR REPLACE TEMP MACRO _ts_gh_bits(g) AS CASE WHEN "
    f"regexp_full_match(lower(g), '{_VALID_RE}') THEN array_to_string(list_transform("
    f"string_split(lower(g), ''), lambda ch: lpad(bin(instr('{ALPHABET}', ch) - 1), 5, '0')), "
    "'') END",
    # odd = 1 picks bits 1, 3, 5... (longitude), odd = 0 bits 2, 4, 6... (latitude)
    "CREATE OR REPLACE TEMP MACRO _ts_gh_part(bits, odd) AS CAST('0b' || array_to_string("
    "list_filter(string_split(bits, ''), lambda x, i: i % 2 = odd), '') AS BIGINT)",
    "CREATE OR REPLACE TEMP MACRO _ts_gh_lon(g) AS -180 + (_ts_gh_part(_ts_gh_bits(g), 1) "
    "+ 0.5) * 360.0 / pow(2, ceil(length(g) * 5 / 2.0))",
    "CREATE OR REPLACE TEMP MACRO _ts_gh_lat(g) AS -90 + (_ts_gh_part(_ts_gh_bits(g), 0) "
    "+ 0.5) * 180.0 / pow(2, floor(length(g) * 5 / 2.0))",
)


def decode(geohash: str) -> tuple[float, float]:
    """(lat, lon) of the centre of ``geohash``'s cell; ValueError if it is not a geohash."""
    g = geohash.strip().lower()
    if not g or len(g) > 12 or any(ch not in ALPHABET for ch in g):
        raise ValueError(f"not a geohash: {geohash!r} (base-32 digits 0-9 b-z without a i l o)")
    lat_lo, lat_hi, lon_lo, lon_hi = -90.0, 90.0, -180.0, 180.0
    even = True  # the first bit halves longitude
    for ch in g:
        v = ALPHABET.index(ch)
        for shift in range(4, -1, -1):
            bit = (v >> shift) & 1
            if even:
                mid = (lon_lo + lon_hi) / 2
                lon_lo, lon_hi = (mid, lon_hi) if bit else (lon_lo, mid)
            else:
                mid = (lat_lo + lat_hi) / 2
                lat_lo, lat_hi = (mid, lat_hi) if bit else (lat_lo, mid)
            even = not even
    return (lat_lo + lat_hi) / 2, (lon_lo + lon_hi) / 2

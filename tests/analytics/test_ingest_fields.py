"""Fields and formats on real data (issue #12): Gowalla category lists read as their names and
Gowalla exports recognised as such, invalid locations kept without coordinates and counted,
points spread over continents and latitude/longitude swapped warned about, and every note of
the report written for the user.

The files are the committed real slices (tests/data), rewritten into the layouts users bring:
the same users, places, categories, coordinates and times in another export's columns.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.ingest.pipeline import IngestError, import_file, sniff
from trailscope.analytics.store import Store

from tests.conftest import FULL_GEOLIFE, FULL_NYC, FULL_TAOBAO, GEOLIFE, NYC, TAOBAO

U, IT, T, LAT, LON, CAT, BEH = (schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON,
                                schema.CATEGORY, schema.BEHAVIOR)
NYC_KEPT = 47_838  # the slice's 47,929 check-ins less 91 exact repeats (test_ingest_real)
_GEOHASH = "0123456789bcdefghjkmnpqrstuvwxyz"


@pytest.fixture(scope="module")
def nyc() -> pd.DataFrame:
    return pd.read_csv(NYC, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Store:
    s = Store(tmp_path_factory.mktemp("ws") / "trailscope.duckdb")
    yield s
    s.close()


def _located(ws: Store, name: str) -> tuple[int, int]:
    """(events with coordinates, items with at least one), counted in the stored table."""
    row = ws.query_df(f"SELECT count(*) AS n, count(DISTINCT {IT}) AS items FROM "
                      f"{ws.table(name)} WHERE {LAT} IS NOT NULL").iloc[0]
    return int(row["n"]), int(row["items"])


def _user_words(texts: list[str]) -> None:
    """Messages for a user: no Python lists, dicts or None, no developer vocabulary (values
    quoted from the file, in “”, aside)."""
    for text in texts:
        words = re.sub(r"“[^”]*”", "", text)
        assert not re.search(r"\['|\{'|\bNone\b|natively|_min\b|\bsql\b", words), text
        assert (text[:1].isupper() or text[:1].isdigit()) and text.endswith("."), text


# -- Gowalla exports: category lists, recognition -----------------------------------------
def _spot_categories(names: pd.Series, style: str) -> pd.Series:
    """Gowalla's category lists, one per row (empty where the name is unknown)."""
    codes = {n: k for k, n in enumerate(sorted(set(names) - {""}), start=1)}
    if style == "json":
        return names.map(lambda n: f'[{{"url": "/categories/{codes[n]}", "name": "{n}"}}]'
                         if n else "")
    return names.map(lambda n: str([{"url": f"/categories/{codes[n]}", "name": n}])
                     if n else "")


def _gowalla_export(nyc: pd.DataFrame, path: Path, header: list[str],
                    style: str = "python") -> Path:
    """The NYC check-ins as a Gowalla export with ``header`` (user, place, category, lat, lon,
    time in some order given by the names) and categories as lists of dicts."""
    utc = nyc["utc_time_minute"].str.replace(" ", "T") + ":00Z"
    by_role = {"user": nyc["user_id"], "place": nyc["stan_poi_id"],
               "category": _spot_categories(nyc["venue_category"], style),
               "lat": nyc["latitude"], "lon": nyc["longitude"], "time": utc}
    roles = ["user", "place", "category", "lat", "lon", "time"]
    if header[2].lower() == "datetime":  # UserId,PlaceId,datetime,lng,lat,SpotCategories
        roles = ["user", "place", "time", "lon", "lat", "category"]
    pd.DataFrame({h: by_role[r] for h, r in zip(header, roles, strict=True)}).to_csv(
        path, index=False)
    return path


STHGCN = ["UserId", "PoiId", "PoiCategoryId", "Latitude", "Longitude", "UTCTime"]
SPOTS = ["UserId", "PlaceId", "datetime", "lng", "lat", "SpotCategories"]


@pytest.mark.parametrize(("header", "style"), [(STHGCN, "python"), (STHGCN, "json"),
                                               (SPOTS, "python")])
def test_gowalla_export_recognised_and_categories_named(ws: Store, nyc: pd.DataFrame,
                                                         tmp_path: Path, header, style) -> None:
    path = _gowalla_export(nyc, tmp_path / "gowalla_ca.csv", header, style)
    sn = sniff(path)
    # the STHGCN header is also a processed TSMC header: the category lists tell them apart
    assert sn.format == "gowalla"
    assert sn.notes[0] == ("Recognised as a Gowalla check-in export (columns "
                           f"{', '.join(header)}).")
    assert any(n.startswith(f"The categories ({header[2] if header == STHGCN else header[5]}) "
                            "are lists such as “[{") for n in sn.notes)
    r = import_file(ws, path, name="gowalla", replace=True)
    assert r.format == "gowalla" and r.rows_kept == NYC_KEPT
    ev = ws.events("gowalla")
    stored = set(ev[CAT].dropna())
    assert stored == set(nyc["venue_category"]) - {""}  # the names, every one of them
    assert not any(c.startswith("[") for c in stored)
    # row by row: each check-in got the name its list held
    got = ev.assign(**{T: ev[T].dt.strftime("%Y-%m-%d %H:%M")}).set_index([U, IT, T])[CAT]
    want = nyc.drop_duplicates().set_index(["user_id", "stan_poi_id", "utc_time_minute"])
    want = want["venue_category"].replace("", None).rename_axis([U, IT, T])
    joined = got.to_frame("got").join(want.rename("want"), how="inner")
    joined = joined[~joined.index.duplicated(keep=False)]
    assert len(joined) > 40_000
    assert (joined["got"].fillna("") == joined["want"].fillna("")).all()
    _user_words(r.notes)


def test_several_categories_joined_and_other_shapes_kept(ws: Store, nyc: pd.DataFrame,
                                                         tmp_path: Path) -> None:
    df = nyc.head(400).copy()
    both = str([{"url": "/categories/1", "name": "Coffee Shop"},
                {"url": "/categories/2", "name": "Dunkin' Donuts"}])
    df.loc[df.index[0], "venue_category"] = both  # two categories, one with an apostrophe
    df.loc[df.index[1], "venue_category"] = "[{'url': '/categories/3'}]"  # no name: kept
    df.loc[df.index[2], "venue_category"] = "[1, 2]"  # another shape: kept as it is
    path = tmp_path / "nyc_lists.csv.gz"
    df.to_csv(path, index=False, compression="gzip")
    assert sniff(path).format == "tsmc"  # a list in a TSMC file is not Gowalla's sign alone
    import_file(ws, path, name="lists", replace=True)
    ev = ws.events("lists").set_index([U, IT])[CAT]
    key = lambda k: (df["user_id"].iloc[k], df["stan_poi_id"].iloc[k])  # noqa: E731
    assert set(ev.loc[[key(0)]]) >= {"Coffee Shop, Dunkin' Donuts"}
    assert "[{'url': '/categories/3'}]" in set(ev.loc[[key(1)]])
    assert "[1, 2]" in set(ev.loc[[key(2)]])


def test_processed_tsmc_header_with_plain_names_stays_tsmc(nyc: pd.DataFrame,
                                                          tmp_path: Path) -> None:
    path = _gowalla_export(nyc.head(300), tmp_path / "nyc_processed.csv", STHGCN)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["PoiCategoryId"] = nyc["venue_category"].head(300)
    df.to_csv(path, index=False)
    sn = sniff(path)
    assert sn.format == "tsmc"
    assert sn.notes[0].startswith("Recognised as a Foursquare TSMC2014 check-in export (columns")


# -- a location is optional -----------------------------------------------------------------
def test_invalid_locations_kept_without_coordinates(ws: Store, nyc: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    df = nyc.copy()
    unique = df.index[~df.duplicated(keep=False)]
    bad = unique[::11]  # about 9% of the check-ins, each with a broken location
    ways = [("latitude", "999"), ("longitude", ""), ("latitude", "n/a"), ("both", "0")]
    for k, row in enumerate(bad):
        col, value = ways[k % len(ways)]
        for c in (["latitude", "longitude"] if col == "both" else [col]):
            df.loc[row, c] = value
    path = tmp_path / "nyc_bad_locations.csv.gz"
    df.to_csv(path, index=False, compression="gzip")
    r = import_file(ws, path, name="badloc", replace=True)
    # nothing is rejected for its location: only the exact repeats go
    assert r.rows_kept == NYC_KEPT and r.rejected_by_reason == {"duplicate": 91}
    assert r.flags["location_dropped"] == len(bad) > 4_000
    assert f"{len(bad):,} events kept without a location" in " ".join(r.notes)
    # the dataset's located counts are what is really located
    assert (r.located_rows, r.located_items) == _located(ws, "badloc")
    assert r.located_rows == NYC_KEPT - len(bad)
    assert ws.info("badloc").report["located_rows"] == r.located_rows
    assert not r.warnings  # the located points are all in New York
    _user_words(r.notes)


def _geohash(lat: float, lon: float, precision: int = 7) -> str:
    """The geohash of a point (the encoder the decoder of analytics/ingest/geohash.py undoes)."""
    lat_r, lon_r = [-90.0, 90.0], [-180.0, 180.0]
    out, bits, n, even = [], 0, 0, True
    while len(out) < precision:
        rng, v = (lon_r, lon) if even else (lat_r, lat)
        mid = (rng[0] + rng[1]) / 2
        bit = v >= mid
        rng[0 if bit else 1] = mid
        bits, n, even = bits * 2 + bit, n + 1, not even
        if n == 5:
            out.append(_GEOHASH[bits])
            bits = n = 0
    return "".join(out)


def _tianchi(nyc: pd.DataFrame, path: Path, invalid: int = 11, far: int = 0) -> pd.DataFrame:
    """The NYC check-ins as a Tianchi mobile log: behaviour codes 1..4 in turn, the location
    as a geohash; every ``invalid``-th geohash broken (an 'a', which geohashes never hold),
    every ``far``-th moved to another continent (its first character changed)."""
    df = pd.DataFrame({
        "user_id": nyc["user_id"], "item_id": nyc["stan_poi_id"],
        "behavior_type": [str(1 + k % 4) for k in range(len(nyc))],
        "user_geohash": [_geohash(float(a), float(b)) for a, b in
                         zip(nyc["latitude"], nyc["longitude"], strict=True)],
        "item_category": nyc["venue_category"],
        "time": nyc["utc_time_minute"].str.slice(0, 13)})
    gh = df["user_geohash"].copy()
    if invalid:
        gh.iloc[::invalid] = gh.iloc[::invalid].map(lambda g: g[:3] + "a" + g[4:])
    if far:
        gh.iloc[5::far] = "w" + gh.iloc[5::far].str.slice(1)  # New York 'dr5..' -> East Asia
    df["user_geohash"] = gh
    df.to_csv(path, index=False)
    return df


def test_geohash_helper_matches_the_decoder() -> None:
    from trailscope.analytics.ingest.geohash import decode

    for lat, lon in [(40.7306, -73.9866), (39.9841, 116.3192), (-33.86, 151.21)]:
        g = _geohash(lat, lon)
        assert len(g) == 7
        dlat, dlon = decode(g)
        assert abs(dlat - lat) < 0.001 and abs(dlon - lon) < 0.001


def test_tianchi_broken_geohashes_keep_their_events(ws: Store, nyc: pd.DataFrame,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "tianchi_mobile_recommend_train_user.csv"
    df = _tianchi(nyc, path)
    assert sniff(path).format == "tianchi"
    r = import_file(ws, path, name="tianchi", replace=True)
    assert set(r.rejected_by_reason) <= {"duplicate"}
    # the staged rows, as the importer sees them: a broken geohash is no location
    broken = df["user_geohash"].str.contains("a")
    assert 0.08 < broken.mean() < 0.10
    seen = df.assign(user_geohash=df["user_geohash"].where(~broken)).drop_duplicates()
    assert r.rows_kept == len(seen)
    assert r.flags["location_dropped"] == int(seen["user_geohash"].isna().sum())
    ev = ws.events("tianchi")
    assert (ev[BEH] == "buy").sum() == (seen["behavior_type"] == "4").sum()  # purchases kept
    assert (r.located_rows, r.located_items) == _located(ws, "tianchi")
    assert not r.warnings


def test_points_spread_over_continents_warned(ws: Store, nyc: pd.DataFrame,
                                              tmp_path: Path) -> None:
    path = tmp_path / "tianchi_far.csv"
    _tianchi(nyc, path, invalid=0, far=20)  # 5% of the points moved to East Asia
    r = import_file(ws, path, name="far", replace=True)
    (warning,) = r.warnings
    km = int(re.search(r"spread over ([\d,]+) km", warning).group(1).replace(",", ""))
    assert km > 10_000 and "check the columns mapped to latitude and longitude" in warning
    _user_words(r.warnings)


@pytest.mark.parametrize("path", [
    pytest.param(NYC, id="nyc"), pytest.param(TAOBAO, id="taobao"),
    pytest.param(GEOLIFE, id="geolife"),
    *(pytest.param(p, id=f"full-{k}", marks=pytest.mark.full_data)
      for k, p in (("nyc", FULL_NYC), ("taobao", FULL_TAOBAO), ("geolife", FULL_GEOLIFE)))])
def test_real_slices_get_no_location_warning(ws: Store, path: Path) -> None:
    r = import_file(ws, path, name="plain", replace=True)
    assert not r.warnings and r.flags["location_dropped"] == 0
    assert (r.located_rows, r.located_items) == _located(ws, "plain")
    assert r.has_coordinates == (r.located_rows > 0)
    _user_words(r.notes)


# -- latitude and longitude swapped ---------------------------------------------------------
def test_swapped_nyc_warned_and_the_swap_fixes_it(ws: Store, nyc: pd.DataFrame,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "nyc_swapped.csv.gz"
    nyc.rename(columns={"latitude": "longitude", "longitude": "latitude"}).to_csv(
        path, index=False, compression="gzip")
    sn = sniff(path)
    assert sn.mapping[LAT] == "latitude"  # the column holds New York's longitudes
    (warning,) = sn.warnings
    assert warning.startswith("Latitude and longitude look swapped") and "Antarctica" in warning
    r = import_file(ws, path, name="swapped", replace=True)
    (warning,) = r.warnings
    assert "Antarctica" in warning and "--map lat=longitude --map lon=latitude" in warning
    assert re.search(r"around 40\.\d\d, -73\.\d\d", warning)
    _user_words(r.warnings)
    # importing with the two swapped gives the original coordinates, and no warning
    fixed = import_file(ws, path, name="unswapped", replace=True,
                        mapping={LAT: "longitude", LON: "latitude"})
    assert not fixed.warnings and not sniff(NYC).warnings
    original = import_file(ws, NYC, name="original", replace=True)
    a, b = ws.events("unswapped"), ws.events("original")
    assert a[[LAT, LON]].equals(b[[LAT, LON]]) and original.located_rows == fixed.located_rows


def test_swapped_beyond_90_degrees_named_before_and_at_import(ws: Store,
                                                              tmp_path: Path) -> None:
    lines = gzip.open(GEOLIFE, "rt").read().splitlines()
    assert lines[0] == "lat,lng,datetime,uid"
    path = tmp_path / "geolife_swapped.csv"
    path.write_text("\n".join(["lng,lat,datetime,uid", *lines[1:]]) + "\n")
    (warning,) = sniff(path).warnings
    assert "latitude beyond ±90°" in warning and "from column lat" in warning
    # every fix would lose its location, so no stay point is left: the error says why
    with pytest.raises(IngestError, match="Latitude and longitude look swapped: 121,458 of"):
        import_file(ws, path, name="geo_swapped", replace=True)
    r = import_file(ws, path, name="geo_swapped", replace=True,
                    mapping={LAT: "lng", LON: "lat"})
    assert r.extra["stay_points"] == 174 and not r.warnings  # as the original file (README)


# -- what the sniff recognised, in the user's words ----------------------------------------
def test_recognition_notes_name_the_format_and_its_evidence(tmp_path: Path) -> None:
    assert sniff(TAOBAO).notes[0] == (
        "Recognised as Taobao UserBehavior (Alibaba) from its 5 comma-separated columns "
        "without a header, read as user_id, item_id, category_id, behavior, timestamp.")
    assert sniff(NYC, fmt="tsmc").notes == sniff(NYC).notes  # named as it is recognised
    assert sniff(NYC, fmt="generic").notes[0] == (
        "Read as a generic event table, as chosen (on its own it would be read as a "
        "Foursquare TSMC2014 check-in export).")
    path = tmp_path / "events.csv"
    path.write_text("visitor_id,sku,event_time\nv1,p1,2020-01-01 10:00\nv2,p2,2020-01-02 11:00\n")
    sn = sniff(path)
    assert sn.format == "generic" and sn.notes[0].startswith("No known format recognised")
    for p in (NYC, TAOBAO, GEOLIFE):
        _user_words(sniff(p).notes)

"""Local time at import (analytics/ingest/localtime.py) and time columns that are no times, on
the real NYC check-ins and GeoLife fixes of tests/data.

The NYC slice holds UTC times only (its ``minute_offset`` counts minutes since the first
check-in; it is no time zone). The files a user brings carry the same check-ins in other
layouts, rebuilt here from the slice's real rows:

* the raw Foursquare TSMC2014 file (``dataset_TSMC2014_NYC.txt``): its ``timezoneOffset``
  column is each check-in's local offset, -240 in summer (EDT) and -300 in winter (EST); the
  offsets are written from New York's legal clock (Python's ``zoneinfo``, independent of the
  importer's polygon lookup and of DuckDB's ICU);
* SNAP Gowalla's layout: ISO times ending in ``Z``;
* a GETNext-style CSV whose times end in ``+00:00``.

Before the local-time step the ``+00:00`` was stored as a local offset of 0 (New York shown
4-5 hours off) and the ``Z`` file got the longitude estimate (UTC-5 all year: an hour off in
summer); the tests below fail on either.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from trailscope.analytics import schema, spacetime
from trailscope.analytics.ingest import localtime
from trailscope.analytics.ingest.pipeline import IngestError, import_file
from trailscope.analytics.store import Store

from tests.conftest import GEOLIFE, NYC

U, IT, T, TZ = schema.USER, schema.ITEM, schema.TS, schema.TZ_OFFSET
NEW_YORK = ZoneInfo("America/New_York")


def _checkins(path: Path) -> pd.DataFrame:
    """The real check-ins of a reconstructed NYC file: user, item (stan_poi_id), UTC time,
    coordinates, category and New York's legal offset at each check-in's instant."""
    raw = pd.read_csv(path)
    utc = pd.to_datetime(raw["utc_time_minute"])
    legal = utc.dt.tz_localize("UTC").dt.tz_convert(NEW_YORK)
    return pd.DataFrame({
        "user": raw["user_id"].astype(str), "item": raw["stan_poi_id"].astype(str),
        "utc": utc, "lat": raw["latitude"], "lon": raw["longitude"],
        "category": raw["venue_category"].fillna(""),
        "legal_offset": ((legal.dt.tz_localize(None) - utc).dt.total_seconds() // 60)
        .astype(int),
    })


@pytest.fixture(scope="module")
def nyc() -> pd.DataFrame:
    return _checkins(NYC)


def _write_tsmc(df: pd.DataFrame, path: Path) -> Path:
    when = df["utc"].dt.strftime("%a %b %d %H:%M:%S +0000 %Y")
    lines = [f"{u}\t{i}\tcat\t{c}\t{la}\t{lo}\t{z}\t{w}" for u, i, c, la, lo, z, w in zip(
        df["user"], df["item"], df["category"], df["lat"], df["lon"], df["legal_offset"],
        when, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_snap(df: pd.DataFrame, path: Path) -> Path:
    when = df["utc"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"{u}\t{w}\t{la}\t{lo}\t{i}" for u, w, la, lo, i in zip(
        df["user"], when, df["lat"], df["lon"], df["item"], strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_getnext(df: pd.DataFrame, path: Path) -> Path:
    out = pd.DataFrame({"user_id": df["user"], "POI_id": df["item"],
                        "POI_catname": df["category"], "latitude": df["lat"],
                        "longitude": df["lon"],
                        "UTC_time": df["utc"].dt.strftime("%Y-%m-%d %H:%M:%S+00:00")})
    out.to_csv(path, index=False)
    return path


def _stored(store: Store, name: str) -> pd.DataFrame:
    ev = store.events(name, [U, IT, T, TZ])
    return ev.drop_duplicates([U, IT, T]).set_index([U, IT, T])


def _busiest_local_hour(ev: pd.DataFrame) -> int:
    local = pd.Series(ev.index.get_level_values(T)) + pd.to_timedelta(
        ev[TZ].astype("float64").fillna(0).to_numpy(), unit="min")
    return int(local.dt.hour.value_counts().idxmax())


def _local_time(store: Store, name: str) -> dict:
    return store.info(name).report["extra"]["local_time"]


def test_utc_files_get_new_york_time_with_daylight_saving(store: Store, tmp_path: Path,
                                                          nyc: pd.DataFrame) -> None:
    _same_clock_in_every_layout(store, tmp_path, nyc)


def test_full_nyc_in_every_layout(store: Store, tmp_path: Path, full_data: Path) -> None:
    """The same on all 147,938 check-ins of the full NYC file ($TRAILSCOPE_DATA)."""
    from tests.conftest import FULL_NYC

    _same_clock_in_every_layout(store, tmp_path, _checkins(FULL_NYC))


def _same_clock_in_every_layout(store: Store, tmp_path: Path, nyc: pd.DataFrame) -> None:
    import_file(store, _write_tsmc(nyc, tmp_path / "dataset_TSMC2014_NYC.txt"), name="tsmc")
    import_file(store, _write_snap(nyc, tmp_path / "gowalla_nyc.txt"), name="snap")
    import_file(store, _write_getnext(nyc, tmp_path / "NYC_train.csv"), name="getnext")
    assert store.info("snap").format == "snap" and store.info("tsmc").format == "tsmc"

    truth = _stored(store, "tsmc")  # the file's own offsets
    assert set(truth[TZ].unique()) == {-240, -300}
    assert _local_time(store, "tsmc")["basis"] == spacetime.BASIS_FILE
    for name in ("snap", "getnext"):
        got = _stored(store, name)
        both = truth.merge(got, left_index=True, right_index=True, suffixes=("", "_got"))
        assert len(both) >= 0.99 * len(truth)
        same = (both[TZ].astype("int64") == both[f"{TZ}_got"].astype("int64")).mean()
        assert same >= 0.99, (name, same)
        assert set(got[TZ].dropna().unique()) == {-240, -300}  # summer and winter time
        assert _busiest_local_hour(got) == _busiest_local_hour(truth)
        lt = _local_time(store, name)
        assert lt["basis"] == spacetime.BASIS_ZONE and lt["zones"] == ["America/New_York"]
        assert lt["events"] == {spacetime.BASIS_ZONE: store.info(name).rows}
        fallback, text = spacetime.clock_text(store.info(name).report["extra"],
                                              len(got), float(nyc["lon"].median()))
        assert fallback is None
        assert "coordinates" in text and "daylight saving" in text and "New_York" in text


def test_geolife_stay_points_in_china_time(store: Store) -> None:
    import_file(store, GEOLIFE, name="geolife")  # GPS fixes around Beijing -> stay points
    ev = store.events("geolife")
    assert len(ev) > 50 and (ev[TZ] == 480).all()
    lt = _local_time(store, "geolife")
    assert lt["zones"] == ["Asia/Shanghai"] and lt["basis"] == spacetime.BASIS_ZONE


def test_sea_and_missing_coordinates(store: Store, tmp_path: Path, nyc: pd.DataFrame) -> None:
    """Points in no country's zone get the longitude rule; rows without coordinates stay
    UTC (NULL); the page's sentence says which share got what."""
    df = nyc.iloc[:400].copy()
    df.loc[df.index[:50], ["lat", "lon"]] = (35.0, -40.0)  # mid-Atlantic: UTC-3 by longitude
    path = _write_getnext(df, tmp_path / "mixed.csv")
    text = path.read_text().splitlines()
    for k in range(51, 61):  # ten rows without coordinates
        f = text[k].split(",")
        f[3] = f[4] = ""
        text[k] = ",".join(f)
    path.write_text("\n".join(text) + "\n")
    import_file(store, path, name="mixed")
    ev = store.events("mixed").set_index(U, append=True)
    at_sea = (ev[schema.LON] == -40.0).to_numpy()
    assert (ev.loc[at_sea, TZ] == -180).all()
    assert ev[TZ].isna().sum() == 10 and ev.loc[ev[schema.LAT].isna(), TZ].isna().all()
    lt = _local_time(store, "mixed")
    assert lt["events"][spacetime.BASIS_LONGITUDE] == at_sea.sum() >= 45  # a few repeats
    assert lt["events"][spacetime.BASIS_UTC] == 10
    fallback, sentence = spacetime.clock_text(store.info("mixed").report["extra"], 390, -73.9)
    assert fallback is None
    assert "% of events: local time estimated from their longitude" in sentence
    assert "3% of events: UTC" in sentence


def test_zone_lookup_at_real_places() -> None:
    import numpy as np

    lat = np.array([40.7484, 39.9075, 48.8566, -33.8688, 35.0])
    lon = np.array([-73.9857, 116.3972, 2.3522, 151.2093, -40.0])
    got = localtime.zone_names(lat, lon)
    assert got.tolist() == ["America/New_York", "Asia/Shanghai", "Europe/Paris",
                            "Australia/Sydney", None]


# -- columns that are no timestamps ---------------------------------------------------------
def _with_column(nyc: pd.DataFrame, path: Path, **extra: pd.Series) -> Path:
    out = pd.DataFrame({"user_id": nyc["user"], "venue_id": nyc["item"],
                        "latitude": nyc["lat"], "longitude": nyc["lon"], **extra})
    out.to_csv(path, index=False)
    return path


def _refused(store: Store, path: Path, col: str) -> str:
    with pytest.raises(IngestError) as err:
        import_file(store, path, name="times", mapping={T: col})
    assert store.list_datasets().empty and not store.exists("times")
    msg = str(err.value)
    assert f"column '{col}'" in msg and "date and time" in msg and "unix seconds" in msg
    return msg


def test_hour_of_day_column_refused(store: Store, tmp_path: Path, nyc: pd.DataFrame) -> None:
    local = nyc["utc"] + pd.to_timedelta(nyc["legal_offset"], unit="min")
    path = _with_column(nyc, tmp_path / "hours.csv", hour=local.dt.hour)
    msg = _refused(store, path, "hour")
    assert "whole numbers from 0 to 23" in msg and "hours of the day" in msg


def test_weekday_column_refused(store: Store, tmp_path: Path, nyc: pd.DataFrame) -> None:
    path = _with_column(nyc, tmp_path / "days.csv", weekday=nyc["utc"].dt.day_of_week)
    msg = _refused(store, path, "weekday")
    assert "from 0 to 6" in msg and "days of the week" in msg


def test_yyyymmdd_column_refused(store: Store, tmp_path: Path, nyc: pd.DataFrame) -> None:
    day = nyc["utc"].dt.strftime("%Y%m%d").astype(int)
    path = _with_column(nyc, tmp_path / "days.csv", day=day)
    assert "dates written as YYYYMMDD" in _refused(store, path, "day")


def test_minute_counter_column_refused(store: Store, tmp_path: Path) -> None:
    """The real NYC file's ``minute_offset`` (minutes since its first check-in) mapped as
    the time: read as unix seconds it would all be January 1970."""
    msg = _refused(store, NYC, "minute_offset")
    assert "1970" in msg and "not timestamps" in msg


def test_whole_file_before_1990_refused(store: Store, tmp_path: Path,
                                        nyc: pd.DataFrame) -> None:
    """The head shows unix times on rows that are rejected (no user); every kept row's time
    is an hour of the day: refused after staging, nothing stored."""
    unix = nyc["utc"].iloc[:600].map(lambda t: int(t.timestamp()))
    head = nyc.iloc[:600].assign(user="", t=unix)
    rest = nyc.iloc[600:].assign(t=nyc["utc"].iloc[600:].dt.hour)
    df = pd.concat([head, rest])
    path = tmp_path / "late.csv"
    pd.DataFrame({"user_id": df["user"], "venue_id": df["item"], "t": df["t"]}).to_csv(
        path, index=False)
    with pytest.raises(IngestError, match="before 1990") as err:
        import_file(store, path, name="late", mapping={T: "t"})
    assert "column 't'" in str(err.value)
    assert store.list_datasets().empty


# -- the zone clocks: each change found to the minute, same offsets as ICU row by row ------
ZONES = ["America/New_York", "America/St_Johns", "Australia/Adelaide", "Australia/Lord_Howe",
         "Europe/Berlin", "Asia/Tehran", "Asia/Kathmandu", "Pacific/Chatham"]


def test_clocks_find_every_change_to_the_minute() -> None:
    import duckdb

    cur = duckdb.connect()
    lo, hi = pd.Timestamp("2011-12-30 07:13"), pd.Timestamp("2013-01-02 19:00")
    got = localtime.clocks(cur, ZONES, lo, hi)
    for zone, segments in zip(ZONES, got, strict=True):
        tz = ZoneInfo(zone)
        minutes = pd.date_range(lo.floor("D"), hi.ceil("D"), freq="min")

        def off(t: pd.Timestamp, tz=tz) -> int:
            return int(t.tz_localize("UTC").tz_convert(tz).utcoffset().total_seconds() // 60)

        hourly = [off(t) for t in minutes[::60]]
        changes = sum(a != b for a, b in zip(hourly, hourly[1:], strict=False))
        assert len(segments) - 1 == changes, zone  # Kathmandu: none; the others: 2 a year
        for start, o in segments[1:]:
            t = pd.Timestamp(start)
            assert off(t) == o and off(t - pd.Timedelta(minutes=1)) != o, (zone, t)
    # the SQL of the clocks gives ICU's offset at every minute around each change
    t = "CAST(t AS TIMESTAMP)"
    probes = pd.DataFrame({"t": [pd.Timestamp(s) + pd.Timedelta(minutes=d)
                                 for segs in got for s, _ in segs[1:] for d in (-1, 0, 1)]})
    cur.register("probes", probes)
    for zone, segments in zip(ZONES, got, strict=True):
        a, b = cur.execute(
            f"SELECT list({localtime._clock_sql(segments, t)} ORDER BY t), "
            f"list({localtime.offset_sql(repr(zone), t)} ORDER BY t) FROM probes").fetchone()
        assert a == b, zone


CITIES = {"America/New_York": (40.75, -73.99), "America/Chicago": (41.88, -87.63),
          "America/Denver": (39.74, -104.99), "America/Los_Angeles": (34.05, -118.24),
          "America/Sao_Paulo": (-23.55, -46.63), "Europe/London": (51.51, -0.13),
          "Europe/Paris": (48.86, 2.35), "Europe/Berlin": (52.52, 13.40),
          "Europe/Moscow": (55.76, 37.62), "Africa/Cairo": (30.04, 31.24),
          "Asia/Kolkata": (28.61, 77.21), "Asia/Shanghai": (39.90, 116.40),
          "Asia/Tokyo": (35.68, 139.69), "Australia/Sydney": (-33.87, 151.21),
          "Pacific/Auckland": (-36.85, 174.76), "Asia/Dubai": (25.20, 55.27),
          "Africa/Johannesburg": (-26.20, 28.05), "America/Mexico_City": (19.43, -99.13),
          "Asia/Singapore": (1.29, 103.85), "America/Halifax": (44.65, -63.57),
          "Asia/Tehran": (35.69, 51.39), "Asia/Kathmandu": (27.72, 85.32),
          "America/St_Johns": (47.56, -52.71), "Australia/Adelaide": (-34.93, 138.60)}


@pytest.mark.parametrize(("n_cities", "probes"), [(8, None), (24, None), (24, 0)])
def test_zones_of_many_cities(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              n_cities: int, probes: int | None) -> None:
    """The real NYC times placed in 8 cities (a CASE over their clocks), 24 (more clocks than
    MAX_CASE_CLOCKS: a join to the clocks' segments) or 24 with no probes allowed (DuckDB's
    ICU converts each event): the offsets of Python's zoneinfo every way."""
    import duckdb

    if probes is not None:
        monkeypatch.setattr(localtime, "MAX_PROBES", probes)
    cities = dict(list(CITIES.items())[:n_cities])
    times = pd.to_datetime(pd.read_csv(NYC, usecols=["utc_time_minute"])["utc_time_minute"])
    names = list(cities)
    rows = pd.DataFrame({"user_id": [f"u{k % 50}" for k in range(len(times))],
                         "item_id": [names[k % len(names)] for k in range(len(times))],
                         "ts": times.dt.strftime("%Y-%m-%dT%H:%M:%SZ")})
    rows["lat"] = [cities[z][0] for z in rows["item_id"]]
    rows["lon"] = [cities[z][1] for z in rows["item_id"]]
    path = tmp_path / "world.csv"
    rows.to_csv(path, index=False)
    clocks = localtime.clocks(duckdb.connect(), sorted(cities), times.min(), times.max())
    if probes is None:
        assert (len({tuple(c) for c in clocks}) > localtime.MAX_CASE_CLOCKS) == (n_cities > 8)
    else:
        assert clocks is None
    import_file(store, path, name="world")
    ev = store.events("world")
    want = [int(t.tz_localize("UTC").tz_convert(ZoneInfo(z)).utcoffset().total_seconds()
                // 60) for t, z in zip(ev[T], ev[IT], strict=True)]
    assert ev[TZ].astype("int64").tolist() == want
    zones = _local_time(store, "world")["zones"]
    assert len(zones) == min(n_cities, localtime.TOP_ZONES) and set(zones) <= set(cities)

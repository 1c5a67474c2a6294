"""The importer on the shared real datasets: exact counts from data/README.md."""

from __future__ import annotations

from datetime import datetime

import pytest
from trailscope.analytics import schema
from trailscope.analytics.ingest.pipeline import import_file, sniff
from trailscope.analytics.store import Store

from tests.conftest import GEOLIFE, MOVIELENS, NYC, TAOBAO


@pytest.fixture(scope="module")
def ws(tmp_path_factory, shared_data) -> Store:
    s = Store(tmp_path_factory.mktemp("ws") / "trailscope.duckdb")
    yield s
    s.close()


def test_nyc_reconstructed(ws: Store) -> None:
    assert sniff(NYC).format == "tsmc"
    r = import_file(ws, NYC, name="nyc")
    assert r.format == "tsmc"
    assert r.rows_read == 147_938
    # the file's times are to the minute, so some check-ins repeat exactly
    assert r.rejected_by_reason.get("duplicate", 0) == 458
    assert r.rows_rejected == 458 and r.rows_kept == 147_938 - 458
    assert (r.users, r.items) == (1_083, 5_135)
    assert r.has_coordinates
    assert r.time_min == datetime(2012, 4, 3, 18, 0) and r.time_max.year == 2013
    # each example line really repeats an earlier line of the file
    import gzip

    lines = gzip.open(NYC, "rt").read().splitlines()
    for ln in r.examples["duplicate"]:
        assert lines[ln - 1] in lines[1:ln - 1]
    # venue category is known for ~70% of rows; rows without it are kept (NULL category)
    cat = ws.query_df(f"SELECT count(*) FILTER ({schema.CATEGORY} IS NULL) AS missing, "
                      f"count(*) AS n FROM {ws.table('nyc')}").iloc[0]
    assert 0.2 < cat["missing"] / cat["n"] < 0.4
    info = ws.info("nyc")
    assert info.rows == r.rows_kept and info.report["users"] == 1_083
    assert info.report["rejected_by_reason"]["duplicate"] == 458


def test_nyc_keep_duplicates(ws: Store) -> None:
    r = import_file(ws, NYC, name="nyc_all", keep_duplicates=True)
    assert r.rows_kept == 147_938 and r.rows_rejected == 0
    assert r.rejected_by_reason.get("duplicate", 0) == 0


def test_movielens_100k(ws: Store) -> None:
    r = import_file(ws, MOVIELENS, name="ml100k")
    assert r.format == "movielens"
    assert (r.rows_read, r.rows_kept, r.users, r.items) == (100_000, 100_000, 943, 1_682)
    assert not r.has_coordinates
    ev = ws.query_df(f"SELECT {schema.ITEM}, any_value({schema.CATEGORY}) AS cat, "
                     f"min({schema.VALUE}) AS lo, max({schema.VALUE}) AS hi, "
                     f"any_value({schema.BEHAVIOR}) AS beh FROM {ws.table('ml100k')} "
                     f"GROUP BY 1").set_index(schema.ITEM)
    # category = the first genre flagged in u.item (u.genre order)
    assert ev.loc["1", "cat"] == "Animation"  # Toy Story: Animation|Children's|Comedy
    assert ev.loc["2", "cat"] == "Action"  # GoldenEye: Action|Adventure|Thriller
    assert ev["cat"].notna().sum() >= 1_680  # two movies have only the 'unknown' genre
    assert ev["lo"].min() == 1 and ev["hi"].max() == 5
    assert set(ev["beh"]) == {"rate"}


def test_taobao_sample(ws: Store) -> None:
    r = import_file(ws, TAOBAO, name="taobao")
    assert r.format == "taobao"
    assert r.rows_read == 84_475 and r.rows_kept == 84_475
    assert r.users == 815
    # Items are keyed by item id: 55,368, the README's number. (item, category) pairs number
    # 55,369 because one item appears under two categories; nothing is rejected, so no gap.
    assert r.items == 55_368
    beh = ws.query_df(f"SELECT DISTINCT {schema.BEHAVIOR} AS b FROM {ws.table('taobao')}")
    assert set(beh["b"]) == {"pv", "cart", "fav", "buy"}
    # a few timestamps lie far before the 2017-11-25..12-03 window (as in the original):
    # flagged, not rejected
    assert r.time_min < datetime(2017, 11, 20)
    assert 1 <= r.flags["ts_outlier"] <= 50
    assert r.flags["ts_before_1990"] == 0 and r.flags["ts_in_future"] == 0
    tz = ws.query_df(f"SELECT DISTINCT {schema.TZ_OFFSET} AS z FROM {ws.table('taobao')}")
    assert list(tz["z"]) == [480]


def test_geolife_sample(ws: Store) -> None:
    r = import_file(ws, GEOLIFE, name="geolife")
    assert r.format == "geolife"
    assert r.rows_read == 217_653  # GPS fixes read
    assert r.has_coordinates and r.users == 2 and r.items > 1
    assert r.rows_kept == r.extra["stay_points"] > 10
    ev = ws.events("geolife")
    beijing = ev[schema.LAT].between(39.4, 41.1) & ev[schema.LON].between(115.4, 117.6)
    assert beijing.mean() > 0.9
    assert (ev[schema.VALUE] >= 20).all()  # dwell minutes of a stay point
    # an item (place) has one location: its centroid
    per_item = ev.groupby(schema.ITEM)[[schema.LAT, schema.LON]].nunique()
    assert (per_item == 1).all().all()

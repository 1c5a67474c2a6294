"""The importer on real datasets: exact counts of the committed slices (tests/data/README.md)
and, marked full_data, of the complete files (the shared data README's numbers)."""

from __future__ import annotations

from datetime import datetime

import pytest
from trailscope.analytics import schema
from trailscope.analytics.ingest.pipeline import import_file, sniff
from trailscope.analytics.store import Store

from tests.conftest import FULL_GEOLIFE, FULL_NYC, FULL_TAOBAO, GEOLIFE, MOVIELENS, NYC, TAOBAO

_full = pytest.mark.full_data
# (file, rows, exact duplicates, users, items, first check-in): counted from the files
NYC_CASES = [
    pytest.param(NYC, 47_929, 91, 361, 3_565, datetime(2012, 4, 3, 18, 0), id="slice"),
    pytest.param(FULL_NYC, 147_938, 458, 1_083, 5_135, datetime(2012, 4, 3, 18, 0), id="full",
                 marks=_full),
]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Store:
    s = Store(tmp_path_factory.mktemp("ws") / "trailscope.duckdb")
    yield s
    s.close()


@pytest.mark.parametrize(("path", "rows", "dups", "users", "items", "first"), NYC_CASES)
def test_nyc_reconstructed(ws: Store, path, rows, dups, users, items, first) -> None:
    assert sniff(path).format == "tsmc"
    r = import_file(ws, path, name="nyc", replace=True)
    assert r.format == "tsmc"
    assert r.rows_read == rows
    # the file's times are to the minute, so some check-ins repeat exactly
    assert r.rejected_by_reason.get("duplicate", 0) == dups
    assert r.rows_rejected == dups and r.rows_kept == rows - dups
    assert (r.users, r.items) == (users, items)
    assert r.has_coordinates
    assert r.time_min == first and r.time_max.year == 2013
    # each example line really repeats an earlier line of the file
    import gzip

    lines = gzip.open(path, "rt").read().splitlines()
    for ln in r.examples["duplicate"]:
        assert lines[ln - 1] in lines[1:ln - 1]
    # venue category is known for ~70% of rows; rows without it are kept (NULL category)
    cat = ws.query_df(f"SELECT count(*) FILTER ({schema.CATEGORY} IS NULL) AS missing, "
                      f"count(*) AS n FROM {ws.table('nyc')}").iloc[0]
    assert 0.2 < cat["missing"] / cat["n"] < 0.4
    info = ws.info("nyc")
    assert info.rows == r.rows_kept and info.report["users"] == users
    assert info.report["rejected_by_reason"]["duplicate"] == dups


@pytest.mark.parametrize(("path", "rows"), [pytest.param(NYC, 47_929, id="slice"),
                                            pytest.param(FULL_NYC, 147_938, id="full",
                                                         marks=_full)])
def test_nyc_keep_duplicates(ws: Store, path, rows) -> None:
    r = import_file(ws, path, name="nyc_all", keep_duplicates=True, replace=True)
    assert r.rows_kept == rows and r.rows_rejected == 0
    assert r.rejected_by_reason.get("duplicate", 0) == 0


@_full
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


@pytest.mark.parametrize(("path", "rows", "users", "items"), [
    pytest.param(TAOBAO, 26_222, 250, 18_624, id="slice"),
    pytest.param(FULL_TAOBAO, 84_475, 815, 55_368, id="full", marks=_full)])
def test_taobao_sample(ws: Store, path, rows, users, items) -> None:
    r = import_file(ws, path, name="taobao", replace=True)
    assert r.format == "taobao"
    assert r.rows_read == rows and r.rows_kept == rows
    assert r.users == users
    # Items are keyed by item id: 55,368, the README's number. (item, category) pairs number
    # 55,369 because one item appears under two categories (the slice: 18,624 and 18,625);
    # nothing is rejected, so no gap.
    assert r.items == items
    beh = ws.query_df(f"SELECT DISTINCT {schema.BEHAVIOR} AS b FROM {ws.table('taobao')}")
    assert set(beh["b"]) == {"pv", "cart", "fav", "buy"}
    # a few timestamps lie far before the 2017-11-25..12-03 window (as in the original):
    # flagged, not rejected
    assert r.time_min < datetime(2017, 11, 20)
    assert 1 <= r.flags["ts_outlier"] <= 50
    assert r.flags["ts_before_1990"] == 0 and r.flags["ts_in_future"] == 0
    tz = ws.query_df(f"SELECT DISTINCT {schema.TZ_OFFSET} AS z FROM {ws.table('taobao')}")
    assert list(tz["z"]) == [480]


@pytest.mark.parametrize(("path", "fixes"), [
    pytest.param(GEOLIFE, 121_458, id="slice"),
    pytest.param(FULL_GEOLIFE, 217_653, id="full", marks=_full)])
def test_geolife_sample(ws: Store, path, fixes) -> None:
    r = import_file(ws, path, name="geolife", replace=True)
    assert r.format == "geolife"
    assert r.rows_read == fixes  # GPS fixes read
    assert r.has_coordinates and r.users == 2 and r.items > 1
    assert r.rows_kept == r.extra["stay_points"] > 10
    ev = ws.events("geolife")
    beijing = ev[schema.LAT].between(39.4, 41.1) & ev[schema.LON].between(115.4, 117.6)
    assert beijing.mean() > 0.9
    assert (ev[schema.VALUE] >= 20).all()  # dwell minutes of a stay point
    # an item (place) has one location: its centroid
    per_item = ev.groupby(schema.ITEM)[[schema.LAT, schema.LON]].nunique()
    assert (per_item == 1).all().all()

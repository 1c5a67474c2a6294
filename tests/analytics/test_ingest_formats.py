"""Format recognition and per-format column rules, on small synthetic files."""

from __future__ import annotations

import gzip
import json
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.ingest import timeparse
from trailscope.analytics.ingest.geohash import decode
from trailscope.analytics.ingest.pipeline import FORMATS, import_file, sniff
from trailscope.analytics.store import Store

U, IT, T, LAT, LON = schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON
BEH, CAT, VAL, TZ = schema.BEHAVIOR, schema.CATEGORY, schema.VALUE, schema.TZ_OFFSET


def _events(store: Store, name: str) -> pd.DataFrame:
    return store.events(name).reset_index(drop=True)


def test_formats_constant() -> None:
    assert FORMATS == ("gowalla", "tsmc", "snap", "taobao", "tianchi", "movielens", "geolife",
                       "generic")


def test_registry_contract() -> None:
    """Each format module's rules are well formed: canonical field names, normalised column
    names, one name per format, and generic (which takes every file) last."""
    from trailscope.analytics.ingest.formats import registry
    from trailscope.analytics.ingest.layout import norm

    assert [f.name for f in registry.ALL] == list(FORMATS) and FORMATS[-1] == "generic"
    for form in registry.ALL:
        assert registry.get(form.name) is form
        assert form.label and "_" not in form.label, form.name  # shown to the user
        assert all(norm(n) == n for n in form.header_names), form.name
        for variant, table in form.columns.items():
            assert set(table) <= set(schema.COLUMNS), (form.name, variant)
            assert all(norm(c) == c for cands in table.values() for c in cands), form.name
            assert set(form.required(variant)) <= set(schema.COLUMNS)
        for variant, names in form.names.items():
            assert variant in form.columns and len(set(names)) == len(names), form.name
    with pytest.raises(ValueError, match="unknown format 'excel'; use auto or one of gowalla"):
        registry.get("excel")


def test_tsmc_raw_tsv(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "dataset_TSMC2014_NYC.txt"
    path.write_text(
        "470\t49bbd6c0f964a520f4531fe3\t4bf58dd8d48988d127951735\tArts & Crafts Store\t"
        "40.719810375488535\t-74.00258103213994\t-240\tTue Apr 03 18:00:09 +0000 2012\n"
        "979\t4a43c0aef964a520c6a61fe3\t4bf58dd8d48988d1df941735\tBridge\t"
        "40.60679958140643\t-74.04416981025437\t-240\tTue Apr 03 18:00:25 +0000 2012\n")
    sn = sniff(path)
    assert (sn.format, sn.delimiter, sn.has_header) == ("tsmc", "\t", False)
    assert sn.mapping[IT] == "venue_id" and sn.mapping[TZ] == "timezone_offset"
    assert list(sn.preview.columns) == sn.columns and len(sn.preview) == 2
    import_file(store, path, name="tsmc_raw")
    ev = _events(store, "tsmc_raw").set_index(U)
    assert ev.loc["470", T] == datetime(2012, 4, 3, 18, 0, 9)
    assert ev.loc["470", TZ] == -240
    assert ev.loc["470", CAT] == "Arts & Crafts Store"
    assert ev.loc["979", IT] == "4a43c0aef964a520c6a61fe3"
    assert ev.loc["979", LAT] == pytest.approx(40.6068, abs=1e-4)


def test_tsmc_processed_csv(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "NYC_train.csv"
    path.write_text(
        "user_id,POI_id,POI_catid,POI_catname,latitude,longitude,timezone,UTC_time,norm_time\n"
        "1,p7,c1,Bar,40.71,-74.00,-240,2012-04-03 18:00:09+00:00,0.1\n"
        "2,p8,c2,Cafe,40.72,-74.01,-300,2012-11-05 09:30:00+00:00,0.2\n")
    sn = sniff(path)
    assert (sn.format, sn.variant) == ("tsmc", "processed")
    import_file(store, path, name="tsmc_proc")
    ev = _events(store, "tsmc_proc").set_index(U)
    assert ev.loc["1", IT] == "p7" and ev.loc["1", CAT] == "Bar"
    assert ev.loc["2", TZ] == -300 and ev.loc["2", T] == datetime(2012, 11, 5, 9, 30)


def test_snap_gowalla(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "loc-gowalla_totalCheckins.txt"
    path.write_text("0\t2010-10-19T23:55:27Z\t30.2359091167\t-97.7951395833\t22847\n"
                    "0\t2010-10-18T22:17:43Z\t30.2691029532\t-97.7493953705\t420315\n"
                    "1\t2010-10-17T23:42:03Z\t0.0\t0.0\t316637\n")
    assert sniff(path).format == "snap"
    r = import_file(store, path, name="snap")
    # a location is optional: the check-in at (0, 0) is kept without one, and counted
    assert not r.rejected_by_reason and r.flags["location_dropped"] == 1
    assert r.located_rows == r.located_items == 2
    ev = _events(store, "snap")
    assert set(ev[IT]) == {"22847", "420315", "316637"}
    assert ev.set_index(IT).loc["316637", [LAT, LON]].isna().all()
    assert ev[T].min() == datetime(2010, 10, 17, 23, 42, 3)
    assert set(ev[BEH]) == {schema.DEFAULT_BEHAVIOR}


def test_tianchi_with_geohash(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "tianchi_mobile_recommend_train_user.csv"
    path.write_text("user_id,item_id,behavior_type,user_geohash,item_category,time\n"
                    "10001,2001,1,ezs42,4245,2014-12-06 02\n"
                    "10001,2002,2,,5894,2014-12-06 03\n"
                    "10002,2003,3,,5894,2014-12-07 10\n"
                    "10002,2004,4,u4pruydqqvj,1863,2014-12-08 23\n"
                    "10003,2005,1,aaaa,1863,2014-12-08 23\n")
    assert sniff(path).format == "tianchi"
    r = import_file(store, path, name="tianchi")
    # 'aaaa' is not a geohash: the event is kept without a location
    assert not r.rejected_by_reason and r.flags["location_dropped"] == 1
    assert r.located_rows == 2 and r.has_coordinates
    ev = _events(store, "tianchi").set_index(IT)
    assert ev.loc["2005", [LAT, LON]].isna().all() and ev.loc["2005", BEH] == "pv"
    assert list(ev.loc[["2001", "2002", "2003", "2004"], BEH]) == ["pv", "fav", "cart", "buy"]
    # Beijing wall time 2014-12-06 02:00 is 2014-12-05 18:00 UTC
    assert ev.loc["2001", T] == datetime(2014, 12, 5, 18) and ev.loc["2001", TZ] == 480
    # known geohashes: ezs42 -> (42.605, -5.603), u4pruydqqvj -> (57.64911, 10.40744)
    assert ev.loc["2001", LAT] == pytest.approx(42.605, abs=1e-3)
    assert ev.loc["2001", LON] == pytest.approx(-5.603, abs=1e-3)
    assert ev.loc["2004", LAT] == pytest.approx(57.64911, abs=1e-5)
    assert ev.loc["2004", LON] == pytest.approx(10.40744, abs=1e-5)
    assert pd.isna(ev.loc["2002", LAT]) and ev.loc["2002", CAT] == "5894"


def test_geohash_python_decoder() -> None:
    assert decode("ezs42") == pytest.approx((42.605, -5.603), abs=1e-3)
    with pytest.raises(ValueError):
        decode("ail")


def test_movielens_ratings_dat_with_movies(store: Store, tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n"
                                          "2::1193::4::978298413\n")
    (tmp_path / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "2::Caf\xe9 (1999)::Comedy\n".encode("latin-1"))
    sn = sniff(tmp_path / "ratings.dat")
    assert (sn.format, sn.delimiter) == ("movielens", "::")
    import_file(store, tmp_path / "ratings.dat", name="ml_dat")
    ev = _events(store, "ml_dat")
    cats = dict(zip(ev[IT], ev[CAT], strict=True))
    assert cats == {"1193": "Drama", "661": "Animation"}
    assert set(ev[BEH]) == {"rate"} and sorted(ev[VAL]) == [3, 4, 5]
    assert ev[T].min() == datetime(1970, 1, 1) + timedelta(seconds=978298413)


def test_movielens_ratings_csv_with_movies(store: Store, tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
                                          "1,3,4.5,964981247\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n'
        '3,"Grumpier Old Men, The (1995)",Comedy|Romance\n')
    assert sniff(tmp_path / "ratings.csv").format == "movielens"
    import_file(store, tmp_path / "ratings.csv", name="ml_csv")
    ev = _events(store, "ml_csv").set_index(IT)
    assert ev.loc["1", CAT] == "Adventure" and ev.loc["3", CAT] == "Comedy"
    assert ev.loc["3", VAL] == 4.5


def test_generic_guessed_mapping(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid,venue,time,latitude,lng,genre,event,amount\n"
                    "a,v1,2021-05-01 08:00,52.5,13.4,Cafe,visit,3.5\n"
                    "b,v2,2021-05-01 09:30,52.6,13.5,Bar,buy,12\n")
    sn = sniff(path)
    assert sn.format == "generic"
    assert sn.mapping == {U: "uid", IT: "venue", T: "time", LAT: "latitude", LON: "lng",
                          CAT: "genre", BEH: "event", VAL: "amount"}
    import_file(store, path, name="generic")
    ev = _events(store, "generic").set_index(U)
    assert ev.loc["b", BEH] == "buy" and ev.loc["b", VAL] == 12
    assert ev.loc["a", T] == datetime(2021, 5, 1, 8, 0) and ev.loc["a", CAT] == "Cafe"


def test_generic_explicit_mapping(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "custom.tsv"
    path.write_text("who\twhat\twhen\tscore\nann\tbook\t2021-01-02T03:04:05\t7\n")
    r = import_file(store, path, name="custom",
                    mapping={U: "who", IT: "what", T: "when", VAL: "score"})
    assert r.mapping[U] == "who"
    ev = _events(store, "custom")
    assert (ev.loc[0, U], ev.loc[0, IT], ev.loc[0, VAL]) == ("ann", "book", 7)


def test_parquet(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user": ["a", "b", "a"], "product_id": [10, 11, 12],
                  "event_time": pd.to_datetime(["2022-03-01 10:00", "2022-03-01 11:00",
                                                "2022-03-02 09:00"]),
                  "action": ["view", "buy", "view"]}).to_parquet(path)
    sn = sniff(path)
    assert sn.kind == "parquet" and sn.format == "generic"
    r = import_file(store, path, name="pq")
    assert r.rows_kept == 3 and r.extra["time_format"] == "native"
    ev = _events(store, "pq")
    assert list(ev[IT]) == ["10", "12", "11"]
    assert ev[T].max() == datetime(2022, 3, 2, 9)


def test_jsonl(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rows = [{"user_id": "u1", "item_id": "i1", "timestamp": 1650000000000, "rating": 4},
            {"user_id": "u2", "item_id": "i2", "timestamp": 1650000360000, "rating": None},
            {"user_id": None, "item_id": "i3", "timestamp": 1650000720000}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    sn = sniff(path)
    assert sn.kind == "json"
    r = import_file(store, path, name="jsonl")
    assert r.rejected_by_reason.get("missing_user", 0) == 1 and r.examples["missing_user"] == [3]
    ev = _events(store, "jsonl").set_index(U)
    assert ev.loc["u1", T] == datetime(2022, 4, 15, 5, 20)  # milliseconds by magnitude
    assert ev.loc["u1", VAL] == 4 and pd.isna(ev.loc["u2", VAL])


GENERIC_CSV = "user,item,ts\na,x,2020-01-01 10:00:00\nb,y,2020-01-02 10:00:00\n"


def test_gzip(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(GENERIC_CSV.encode()))
    r = import_file(store, path)
    assert r.name == "events" and r.rows_kept == 2


def test_zip(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("README.txt", "hi")
        zf.writestr("data/events.csv", GENERIC_CSV * 3)  # the largest member is the data
    sn = sniff(path)
    assert sn.member == "data/events.csv" and sn.format == "generic"
    r = import_file(store, path, keep_duplicates=True)
    assert r.name == "bundle" and r.rows_read == 8  # two repeated headers are data rows...
    assert r.rejected_by_reason.get("bad_time", 0) == 2 and r.rows_kept == 6  # ... with bad times
    assert r.examples["bad_time"] == [4, 7]


def test_geolife_plt(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "Data" / "042" / "Trajectory"
    folder.mkdir(parents=True)
    lines = ["Geolife trajectory", "WGS 84", "Altitude is in Feet", "Reserved 3",
             "0,2,255,My Track,0,0,2,8421376", "0"]
    t0 = datetime(2009, 1, 1, 8, 0)
    for k in range(40):  # 40 minutes at one spot, then a walk away
        lat, lon = (39.9840 + 0.00001 * (k % 3), 116.3180) if k < 30 else \
            (39.9840 + 0.002 * (k - 29), 116.3180)
        t = t0 + pd.Timedelta(minutes=k)
        lines.append(f"{lat},{lon},0,492,39814.0,{t:%Y-%m-%d},{t:%H:%M:%S}")
    (folder / "20090101080000.plt").write_text("\r\n".join(lines) + "\r\n")
    sn = sniff(folder / "20090101080000.plt")
    assert (sn.format, sn.variant, sn.skip) == ("geolife", "plt", 6)
    r = import_file(store, folder / "20090101080000.plt", name="plt")
    assert r.rows_read == 40 and r.rows_kept == 1
    ev = _events(store, "plt")
    assert ev.loc[0, U] == "042" and ev.loc[0, T] == t0
    assert ev.loc[0, VAL] == pytest.approx(29.0)  # dwell minutes: 08:00 -> 08:29


def test_named_format_overrides_detection(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "ub.csv"
    path.write_text("1,100,7,pv,1511544070\n1,101,7,buy,1511544080\n")
    assert sniff(path).format == "taobao"
    assert sniff(path, fmt="generic").format == "generic"
    with pytest.raises(ValueError, match="unknown format"):
        sniff(path, fmt="excel")


def test_time_kind_detection() -> None:
    assert timeparse.detect_kind(["1333476009", "1333476009123"]) == "unix"
    assert timeparse.detect_kind(["Tue Apr 03 18:00:09 +0000 2012"]) == "tsmc"
    assert timeparse.detect_kind(["2014-12-06 02", "2014-12-06 13"]) == "date_hour"
    assert timeparse.detect_kind(["2012-04-07 17:42", "2012-04-03T18:00:09Z"]) == "iso"
    assert timeparse.detect_kind(["2012-04-07 17:42", "yesterday"]) == "auto"


# -- typed CSV reading (analytics.ingest.stage.native_types) ---------------------------------
def _typed_vs_text(store: Store, path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    from trailscope.analytics.ingest import stage

    typed = import_file(store, path, name="typed")
    monkeypatch.setattr(stage, "NATIVE", False)
    text = import_file(store, path, name="text")
    assert "read_natively" not in text.extra
    a, b = typed.to_json(), text.to_json()
    for k in ("name", "seconds", "extra"):
        a.pop(k), b.pop(k)
    assert a == b
    ev_typed, ev_text = store.events("typed"), store.events("text")
    assert ev_typed.equals(ev_text)
    return typed, ev_typed


def test_typed_read_matches_text_read(store: Store, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plain.csv"
    rows = ["user,item,ts,lat,lon,value",
            "a,x,2020-01-01 10:00:00,52.5,13.4,1",
            "b,y,2020-01-02 11:30:59,52.25,+13.5,.5",  # (spaces would mean trimming: text)
            "c,z,2020-01-03 00:00:00,,,1e1",  # no coordinates: fine
            ",z,2020-01-03 00:00:00,52.5,13.4,5.",  # missing user
            "d,z,,52.5,13.4,",  # missing time
            "e,z,2020-01-04 00:00:00,95,13.4,",  # bad coordinates
            "f,z,2020-01-05 00:00:00,52.5,,-0",  # lat without lon
            "a,x,2020-01-01 10:00:00,52.5,13.4,1"]  # a repeat
    path.write_text("\n".join(rows) + "\n")
    r, ev = _typed_vs_text(store, path, monkeypatch)
    assert r.extra["read_natively"] == ["lat", "lon", "ts", "value"]
    assert r.rejected_by_reason == {"missing_user": 1, "missing_time": 1, "duplicate": 1}
    assert r.examples["duplicate"] == [9]
    assert r.flags["location_dropped"] == 2 and r.located_rows == 2  # e and f: no location
    assert ev.set_index(schema.USER).loc[["e", "f"], [LAT, LON]].isna().all().all()
    assert ev[schema.VALUE].tolist()[:3] == [1.0, 0.5, 10.0]


def test_typed_read_falls_back_to_text(store: Store, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # the sniffed head is plain, later lines are not: the typed reader refuses them, so the
    # file is read as text (offsets converted to UTC, fractions and odd numbers kept)
    head = [f"u{k},i{k},2020-01-01 10:00:{k % 60:02d},52.5,13.4,{k}" for k in range(600)]
    tail = ["v1,j1,2020-01-02 10:00:00+02:00,52.5,13.4,1", "v2,j2,2020-01-02 10:00:00.5,,,n/a",
            "v3,j3,2020-01-02 10:00:00,1,5,0x10", "v4,j4,soon,52.5,13.4,1"]
    path = tmp_path / "late.csv"
    path.write_text("\n".join(["user,item,ts,lat,lon,value", *head, *tail]) + "\n")
    from trailscope.analytics.ingest.formats.registry import get
    from trailscope.analytics.ingest.plan import build_plan
    from trailscope.analytics.ingest.stage import native_types

    sn = sniff(path)
    assert native_types(sn, build_plan(sn, get(sn.format), path)) == {
        "ts": "TIMESTAMP", "lat": "DOUBLE", "lon": "DOUBLE", "value": "DOUBLE"}  # tried first
    r, ev = _typed_vs_text(store, path, monkeypatch)
    assert "read_natively" not in r.extra
    assert r.rows_kept == 603 and r.rejected_by_reason == {"bad_time": 1}
    assert r.examples["bad_time"] == [605]
    ev = ev.set_index(schema.USER)
    assert ev.loc["v1", schema.TS] == datetime(2020, 1, 2, 8, 0)
    assert ev.loc["v2", schema.TS] == datetime(2020, 1, 2, 10, 0, 0, 500000)
    assert pd.isna(ev.loc["v2", schema.VALUE]) and pd.isna(ev.loc["v3", schema.VALUE])

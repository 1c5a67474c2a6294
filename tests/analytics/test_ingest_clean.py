"""Import cleaning (reject reasons with line numbers, flags), broken files, and atomicity."""

from __future__ import annotations

import gzip
import os
from datetime import datetime
from pathlib import Path

import pytest
from trailscope.analytics import schema
from trailscope.analytics.ingest.lines import rows_to_lines
from trailscope.analytics.ingest.pipeline import IngestError, default_name, import_file
from trailscope.analytics.store import Store, StoreError

HEADER = "user_id,item_id,ts,lat,lon"
# (line text, reason it must be rejected for, or None when kept). A blank line sits in the
# middle: it is no row, but it still counts for the line numbers after it.
ROWS: list[tuple[str, str | None]] = [
    ("u1,i1,2020-01-01 10:00:00,40.0,-73.0", None),
    (",i2,2020-01-01 11:00:00,40.0,-73.0", "missing_user"),
    ("u2,,2020-01-01 12:00:00,40.0,-73.0", "missing_item"),
    ("u3,i3,,40.0,-73.0", "missing_time"),
    ("u4,i4,not-a-time,40.0,-73.0", "bad_time"),
    ("", None),  # blank line
    # an invalid location is dropped, the event kept (flag location_dropped)
    ("u5,i5,2020-01-01 13:00:00,95.0,-73.0", None),  # lat > 90
    ("u6,i6,2020-01-01 13:00:00,0,0", None),  # exactly (0, 0)
    ("u7,i7,2020-01-01 13:00:00,abc,-73.0", None),  # not a number
    ("u8,i8,2020-01-01 13:00:00,40.0,-190", None),  # lon < -180
    ("u1,i1,2020-01-01 10:00:00,40.0,-73.0", "duplicate"),  # repeats the first row
    ("u9,i9,2020-01-01 14:00:00,,", None),  # no coordinates: fine
    ("u9,i9,2020-01-01 14:00:00,,", "duplicate"),  # NULL coordinates compare equal
    ("u10,i10,1985-06-01 00:00:00,40.0,-73.0", None),  # flagged ts_before_1990
    ("u11,i11,2100-01-01 00:00:00,40.0,-73.0", None),  # flagged ts_in_future
    ("u12,i12,2020-01-01 15:00:00,40.5,", None),  # lat without lon: no location
    ("u13,i13,2020-01-01 15:00:00,40.5,-73.1,extra", "malformed"),  # one field too many
    ("u14,i14,2020-01-01 16:00:00,40.6,-73.2", None),
]


def _write_rows(path: Path) -> dict[str, list[int]]:
    """Write HEADER + ROWS; returns the expected 1-based line numbers per reason."""
    path.write_text("\n".join([HEADER] + [r for r, _ in ROWS]) + "\n")
    expected: dict[str, list[int]] = {}
    for k, (_, reason) in enumerate(ROWS):
        if reason:
            expected.setdefault(reason, []).append(k + 2)  # line 1 is the header
    return expected


def test_every_reason_counted_with_line_numbers(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    expected = _write_rows(path)
    r = import_file(store, path, name="clean")
    assert r.rows_read == len([x for x in ROWS if x[0]])  # the blank line is not a row
    for reason, lines in expected.items():
        assert r.rejected_by_reason[reason] == len(lines), reason
        assert r.examples[reason] == lines[:5], reason
    assert r.rows_rejected == sum(len(v) for v in expected.values())
    kept = [t for t, reason in ROWS if t and reason is None]
    assert r.rows_kept == len(kept) == store.info("clean").rows
    assert r.flags["ts_before_1990"] == 1 and r.flags["ts_in_future"] == 1
    assert r.flags["location_dropped"] == 5
    assert r.time_min == datetime(1985, 6, 1) and r.time_max == datetime(2100, 1, 1)
    js = r.to_json()
    for key in ("name", "rows_read", "rows_kept", "rows_rejected", "rejected_by_reason",
                "users", "items", "time_min", "time_max", "has_coordinates"):
        assert key in js
    assert js["time_min"] == "1985-06-01T00:00:00"
    # the registry keeps the final report, users and items included
    assert store.info("clean").report["users"] == r.users == len({t.split(",")[0] for t in kept})


def test_keep_duplicates(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    expected = _write_rows(path)
    r = import_file(store, path, name="dups", keep_duplicates=True)
    assert r.rejected_by_reason.get("duplicate", 0) == 0
    assert r.rows_kept == r.rows_read - sum(len(v) for k, v in expected.items()
                                            if k != "duplicate")


def test_rows_to_lines_skips_excluded_lines() -> None:
    # data starts at line 2; line 4 is blank and line 6 was malformed
    assert rows_to_lines([0, 1, 2, 3], 2, [4, 6]) == [2, 3, 5, 7]


def test_timestamps_seconds_vs_milliseconds(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "unix.csv"
    path.write_text("user,item,timestamp\na,x,1333476009\nb,y,1333476009123\n")
    import_file(store, path, name="unix")
    ev = store.events("unix").set_index(schema.USER)
    assert ev.loc["a", schema.TS] == datetime(2012, 4, 3, 18, 0, 9)
    assert ev.loc["b", schema.TS] == datetime(2012, 4, 3, 18, 0, 9, 123000)


def test_iso_offsets_to_utc_and_tz_kept(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "iso.csv"
    path.write_text("user,item,time\na,x,2012-04-03T18:00:09Z\nb,y,2012-04-03 18:00:09+02:00\n"
                    "c,z,2012-04-03T18:00:09-05:30\n")
    import_file(store, path, name="iso")
    ev = store.events("iso").set_index(schema.USER)
    assert ev.loc["a", schema.TS] == datetime(2012, 4, 3, 18, 0, 9)
    assert ev.loc["b", schema.TS] == datetime(2012, 4, 3, 16, 0, 9)
    assert ev.loc["c", schema.TS] == datetime(2012, 4, 3, 23, 30, 9)
    assert ev.loc["b", schema.TZ_OFFSET] == 120 and ev.loc["c", schema.TZ_OFFSET] == -330


def test_utc_marker_is_no_local_offset(store: Store, tmp_path: Path) -> None:
    """``+00:00`` on every time (GETNext's CSVs) says the times are UTC, not that the events
    happened at UTC+0: no offset is stored, and without coordinates they stay UTC."""
    path = tmp_path / "utc.csv"
    path.write_text("user,item,time\na,x,2012-04-03 18:00:09+00:00\n"
                    "b,y,2012-04-03 19:00:00+0000\nc,z,2012-04-03T20:00:00Z\n")
    r = import_file(store, path, name="utc")
    ev = store.events("utc").set_index(schema.USER)
    assert ev.loc["b", schema.TS] == datetime(2012, 4, 3, 19, 0)
    assert ev[schema.TZ_OFFSET].isna().all()
    assert r.extra["local_time"]["events"] == {"UTC": 3}


# -- broken files ---------------------------------------------------------------------------
def test_empty_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(IngestError, match="empty"):
        import_file(store, path)


def test_binary_garbage(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 64 + os.urandom(4096))
    with pytest.raises(IngestError, match="binary"):
        import_file(store, path)


def test_single_column(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("hello\nworld\nagain\n")
    with pytest.raises(IngestError, match="single column") as exc:
        import_file(store, path)
    assert "words.txt" in str(exc.value)


def test_wrong_delimiter_for_named_format(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "tabs.tsv"
    path.write_text("1\t2\t3\tpv\t1511544070\n2\t3\t4\tbuy\t1511544071\n")
    with pytest.raises(IngestError, match="does not look like the taobao format") as exc:
        import_file(store, path, fmt="taobao")
    assert "tab-separated" in str(exc.value)


def test_no_usable_columns_lists_columns(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("foo,bar,baz\nx,y,z\nq,r,s\n")
    with pytest.raises(IngestError, match="user_id, item_id, ts") as exc:
        import_file(store, path)
    msg = str(exc.value)
    assert "(columns found: foo, bar, baz)" in msg and "--map" in msg
    assert exc.value.columns == ["foo", "bar", "baz"]


def test_unreadable_gzip(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "broken.csv.gz"
    good = gzip.compress(b"user,item,ts\n" + b"a,b,2020-01-01\n" * 2000)
    path.write_bytes(good[: len(good) // 2] + os.urandom(64))
    with pytest.raises(IngestError, match="decompress"):
        import_file(store, path)


def test_bad_mapping_names_the_columns(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text("uid,item,time\na,b,2020-01-01\n")
    with pytest.raises(IngestError, match="no column 'userid'|does not have") as exc:
        import_file(store, path, mapping={schema.USER: "userid"})
    assert "columns found: uid, item, time" in str(exc.value)
    with pytest.raises(IngestError, match="unknown field"):
        import_file(store, path, mapping={"person": "uid"})


def test_all_rows_rejected(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,time\na,b,nope\nc,d,never\n")
    with pytest.raises(IngestError, match="2 bad_time") as exc:
        import_file(store, path)
    assert "line 2" in str(exc.value)
    assert not store.exists("bad")


# -- atomicity and names ---------------------------------------------------------------------
def test_failed_import_leaves_existing_dataset(store: Store, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("user,item,time\na,x,2020-01-01\nb,y,2020-01-02\n")
    import_file(store, good, name="ds")
    before = store.info("ds")
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,time\na,x,nope\n")
    with pytest.raises(IngestError):
        import_file(store, bad, name="ds", replace=True)
    after = store.info("ds")
    assert (after.rows, after.imported_at) == (before.rows, before.imported_at)
    assert after.rows == 2
    assert len(store.events("ds")) == 2


def test_reimport_needs_replace(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text("user,item,time\na,x,2020-01-01\n")
    import_file(store, path, name="ev")
    with pytest.raises(StoreError, match="already exists"):
        import_file(store, path, name="ev")
    path.write_text("user,item,time\na,x,2020-01-01\nb,y,2020-01-02\nc,z,2020-01-03\n")
    r = import_file(store, path, name="ev", replace=True)
    assert r.rows_kept == 3 == store.info("ev").rows


def test_default_name_and_bad_name(store: Store, tmp_path: Path) -> None:
    assert default_name("/x/NYC checkins (v2).csv.gz") == "NYC_checkins_v2"
    assert default_name("u.data") == "u"
    path = tmp_path / "ev.csv"
    path.write_text("user,item,time\na,x,2020-01-01\n")
    with pytest.raises(IngestError, match="invalid dataset name"):
        import_file(store, path, name="bad name!")


def test_mixed_line_endings_are_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"user,item,ts\r\na,x,2020-01-01\nb,y,2020-01-02\r\n\r\nc,z,2020-01-03\n")
    r = import_file(store, path)
    assert r.rows_kept == 3 and not r.rejected_by_reason
    assert any("CSV rules" in n for n in r.notes)


def test_memory_limit_restored(store: Store, tmp_path: Path) -> None:
    cur = store.cursor()
    cur.execute("SET memory_limit = '3GiB'")
    path = tmp_path / "ev.csv"
    path.write_text(GOOD_CSV)
    import_file(store, path)
    assert cur.execute("SELECT current_setting('memory_limit')").fetchone()[0] in (
        "3.0 GiB", "3 GiB")
    cur.close()


def test_memory_cap_is_bounded_for_any_file_size(store: Store) -> None:
    """An import's DuckDB memory is a share of the file's size, never more than
    MAX_MEMORY_MB (a 100M-event file, ~7 GB, imports under 2 GB: issue #15)."""
    from trailscope.analytics.ingest import pipeline

    cur = store.cursor()
    cur.execute("SET memory_limit = '16GiB'")
    for size, want in ((10 * 2**30, pipeline.MAX_MEMORY_MB),
                       (2**30, int(pipeline.MEMORY_FRACTION * 1024)),
                       (1000, pipeline.MIN_MEMORY_MB)):
        with pipeline._memory_cap(cur, size):
            got = cur.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert abs(pipeline._bytes(got) / 2**20 - want) <= 0.05 * want, (size, got)  # 1 dp
    assert cur.execute("SELECT current_setting('memory_limit')").fetchone()[0] in (
        "16.0 GiB", "16 GiB")
    cur.close()


GOOD_CSV = "user,item,time\na,x,2020-01-01\nb,y,2020-01-02\n"
KEPT = [t for t, reason in ROWS if t and reason is None]


# -- the staging table ------------------------------------------------------------------------
def _stage_tables(store: Store) -> list[str]:
    return store.query_df("SELECT table_name FROM duckdb_tables() WHERE "
                          "starts_with(table_name, '_ts_')")["table_name"].tolist()


def test_no_staging_table_left_behind(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    _write_rows(path)
    import_file(store, path, name="ok")
    with pytest.raises(StoreError):
        import_file(store, path, name="ok")  # refused before staging
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,time\na,b,nope\n")
    with pytest.raises(IngestError):
        import_file(store, bad, name="ok", replace=True)  # every row rejected
    assert _stage_tables(store) == []
    assert store.info("ok").rows == len(KEPT)


def test_orphan_staging_table_dropped_by_next_import(store: Store, tmp_path: Path) -> None:
    cur = store.cursor()
    cur.execute("CREATE TABLE _ts_stage_0123456789 (x INTEGER)")  # as left by a crash
    cur.close()
    path = tmp_path / "ev.csv"
    path.write_text(GOOD_CSV)
    import_file(store, path)
    assert _stage_tables(store) == []


def test_failure_while_publishing_keeps_the_old_dataset(store: Store, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from trailscope.analytics.ingest import publish

    path = tmp_path / "events.csv"
    _write_rows(path)
    import_file(store, path, name="ds")
    before = store.info("ds")
    real_prune = publish.prune

    def failing_prune(cur, st) -> None:  # noqa: ANN001
        real_prune(cur, st)  # rows deleted, column dropped: all of it must roll back
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish, "prune", failing_prune)
    path.write_text(GOOD_CSV)
    with pytest.raises(RuntimeError, match="disk full"):
        import_file(store, path, name="ds", replace=True)
    after = store.info("ds")
    assert (after.rows, after.imported_at, after.report) == (
        before.rows, before.imported_at, before.report)
    assert len(store.events("ds")) == len(KEPT) and _stage_tables(store) == []


def test_replace_with_rejects_and_repeats(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text(GOOD_CSV)
    import_file(store, path, name="ds")
    path = tmp_path / "events.csv"
    _write_rows(path)
    r = import_file(store, path, name="ds", replace=True)
    ev = store.events("ds")
    assert list(ev.columns) == list(schema.COLUMNS)
    assert len(ev) == r.rows_kept == len(KEPT) == store.info("ds").rows
    assert sorted(ev[schema.USER]) == sorted(t.split(",")[0] for t in KEPT)
    assert store.info("ds").report["rejected_by_reason"] == r.rejected_by_reason


def test_insertion_order_needed(store: Store, tmp_path: Path) -> None:
    cur = store.cursor()
    cur.execute("SET preserve_insertion_order = false")
    path = tmp_path / "ev.csv"
    path.write_text(GOOD_CSV)
    with pytest.raises(IngestError, match="preserve_insertion_order"):
        import_file(store, path)
    cur.execute("SET preserve_insertion_order = true")
    cur.close()
    assert import_file(store, path).rows_kept == 2 and _stage_tables(store) == []


@pytest.mark.parametrize("times", ["spread", "ties", "one", "two", "clustered"])
def test_time_quantiles_equal_duckdbs_quantile_disc(store: Store, times: str) -> None:
    """The import's outlier quantiles (stage.time_quantiles: a histogram, then one slice
    sorted, so memory stays bounded at 100M rows) equal DuckDB's quantile_disc."""
    from trailscope.analytics.ingest import stage

    n = {"one": 1, "two": 2}.get(times, 5000)
    us = {"spread": "(random() * 3e14)::BIGINT", "ties": "(i % 7) * 1000000",
          "one": "0", "two": "i * 86400000000",
          "clustered": "CASE WHEN i % 100 = 0 THEN (random() * 3e14)::BIGINT "
                       "ELSE 1700000000000000 + i END"}[times]
    cur = store.cursor()
    cur.execute(f"CREATE OR REPLACE TEMP TABLE qt AS SELECT make_timestamp(1000000000000000 + "
                f"{us}) AS ts, i FROM range({n}) r(i)")
    qs = (0.001, 0.01, 0.5, 0.99, 0.999)
    want = cur.execute(f"SELECT quantile_disc(ts, {list(qs)}) FROM qt WHERE i % 3 < 2 "
                       "OR i < 3").fetchone()[0]
    tmin, tmax = cur.execute("SELECT min(ts), max(ts) FROM qt WHERE i % 3 < 2 OR i < 3"
                             ).fetchone()
    assert stage.time_quantiles(cur, "qt", "i % 3 < 2 OR i < 3", qs, tmin, tmax) == want
    cur.close()

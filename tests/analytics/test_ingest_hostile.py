"""Hostile files through the importer (issue 11): placeholder times, quoted newlines, names
that differ only in case or blanks, concurrent imports to one name, decompression bombs,
UTF-16 text, failed imports leaving no space or temp files behind, and a property-based test
(hypothesis) that random bytes and CSV mutations end in a message or a dataset whose counts
add up, never a traceback. Every file is cut from the committed real-data slices."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest
from trailscope.analytics import schema
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.store import Store

from tests.conftest import NYC, TAOBAO


def _nyc_rows(n: int) -> tuple[list[str], list[list[str]]]:
    """Header and the first ``n`` rows of the NYC check-in slice."""
    with gzip.open(NYC, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [row for _, row in zip(range(n), reader, strict=False)]


def _write_csv(path: Path, header: list[str], rows: list[list[str]],
               quoting: int = csv.QUOTE_MINIMAL) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=quoting, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _adds_up(r) -> None:
    assert r.rows_read == r.rows_kept + r.rows_rejected
    assert r.rows_rejected == sum(r.rejected_by_reason.values())


# -- placeholder (sentinel) times -------------------------------------------------------------
@pytest.mark.parametrize("sentinel", ["0001-01-01", "9999-12-31 23:59:59", "0001-01-01 00:00",
                                      "1899-12-31 23:59"])
def test_sentinel_iso_times_rejected_per_row(store: Store, tmp_path: Path,
                                             sentinel: str) -> None:
    header, rows = _nyc_rows(300)
    t = header.index("utc_time_minute")
    for k in (3, 150, 299):
        rows[k][t] = sentinel
    r = import_file(store, _write_csv(tmp_path / "nyc.csv", header, rows), name="nyc")
    assert r.rejected_by_reason["time_out_of_range"] == 3
    assert r.examples["time_out_of_range"] == [5, 152, 301]  # header is line 1
    _adds_up(r)
    ev = store.events("nyc")
    assert ev[schema.TS].min().year >= 1900 and ev[schema.TS].max().year < 2200


def test_sentinel_unix_time_rejected_per_row(store: Store, tmp_path: Path) -> None:
    lines = TAOBAO.read_text().splitlines()[:400]
    lines[10] = ",".join(lines[10].split(",")[:4] + ["-62135596800"])
    lines[20] = ",".join(lines[20].split(",")[:4] + ["-2208988801"])  # 1899-12-31
    path = tmp_path / "UserBehavior.csv"
    path.write_text("\n".join(lines) + "\n")
    r = import_file(store, path, name="tb")
    assert r.format == "taobao"
    assert r.rejected_by_reason == {"time_out_of_range": 2}
    assert r.examples["time_out_of_range"] == [11, 21]
    _adds_up(r)


# -- quoted newlines --------------------------------------------------------------------------
@pytest.mark.parametrize("at", [8, 6000])  # inside the sniffed head, and far past it
def test_quoted_newline_imported(store: Store, tmp_path: Path, at: int) -> None:
    header, rows = _nyc_rows(8000)
    c = header.index("venue_category")
    rows[at][c] = "Coffee\nShop, the \"good\" one"
    path = _write_csv(tmp_path / "nyc.csv", header, rows, quoting=csv.QUOTE_NONNUMERIC)
    if at > 1000:
        assert path.stat().st_size > 256 * 1024 and at * 100 > 256 * 1024
    r = import_file(store, path, name="nyc", keep_duplicates=True)
    assert r.rows_read == len(rows) and r.rows_rejected == 0
    cats = store.query_df(f"SELECT {schema.CATEGORY} AS c FROM {store.table('nyc')}")["c"]
    assert (cats == "Coffee\nShop, the \"good\" one").sum() == 1

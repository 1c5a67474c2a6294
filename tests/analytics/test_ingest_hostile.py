"""Hostile files through the importer (issue 11): placeholder times, quoted newlines, names
that differ only in case or blanks, concurrent imports to one name, decompression bombs,
UTF-16 text, failed imports leaving no space or temp files behind, and a property-based test
(hypothesis) that random bytes and CSV mutations end in a message or a dataset whose counts
add up, never a traceback. Every file is cut from the committed real-data slices."""

from __future__ import annotations

import csv
import gzip
import io
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trailscope.analytics import schema
from trailscope.analytics.ingest import layout
from trailscope.analytics.ingest.pipeline import IngestError, import_file
from trailscope.analytics.store import Store, StoreError

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
    assert any("span several lines" in n for n in r.notes)


# -- names --------------------------------------------------------------------------------
def _small_csv(tmp_path: Path, n: int = 200, fname: str = "nyc.csv") -> Path:
    header, rows = _nyc_rows(n)
    return _write_csv(tmp_path / fname, header, rows)


def test_names_compared_ignoring_case_and_blanks(store: Store, tmp_path: Path) -> None:
    path = _small_csv(tmp_path)
    import_file(store, path, name="datasets")
    with pytest.raises(StoreError, match="already exists"):
        import_file(store, path, name="DATASETS")
    with pytest.raises(StoreError, match="already exists"):
        import_file(store, path, name=" Datasets\n")
    assert store.list_datasets()["name"].tolist() == ["datasets"]
    r = import_file(store, _small_csv(tmp_path, 50, "b.csv"), name="DATASETS", replace=True)
    assert r.rows_read == 50
    assert store.list_datasets()["name"].tolist() == ["DATASETS"]
    assert store.exists("datasets") and len(store.events("datasets")) == r.rows_kept
    r = import_file(store, path, name="nyc\n")  # a CLI name ending in a newline
    assert r.name == "nyc" and store.exists("nyc")
    assert store.drop("NYC\n") == "nyc" and not store.exists("nyc")


@pytest.mark.parametrize("bad", ["   ", "a b", "x" * 65, "-lead", "name;drop", "ü",
                                 "a\nb", "../etc"])
def test_invalid_names_refused_with_the_rule(store: Store, tmp_path: Path, bad: str) -> None:
    with pytest.raises(IngestError, match="1-64 letters, digits"):
        import_file(store, _small_csv(tmp_path), name=bad)
    assert store.list_datasets().empty


def test_import_to_a_claimed_name_is_told_it_is_being_imported(store: Store,
                                                               tmp_path: Path) -> None:
    path = _small_csv(tmp_path)
    with store.claim("nyc"):
        with pytest.raises(StoreError, match="is being imported"):
            import_file(store, path, name="NYC")
    import_file(store, path, name="nyc")  # the claim is released
    with store.claim("nyc"), pytest.raises(StoreError, match="is being imported"):
        store.drop("nyc")


def test_concurrent_imports_to_one_name(store: Store, tmp_path: Path) -> None:
    paths = [_small_csv(tmp_path, 2000, f"f{k}.csv") for k in range(4)]
    barrier = threading.Barrier(len(paths))
    outcomes: list[str] = []

    def run(p: Path) -> None:
        barrier.wait()
        try:
            import_file(store, p, name="same")
            outcomes.append("ok")
        except StoreError as exc:
            outcomes.append("busy" if "being imported" in str(exc) else
                            "exists" if "already exists" in str(exc) else str(exc))

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1 and set(outcomes) <= {"ok", "busy", "exists"}, outcomes
    assert len(store.events("same")) > 0


# -- decompression bombs and the workspace temp folder ---------------------------------------
def _bomb_block() -> bytes:
    row = TAOBAO.read_bytes().split(b"\n", 1)[0] + b"\n"
    return row * ((1 << 20) // len(row))


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """The issue's bomb: one Taobao row repeated to 1 GiB, zipped to about 2.6 MB."""
    path = tmp_path_factory.mktemp("bomb") / "UserBehavior.zip"
    block = _bomb_block()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open("UserBehavior.csv", "w", force_zip64=True) as fh:
        for _ in range(1024):
            fh.write(block)
    return path


def _temp_leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("trailscope-import-*")}


def _assert_no_temp(store: Store, before: set[str]) -> None:
    assert not any(store.temp_dir.iterdir()) if store.temp_dir.exists() else True
    assert _temp_leftovers() <= before


def test_zip_bomb_refused_within_seconds(store: Store, zip_bomb: Path) -> None:
    assert zip_bomb.stat().st_size < 4 * 2**20
    before = _temp_leftovers()
    t0 = time.perf_counter()
    with pytest.raises(IngestError, match="decompression bomb") as err:
        import_file(store, zip_bomb, name="bomb")
    assert time.perf_counter() - t0 < 5
    assert "Traceback" not in str(err.value) and "/" not in str(err.value)
    assert store.list_datasets().empty
    _assert_no_temp(store, before)


def test_gzip_bomb_stopped_while_unpacking(store: Store, tmp_path: Path) -> None:
    """gzip declares no trustworthy size: the counting pass stops it at the ratio."""
    path = tmp_path / "UserBehavior.csv.gz"
    block = _bomb_block()
    with gzip.open(path, "wb", compresslevel=9) as fh:
        for _ in range(400):
            fh.write(block)
    t0 = time.perf_counter()
    with pytest.raises(IngestError, match=r"stopped after 129.00 MiB\): refused as a "
                                          "decompression bomb"):
        import_file(store, path, name="bomb")
    assert time.perf_counter() - t0 < 5
    assert store.list_datasets().empty


def test_zip_member_unpacked_in_workspace_temp_and_removed(store: Store,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "tb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(TAOBAO, "UserBehavior.csv")
    before = _temp_leftovers()
    r = import_file(store, path, name="tb")
    assert r.rows_read == 26222 and r.format == "taobao"
    assert store.temp_dir == store.path.parent / "tmp"
    _assert_no_temp(store, before)


def test_store_open_cleans_what_a_killed_import_left(tmp_path: Path) -> None:
    db = tmp_path / "ws" / "trailscope.duckdb"
    db.parent.mkdir()
    Store(db).close()
    left = db.parent / "tmp" / "import-deadbeef"
    left.mkdir(parents=True)
    (left / "unpacked.txt").write_bytes(b"x" * 1000)
    other = db.parent / "tmp" / "notes.txt"  # not an import's: kept
    other.write_text("mine")
    with Store(db, read_only=True):
        assert left.exists()  # a reader never cleans
    with Store(db):
        assert not left.exists() and other.exists()


# -- UTF-16 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("packed", ["none", "gzip"])
def test_utf16_text_decoded(store: Store, tmp_path: Path, encoding: str, packed: str) -> None:
    plain = _small_csv(tmp_path, 500)
    text = plain.read_text(encoding="utf-8")
    data = text.encode(encoding)  # "utf-16"/"utf-32" write a byte-order mark, -le/-be none
    path = tmp_path / ("nyc16.csv.gz" if packed == "gzip" else "nyc16.csv")
    path.write_bytes(gzip.compress(data) if packed == "gzip" else data)
    want = import_file(store, plain, name="utf8")
    r = import_file(store, path, name="utf16")
    assert (r.rows_read, r.rows_kept, r.users, r.items) == (
        want.rows_read, want.rows_kept, want.users, want.items)
    assert store.fingerprint("utf16") == store.fingerprint("utf8")
    assert not any(store.temp_dir.iterdir())


def test_binary_file_still_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(IngestError, match="binary"):
        import_file(store, path, name="x")


# -- a failed import gives its space back ---------------------------------------------------
def test_failed_imports_do_not_grow_the_workspace_file(store: Store) -> None:
    import_file(store, TAOBAO, name="tb")
    cur = store.cursor()
    cur.execute("CHECKPOINT")
    cur.close()
    wal = Path(str(store.path) + ".wal")

    def size() -> int:
        return store.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    before = size()
    for _ in range(3):  # every row staged, then all rejected: the staging table is dropped
        with pytest.raises(IngestError, match="every one of the"):
            import_file(store, NYC, name="nyc", mapping={"ts": "venue_category"})
    assert size() <= before + 256 * 1024  # without the CHECKPOINT: +~600 KB per failure
    assert store.list_datasets()["name"].tolist() == ["tb"]


# -- property: random bytes and CSV mutations ---------------------------------------------------
_NYC_HEAD = b"".join(gzip.open(NYC, "rb").readlines()[:40])
_TAOBAO_HEAD = b"".join(TAOBAO.open("rb").readlines()[:40])
_SPECIAL = [b'"', b",", b"\n", b"\r", b"\r\n", b"\x00", b"\t", b";", b"\xff\xfe", b"\xc3\xa9",
            b"0001-01-01", b"9999-12-31 23:59:59", b"-62135596800", b"NaN", b"1e400",
            b"\"\"", b"PK\x03\x04", b"\x1f\x8b", b"PAR1", b"{", b"::"]


@st.composite
def _hostile_file(draw) -> tuple[bytes, str]:
    if draw(st.booleans()) and draw(st.booleans()):
        data = draw(st.binary(min_size=1, max_size=3000))  # anything at all
    else:
        data = draw(st.sampled_from([_NYC_HEAD, _TAOBAO_HEAD]))
        for _ in range(draw(st.integers(0, 6))):
            at = draw(st.integers(0, len(data)))
            op = draw(st.sampled_from(["insert", "delete", "truncate", "repeat_line"]))
            if op == "insert":
                data = data[:at] + draw(st.sampled_from(_SPECIAL)) + data[at:]
            elif op == "delete":
                data = data[:at] + data[at + draw(st.integers(1, 40)):]
            elif op == "truncate":
                data = data[:at]
            else:
                start = data.rfind(b"\n", 0, at) + 1
                end = data.find(b"\n", at)
                line = data[start:end + 1 if end >= 0 else len(data)]
                data = data[:start] + line * draw(st.integers(2, 5)) + data[start:]
    packing = draw(st.sampled_from(["none", "gzip", "zip", "utf-16", "gzip-cut", "zip-cut"]))
    return data, packing


def _pack(data: bytes, packing: str, folder: Path) -> Path:
    if packing.endswith("-cut"):  # the packed file cut in the middle (an aborted download)
        path = _pack(data, packing[:-4], folder)
        packed = path.read_bytes()
        path.write_bytes(packed[:max(4, len(packed) // 2)])
    elif packing == "gzip":
        path = folder / "fuzz.csv.gz"
        path.write_bytes(gzip.compress(data))
    elif packing == "zip":
        path = folder / "fuzz.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("fuzz.csv", data)
    elif packing == "utf-16":
        path = folder / "fuzz.csv"
        path.write_bytes(data.decode("utf-8", errors="replace").encode("utf-16"))
    else:
        path = folder / "fuzz.csv"
        path.write_bytes(data)
    return path


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=_hostile_file())
def test_random_files_end_in_a_message_or_a_dataset_that_adds_up(store: Store, tmp_path: Path,
                                                                 case) -> None:
    if not store.exists("keep"):
        import_file(store, TAOBAO, name="keep")
    keep = (store.fingerprint("keep"), store.info("keep").rows)
    data, packing = case
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = _pack(data, packing, folder)
    try:
        r = import_file(store, path, name="fuzz")
    except IngestError as exc:
        text = str(exc)
        assert text and "Traceback" not in text and str(store.temp_dir) not in text
        assert not store.exists("fuzz")
    else:
        _adds_up(r)
        assert r.rows_kept > 0 and len(store.events("fuzz")) == r.rows_kept
        assert store.info("fuzz").rows == r.rows_kept
        store.drop("fuzz")
    assert (store.fingerprint("keep"), store.info("keep").rows) == keep
    assert not store.temp_dir.exists() or not any(store.temp_dir.iterdir())


@pytest.mark.parametrize("flag", ["encrypted", "method99"])
def test_unreadable_zip_members_get_a_message(store: Store, tmp_path: Path, flag: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("UserBehavior.csv", TAOBAO.read_bytes()[:5000])
    data = bytearray(buf.getvalue())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    if flag == "encrypted":  # general purpose bit 0: the member needs a password
        data[local + 6] |= 1
        data[central + 8] |= 1
    else:  # compression method 99 (AES), which zipfile does not implement
        data[local + 8] = data[central + 10] = 99
    path = tmp_path / "tb.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(IngestError, match="unpack it yourself"):
        import_file(store, path, name="tb")


# -- the command line ---------------------------------------------------------------------------
def test_cli_names_and_hostile_files(store: Store, tmp_path: Path, capsys,
                                     zip_bomb: Path) -> None:
    from trailscope.app.cli.main import main

    store.close()  # the CLI opens the workspace itself ($TRAILSCOPE_HOME of the fixture)
    path = _small_csv(tmp_path)
    assert main(["import", str(path), "--name", "datasets", "--no-summaries"]) == 0
    assert main(["import", str(path), "--name", "DATASETS", "--no-summaries"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["import", str(path), "--name", "nyc\n", "--no-summaries"]) == 0
    capsys.readouterr()
    assert main(["drop", "NYC\n"]) == 0
    assert capsys.readouterr().out.strip() == "dropped 'nyc'"
    assert main(["import", str(zip_bomb), "--name", "bomb"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "decompression bomb" in err and "Traceback" not in err


@pytest.mark.parametrize("zip64", [False, True])
def test_zip_listing_too_many_members_refused_before_parsing(store: Store, tmp_path: Path,
                                                             monkeypatch, zip64: bool) -> None:
    monkeypatch.setattr(layout, "MAX_ZIP_MEMBERS", 2000)  # the default, 100,000, is slow to build
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("UserBehavior.csv", TAOBAO.read_bytes()[:5000])
        for k in range(2000):
            zf.writestr(f"{k}", b"")
    if zip64:  # the count lives in the zip64 end record when the classic one says 0xFFFF
        data = bytearray(path.read_bytes())
        end = data.rfind(b"PK\x05\x06")
        data[end + 8:end + 12] = b"\xff\xff\xff\xff"
        z64 = (b"PK\x06\x06" + (44).to_bytes(8, "little") + b"\x2d\x00\x2d\x00" + bytes(8)
               + (2001).to_bytes(8, "little") * 2 + bytes(16))
        data[end:end] = z64 + b"PK\x06\x07" + bytes(16)
        path.write_bytes(bytes(data))
    with pytest.raises(IngestError, match="lists 2,001 files, more than the 2,000"):
        import_file(store, path, name="many")
    monkeypatch.setattr(layout, "MAX_ZIP_MEMBERS", 2001)
    if not zip64:
        assert import_file(store, path, name="many").format == "taobao"


@pytest.mark.parametrize("damage", ["truncated", "trailing garbage"])
def test_damaged_gzip_past_the_head_gets_a_message(store: Store, tmp_path: Path,
                                                   damage: str) -> None:
    packed = gzip.compress(TAOBAO.read_bytes())
    data = packed[:len(packed) // 2] if damage == "truncated" else packed + b"garbage!"
    path = tmp_path / "UserBehavior.csv.gz"
    path.write_bytes(data)
    with pytest.raises(IngestError, match="gzip file is damaged or incomplete"):
        import_file(store, path, name="tb")
    assert store.list_datasets().empty


def test_wide_and_repetitive_headers_answer_fast(store: Store, tmp_path: Path) -> None:
    """3,000 columns all named 'a' took minutes (a cubic renaming loop); 131,073 columns
    would plan a query as wide: both answer at once now."""
    path = tmp_path / "wide.csv"
    path.write_bytes(b"a," * 3000)
    t0 = time.perf_counter()
    with pytest.raises(IngestError, match="3,001 columns, more than the 2,000"):
        import_file(store, path, name="wide")
    header = ",".join(["a"] * 1500 + ["user_id", "item_id", "behavior_type", "ts"])
    lines = [",".join(["x"] * 1500 + line.split(",")[:1] + line.split(",")[1:2]
                      + line.split(",")[3:5]) for line in TAOBAO.read_text().splitlines()[:50]]
    path.write_text(header + "\n" + "\n".join(lines) + "\n")
    r = import_file(store, path, name="wide")
    assert r.rows_read == 50 and r.mapping["user_id"] == "user_id"
    assert time.perf_counter() - t0 < 10


_KILLED_IMPORT = """
import sys, time
from pathlib import Path
from trailscope.analytics.ingest import pipeline, stage
from trailscope.analytics.store import Store

def run(*args, **kwargs):  # the member is unpacked by now: say so, then wait to be killed
    Path(sys.argv[2]).write_text("unpacked")
    time.sleep(60)

stage.run = run
pipeline.import_file(Store(), sys.argv[1], name="tb")
"""


def test_kill_9_during_a_zip_import_leaves_nothing_after_the_next_open(
        tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TRAILSCOPE_HOME", str(home))
    path = tmp_path / "tb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(TAOBAO, "UserBehavior.csv")
    signal = tmp_path / "unpacked"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IMPORT, str(path), str(signal)])
    try:
        for _ in range(300):
            if signal.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert signal.exists(), "the import never reached the stage step"
        left = list((home / "tmp").iterdir())
        assert [p.name for p in left[0].iterdir()] == ["UserBehavior.csv"]
    finally:
        proc.kill()  # kill -9: no finally block of the import runs
        proc.wait()
    assert (home / "tmp").exists() and any((home / "tmp").iterdir())
    with Store() as store:
        assert not any(store.temp_dir.iterdir()) and store.list_datasets().empty


def test_zip_lying_about_its_size_is_refused(store: Store, tmp_path: Path) -> None:
    """A bomb whose directory declares a tiny member: zipfile stops at the declared size and
    the checksum fails, so the lie ends as 'damaged', never as a long unpack."""
    path = tmp_path / "UserBehavior.zip"
    block = _bomb_block()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("UserBehavior.csv", "w") as fh:
        for _ in range(32):
            fh.write(block)
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = (1000).to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(IngestError, match="damaged or incomplete"):
        import_file(store, path, name="tb")
    assert not any(store.temp_dir.iterdir()) if store.temp_dir.exists() else True

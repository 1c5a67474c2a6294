"""Chunked upload routes (app/upload.py) through the Flask test client of the real app."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from trailscope.app.services import upload

from tests.conftest import NYC, TAOBAO

HDR = {upload.UPLOAD_HEADER: "1"}


@pytest.fixture()
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path / "home"))
    from trailscope.app.main import server

    return server.test_client()


def _new(client, filename: str, size: int, chunk_size: int):
    return client.post("/api/upload/new", headers=HDR,
                       json={"filename": filename, "size": size, "chunk_size": chunk_size})


def test_chunks_reassemble_byte_identically_in_any_order(client):
    data = TAOBAO.read_bytes()[:300_001]  # a real file (Taobao slice), cut mid-line, odd length
    chunk = 64 * 1024
    r = _new(client, "../../u.data", len(data), chunk)
    assert r.status_code == 201, r.json
    start = r.json
    assert start["chunks"] == -(-len(data) // chunk) == 5
    assert start["filename"] == "u.data"  # directory part stripped
    order = list(range(start["chunks"]))
    random.Random(7).shuffle(order)
    order.append(order[0])  # a retried chunk is harmless
    for i in order:
        body = data[i * chunk:(i + 1) * chunk]
        r = client.post(f"/api/upload/{start['upload_id']}/chunk?index={i}", headers=HDR,
                        data=body, content_type="application/octet-stream")
        assert r.status_code == 200, r.json
        assert r.json["bytes"] == len(body)
    r = client.post(f"/api/upload/{start['upload_id']}/finish", headers=HDR)
    assert r.status_code == 200, r.json
    assert r.json == {"upload_id": start["upload_id"], "filename": "u.data", "size": len(data)}
    path = upload.resolve_upload(start["upload_id"])
    assert path.parent.parent == upload.uploads_dir()
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_finish_reports_missing_chunks_and_wrong_sizes(client):
    chunk = upload.MIN_CHUNK_SIZE
    start = _new(client, "events.csv", 2 * chunk + 10, chunk).json
    uid = start["upload_id"]
    ok = client.post(f"/api/upload/{uid}/chunk?index=0", headers=HDR, data=b"a" * chunk)
    assert ok.status_code == 200
    short = client.post(f"/api/upload/{uid}/chunk?index=1", headers=HDR, data=b"ab")
    assert short.status_code == 400 and f"must be {chunk} bytes" in short.json["error"]
    last_long = client.post(f"/api/upload/{uid}/chunk?index=2", headers=HDR, data=b"a" * 11)
    assert last_long.status_code == 400 and "must be 10 bytes" in last_long.json["error"]
    too_far = client.post(f"/api/upload/{uid}/chunk?index=3", headers=HDR, data=b"ab")
    assert too_far.status_code == 400 and "0..2" in too_far.json["error"]
    r = client.post(f"/api/upload/{uid}/finish", headers=HDR)
    assert r.status_code == 409 and "2 of 3 chunks are missing (first: 1)" in r.json["error"]
    assert client.post(f"/api/upload/{uid}/chunk?index=2", headers=HDR,
                       data=b"z" * 10).status_code == 200
    r = client.post(f"/api/upload/{uid}/finish", headers=HDR)
    assert r.status_code == 409 and "1 of 3 chunks are missing (first: 1)" in r.json["error"]
    with pytest.raises(upload.UploadError, match="not finished"):
        upload.resolve_upload(uid)


@pytest.mark.parametrize("bad", ["0" * 31, "g" * 32, "A" * 32, "..", "..%2F..%2Fetc",
                                 "0" * 32 + "x"])
def test_bad_upload_ids_are_rejected(client, bad):
    # 405: a path that is no upload route at all falls through to Dash's GET-only pages
    r = client.post(f"/api/upload/{bad}/chunk?index=0", headers=HDR, data=b"x")
    assert r.status_code in (400, 404, 405)
    r = client.post(f"/api/upload/{bad}/finish", headers=HDR)
    assert r.status_code in (400, 404, 405)
    assert list(upload.uploads_dir().iterdir()) == []
    with pytest.raises(upload.UploadError):
        upload.resolve_upload(bad)


def test_unknown_but_well_formed_id_is_404(client):
    r = client.post(f"/api/upload/{'0' * 32}/finish", headers=HDR)
    assert r.status_code == 404 and "upload the file again" in r.json["error"]


def test_header_is_required(client):
    r = client.post("/api/upload/new", json={"filename": "a.csv", "size": 3})
    assert r.status_code == 403 and upload.UPLOAD_HEADER in r.json["error"]


def test_size_cap_and_empty_files(client, monkeypatch):
    monkeypatch.setenv("TRAILSCOPE_MAX_UPLOAD_MB", "1")
    r = _new(client, "big.csv", 3 * 1024 * 1024, 1024 * 1024)
    assert r.status_code == 413
    assert "limited to 1.0 MB" in r.json["error"] and "trailscope import" in r.json["error"]
    r = _new(client, "empty.csv", 0, 1024)
    assert r.status_code == 400 and "empty" in r.json["error"]
    r = client.post("/api/upload/new", headers=HDR, data="not json")
    assert r.status_code == 400


def test_cancel_removes_the_upload(client):
    uid = _new(client, "a.csv", 3, 3).json["upload_id"]
    assert (upload.uploads_dir() / uid).is_dir()
    assert client.delete(f"/api/upload/{uid}", headers=HDR).status_code == 200
    assert not (upload.uploads_dir() / uid).exists()
    assert client.delete(f"/api/upload/{uid}", headers=HDR).status_code == 404


@pytest.mark.parametrize("raw,expected", [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\evil.csv", "evil.csv"),
    ("my data (1).csv.gz", "my_data_1_.csv.gz"),
    (".bashrc", "bashrc"),
    ("../", "upload"),
    ("événements.tsv", "evenements.tsv"),
])
def test_sanitize_filename(raw, expected):
    assert upload.sanitize_filename(raw) == expected


def test_meta_keeps_no_client_path(client):
    uid = _new(client, "../../x/y.csv", 3, 3).json["upload_id"]
    meta = json.loads((upload.uploads_dir() / uid / "meta.json").read_text())
    assert meta["filename"] == "y.csv"
    files = [p.name for p in (upload.uploads_dir() / uid).iterdir()]
    assert "y.csv.part" in files and all("/" not in f and ".." not in f for f in files)


def _upload_file(client, data: bytes, name: str) -> str:
    chunk = upload.MIN_CHUNK_SIZE
    start = _new(client, name, len(data), chunk).json
    for i in range(start["chunks"]):
        r = client.post(f"/api/upload/{start['upload_id']}/chunk?index={i}", headers=HDR,
                        data=data[i * chunk:(i + 1) * chunk])
        assert r.status_code == 200, r.json
    assert client.post(f"/api/upload/{start['upload_id']}/finish", headers=HDR).status_code == 200
    return start["upload_id"]


def test_uploads_are_removed_after_their_import(client, workspace, tmp_path):
    from trailscope.app.services import imports, jobs

    uid = _upload_file(client, NYC.read_bytes(), "nyc.csv.gz")
    job = imports.start_import(upload.resolve_upload(uid), "nyc", "auto", None)
    jobs.wait(job, 120)
    assert imports.import_state(job)["status"] == "done"
    assert not (upload.uploads_dir() / uid).exists()
    with pytest.raises(upload.UploadError, match="imported, cancelled or expired"):
        upload.resolve_upload(uid)

    bad = _upload_file(client, bytes(range(256)) * 400, "junk.csv")  # a failed import too
    job = imports.start_import(upload.resolve_upload(bad), "junk", "auto", None)
    jobs.wait(job, 120)
    assert imports.import_state(job)["status"] == "error"
    assert list(upload.uploads_dir().iterdir()) == []

    outside = tmp_path / "nyc_copy.csv.gz"  # a file that is no upload is never deleted
    outside.write_bytes(NYC.read_bytes())
    jobs.wait(imports.start_import(outside, "nyc_again", "auto", None), 120)
    assert outside.is_file() and upload.discard_after_import(outside) is False


def test_bitmap_counts_match_a_plain_reference():
    rng = random.Random(11)
    for chunks in (1, 7, 8, 9, 64, 1000, 4099):
        for _ in range(20):
            got = set(rng.sample(range(chunks), rng.randint(0, chunks)))
            bits = bytearray((chunks + 7) // 8)
            for i in got:
                bits[i // 8] |= 0x80 >> (i % 8)
            missing = [i for i in range(chunks) if i not in got]
            assert upload._missing(bytes(bits), chunks) == (
                len(missing), missing[0] if missing else -1)


@pytest.mark.parametrize("body,message", [
    ({"filename": "a.csv", "size": 1.5, "chunk_size": 65536}, "size must be a whole number"),
    ({"filename": "a.csv", "size": "100", "chunk_size": 65536}, "size must be a whole number"),
    ({"filename": "a.csv", "chunk_size": 65536}, "size must be a whole number"),
    ({"filename": "a.csv", "size": -5, "chunk_size": 65536}, "empty"),
    ({"filename": ["a.csv"], "size": 10, "chunk_size": 10}, "filename must be text"),
    ({"filename": "a.csv", "size": 10, "chunk_size": None}, "chunk_size must be a whole"),
    ({"filename": "a.csv", "size": 10, "chunk_size": 10**30}, "chunk_size must be 65,536"),
    ([1, 2], "send JSON"),
])
def test_malformed_new_requests_are_400(client, body, message):
    r = client.post("/api/upload/new", headers=HDR, json=body)
    assert r.status_code == 400 and message in r.json["error"], r.json
    assert list(upload.uploads_dir().iterdir()) == []

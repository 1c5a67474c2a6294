"""Upload limits over real HTTP: the real server (``trailscope serve``, waitress; started by
``trailscope.app.localserver``) in a subprocess on a free loopback port, with small limits
set through its environment.

Issue 11: ``finish`` of an upload declared with ``chunk_size`` 1 used to take 42 s and 4.6 GB;
twenty 3 GB reservations were accepted at once; a chunk index of ``²`` gave HTTP 500.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from trailscope.app.localserver import local_server
from trailscope.app.services import upload

HDR = {upload.UPLOAD_HEADER: "1"}
MAX_UPLOADS = 3
SPACE_MB = 3000
CHUNK = upload.MIN_CHUNK_SIZE
STALE_ID = "ab" * 16      # an unfinished upload left by a killed server: removed at start
FINISHED_ID = "cd" * 16   # a finished one the page may still import: kept


def _plant(home: Path, upload_id: str, finished: bool) -> None:
    folder = home / "uploads" / upload_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(
        {"filename": "x.csv", "size": 3, "chunk_size": 3, "chunks": 1, "finished": finished}))
    (folder / ("x.csv" if finished else "x.csv.part")).write_bytes(b"a,b")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("upload_limits_home")
    _plant(home, STALE_ID, finished=False)
    _plant(home, FINISHED_ID, finished=True)
    env = {"TRAILSCOPE_MAX_UPLOADS": str(MAX_UPLOADS), "TRAILSCOPE_UPLOAD_SPACE_MB": str(SPACE_MB),
           "TRAILSCOPE_MAX_UPLOAD_MB": "2048"}
    with local_server(home, env=env) as url:
        # the planted finished upload counts against the limits: the tests start without it
        _call(url, "DELETE", f"/api/upload/{FINISHED_ID}")
        yield url, home


def _call(url: str, method: str, path: str, body: bytes | dict | None = None,
          headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict, float]:
    """One request over a fresh connection: (status, JSON body or {"raw": text}, seconds)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    hdrs = {**HDR, **(headers or {})}
    if isinstance(body, dict):
        hdrs["Content-Type"] = "application/json"
    t0 = time.perf_counter()
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        took = time.perf_counter() - t0
    finally:
        conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = {"raw": raw.decode("utf-8", "replace")}
    return resp.status, parsed, took


def _new(url: str, size: int, chunk_size: int = CHUNK, name: str = "e.csv"):
    return _call(url, "POST", "/api/upload/new",
                 {"filename": name, "size": size, "chunk_size": chunk_size})


def _open_uploads(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "uploads").iterdir())


def test_stale_and_unfinished_uploads_are_removed_at_start(server):
    _, home = server
    assert STALE_ID not in _open_uploads(home)


@pytest.mark.parametrize("size,chunk_size", [
    (100 * 1024 * 1024, 1),            # issue 11: 100 MB in 1-byte chunks
    (2 * CHUNK, CHUNK - 1),            # just under the minimum
    (2 * CHUNK, upload.MAX_CHUNK_SIZE + 1),
    (2 * CHUNK, "65536"), (2 * CHUNK, True), (2 * CHUNK, 2.5), (2 * CHUNK, -CHUNK),
])
def test_chunk_size_outside_the_limits_is_refused(server, size, chunk_size):
    url, home = server
    status, body, took = _new(url, size, chunk_size)
    assert status == 400, body
    assert "chunk_size" in body["error"] and took < 5
    assert _open_uploads(home) == []


def test_small_files_go_in_one_short_chunk(server):
    url, _ = server
    status, body, _ = _new(url, 100, 100)
    assert status == 201 and body["chunks"] == 1, body
    uid = body["upload_id"]
    assert _call(url, "POST", f"/api/upload/{uid}/chunk?index=0", b"x" * 100)[0] == 200
    assert _call(url, "POST", f"/api/upload/{uid}/finish")[0] == 200
    assert _call(url, "DELETE", f"/api/upload/{uid}")[0] == 200


@pytest.mark.parametrize("raw", ["²", "١", "-1", "+1", "1e3", " 1", "0x1", "", "1" * 13,
                                 "0.0", "1\n"])
def test_chunk_index_is_parsed_strictly(server, raw):
    url, _ = server
    uid = _new(url, 2 * CHUNK)[1]["upload_id"]
    try:
        q = urllib.parse.quote(raw, safe="")
        status, body, _ = _call(url, "POST", f"/api/upload/{uid}/chunk?index={q}", b"x" * CHUNK)
        assert status == 400, body
        assert "chunk index must be a non-negative integer" in body["error"]
    finally:
        _call(url, "DELETE", f"/api/upload/{uid}")


def test_finish_of_a_huge_sparse_upload_is_fast(server):
    url, home = server
    size = 2048 * 1024 * 1024  # the cap: 32,768 chunks of 64 KiB, a 4 KB bitmap
    if shutil.disk_usage(home).free < 3 * size:
        pytest.skip("needs 6 GB free disk for the reservation check (the file stays sparse)")
    status, body, _ = _new(url, size)
    assert status == 201, body
    uid, chunks = body["upload_id"], body["chunks"]
    assert chunks == size // CHUNK
    for i in (chunks - 1, 12_345, 0, 12_345):  # the last, one in the middle, the first, again
        assert _call(url, "POST", f"/api/upload/{uid}/chunk?index={i}", b"y" * CHUNK)[0] == 200
    status, body, took = _call(url, "POST", f"/api/upload/{uid}/finish")
    assert status == 409 and took < 1.0, (body, took)
    assert f"{chunks - 3} of {chunks} chunks are missing (first: 1)" in body["error"]
    bits = (home / "uploads" / uid / "received.bits").read_bytes()
    assert len(bits) == chunks // 8  # the whole bookkeeping of the upload
    assert _call(url, "DELETE", f"/api/upload/{uid}")[0] == 200


def test_body_larger_than_a_chunk_is_refused_before_it_is_read(server):
    url, _ = server
    uid = _new(url, 2 * CHUNK)[1]["upload_id"]
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
            s.sendall((f"POST /api/upload/{uid}/chunk?index=0 HTTP/1.1\r\nHost: x\r\n"
                       f"{upload.UPLOAD_HEADER}: 1\r\n"
                       f"Content-Length: {upload.MAX_CHUNK_SIZE * 4}\r\n\r\n").encode())
            s.sendall(b"z" * 1024)  # a 256 MiB body announced, 1 KB sent
            answer = s.recv(4096).decode("latin-1")
        assert answer.startswith("HTTP/1.1 413"), answer[:200]
    finally:
        _call(url, "DELETE", f"/api/upload/{uid}")


def test_concurrent_uploads_and_reserved_space_are_limited(server):
    url, home = server
    if shutil.disk_usage(home).free < 8 * 1024**3:
        pytest.skip("needs 8 GB free disk for the reservation check (the files stay sparse)")
    big = 1400 * 1024 * 1024
    ids = []
    try:
        for _ in range(2):
            status, body, _ = _new(url, big)
            assert status == 201, body
            ids.append(body["upload_id"])
        status, body, _ = _new(url, big)  # 4,200 MB > the 3,000 MB allowed together
        assert status == 429, body
        assert "reserve 2.7 GB of the 2.9 GB allowed" in body["error"]
        assert "TRAILSCOPE_UPLOAD_SPACE_MB" in body["error"]
        status, body, _ = _new(url, CHUNK)  # small: fits in the space left
        assert status == 201, body
        ids.append(body["upload_id"])
        status, body, _ = _new(url, CHUNK)  # a fourth upload
        assert status == 429, body
        assert f"{MAX_UPLOADS} uploads are already in progress" in body["error"]
        assert "TRAILSCOPE_MAX_UPLOADS" in body["error"]
        assert len(_open_uploads(home)) == MAX_UPLOADS
        assert _call(url, "DELETE", f"/api/upload/{ids.pop()}")[0] == 200
        status, body, _ = _new(url, CHUNK)  # a slot is free again
        assert status == 201, body
        ids.append(body["upload_id"])
    finally:
        for uid in ids:
            _call(url, "DELETE", f"/api/upload/{uid}")
    assert _open_uploads(home) == []


def test_racing_requests_keep_the_limits_and_the_bitmap(server):
    url, home = server
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: _new(url, 16 * CHUNK), range(10)))
    accepted = [body["upload_id"] for status, body, _ in answers if status == 201]
    assert len(accepted) == MAX_UPLOADS
    assert sorted(status for status, _, _ in answers) == [201] * 3 + [429] * 7
    uid = accepted[0]
    try:  # 16 chunks at once: two bitmap bytes, written by racing threads
        with ThreadPoolExecutor(16) as pool:
            sent = list(pool.map(lambda i: _call(url, "POST", f"/api/upload/{uid}/chunk?index={i}",
                                                 bytes([i]) * CHUNK)[0], range(16)))
        assert sent == [200] * 16
        with ThreadPoolExecutor(4) as pool:  # racing finishes: each one answers the same
            done = list(pool.map(lambda _: _call(url, "POST", f"/api/upload/{uid}/finish"),
                                 range(4)))
        assert [status for status, _, _ in done] == [200] * 4, done
        data = (home / "uploads" / uid / "e.csv").read_bytes()
        assert data == b"".join(bytes([i]) * CHUNK for i in range(16))
    finally:
        for upload_id in accepted:
            _call(url, "DELETE", f"/api/upload/{upload_id}")


def test_errors_name_no_server_path(server):
    url, home = server
    for status, body, _ in (_new(url, 10**15), _new(url, 0), _new(url, 2 * CHUNK, 1),
                            _call(url, "POST", f"/api/upload/{'0' * 32}/finish")):
        assert 400 <= status < 500 and body.get("error"), body
        assert str(home) not in body["error"] and os.sep + "tmp" not in body["error"]

"""Slow clients cannot starve the server (issue 11, item 3).

With gunicorn's sync/gthread workers, 8 connections sending one byte of a chunk body each held
every worker, and every other request timed out for as long as they were held. The real server
(``trailscope serve``: waitress) runs here in a subprocess on a free loopback port
with only 4 worker threads; 8 slow uploads hold their bodies open while pages and a Dash layout
request keep answering under a second; a silent connection is closed after the channel timeout.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from trailscope.app.localserver import free_port, local_server
from trailscope.app.services import upload

HDR = {upload.UPLOAD_HEADER: "1"}
CHUNK = upload.MIN_CHUNK_SIZE
SLOW = 8
THREADS = 4
CHANNEL_TIMEOUT_S = 4


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("slow_clients_home")
    env = {"TRAILSCOPE_THREADS": str(THREADS),
           "TRAILSCOPE_CHANNEL_TIMEOUT_S": str(CHANNEL_TIMEOUT_S)}
    with local_server(home, env=env) as base:
        yield base


def _get(base: str, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    t0 = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, data, time.perf_counter() - t0


def _slow_chunk(base: str, upload_id: str, index: int) -> socket.socket:
    """A connection that announces a whole chunk body and sends one byte of it."""
    parts = urllib.parse.urlsplit(base)
    s = socket.create_connection((parts.hostname, parts.port), timeout=10)
    s.sendall((f"POST /api/upload/{upload_id}/chunk?index={index} HTTP/1.1\r\n"
               f"Host: {parts.hostname}:{parts.port}\r\n{upload.UPLOAD_HEADER}: 1\r\n"
               "Content-Type: application/octet-stream\r\n"
               f"Content-Length: {CHUNK}\r\n\r\n").encode() + b"s")
    return s


def _answers(base: str) -> list[tuple[str, int, float]]:
    """GET /overview (the page) and GET /_dash-layout (what the browser asks next)."""
    out = []
    for path in ("/overview", "/_dash-layout", "/data"):
        status, _, took = _get(base, path)
        out.append((path, status, took))
    return out


def _new_upload(base: str, chunks: int) -> str:
    status, data, _ = _get(base, "/api/upload/new", "POST", json.dumps(
        {"filename": "slow.csv", "size": chunks * CHUNK, "chunk_size": CHUNK}).encode(),
        {**HDR, "Content-Type": "application/json"})
    assert status == 201, data
    return json.loads(data)["upload_id"]


def test_slow_uploads_do_not_starve_other_requests(url):
    warm = _answers(url)  # first requests build the layouts; not what is measured
    assert all(status == 200 for _, status, _ in warm), warm
    uid = _new_upload(url, SLOW)
    held = [_slow_chunk(url, uid, i) for i in range(SLOW)]
    try:
        deadline = time.monotonic() + 3
        rounds = []
        while time.monotonic() < deadline:
            for s in held:  # one more byte each: the bodies stay open and active
                s.sendall(b"s")
            rounds.append(_answers(url))
        flat = [a for r in rounds for a in r]
        assert len(rounds) >= 2, rounds
        assert all(status == 200 for _, status, _ in flat), flat
        slowest = max(took for _, _, took in flat)
        assert slowest < 1.0, sorted(flat, key=lambda a: -a[2])[:3]
        # the held chunks complete normally once their bodies arrive
        for s in held:
            s.sendall(b"s" * (CHUNK - 1 - len(rounds)))
        for s in held:
            assert s.recv(4096).startswith(b"HTTP/1.1 200"), "a held chunk was not accepted"
    finally:
        for s in held:
            s.close()
    status, data, _ = _get(url, f"/api/upload/{uid}/finish", "POST", b"", HDR)
    assert status == 200, data


def test_a_silent_body_is_closed_after_the_channel_timeout(url):
    uid = _new_upload(url, 1)
    s = _slow_chunk(url, uid, 0)
    s.settimeout(CHANNEL_TIMEOUT_S + 15)  # + waitress's 5 s sweep + a loaded machine
    t0 = time.monotonic()
    try:
        answer = s.recv(4096)  # b"" once the server closes the connection
    finally:
        s.close()
    took = time.monotonic() - t0
    assert answer == b"" and CHANNEL_TIMEOUT_S - 1 <= took <= CHANNEL_TIMEOUT_S + 12, (answer,
                                                                                     took)
    assert _get(url, "/overview")[0] == 200


def test_trailscope_serve_runs_the_same_production_server(tmp_path):
    """`trailscope serve` (and so the Procfile) serves with waitress, not Flask's dev server."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "TRAILSCOPE_HOME": str(tmp_path / "home")}
    cli = Path(sys.executable).with_name("trailscope")
    with open(log, "w") as out:
        proc = subprocess.Popen([str(cli), "serve", "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while "serving" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert f"TrailScope serving {base} (waitress, 32 threads)" in log.read_text()
        status, _, _ = _get(base, "/overview")
        assert status == 200
        assert "development server" not in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

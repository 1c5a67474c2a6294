"""Property-based tests of the chunked-upload routes (hypothesis, the real app's Flask client).

Whatever a client sends, the routes answer with a 4xx/5xx JSON error that says what was wrong
or do exactly what was asked: never an HTTP 500, never a file that differs from what was sent.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trailscope.app.services import upload

from tests.conftest import TAOBAO

HDR = {upload.UPLOAD_HEADER: "1"}
#: Answers a hostile request may get; 500 is never one of them.
REFUSALS = {400, 404, 409, 413, 429, 507}
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
_field = _json | st.integers(0, 2 * upload.MAX_CHUNK_SIZE) | st.sampled_from(
    [upload.MIN_CHUNK_SIZE, upload.MAX_CHUNK_SIZE, 1, 0, -1, "65536", "../../x", "a\x00b"])
_new_body = st.fixed_dictionaries(
    {}, optional={"filename": _json | st.text(max_size=300), "size": _field,
                  "chunk_size": _field}) | _json


def _client(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
    from trailscope.app.main import server

    return server.test_client()


def _is_error(r) -> bool:
    body = r.get_json(silent=True)
    return r.status_code in REFUSALS and isinstance(body, dict) and bool(body.get("error"))


@SETTINGS
@given(body=_new_body)
def test_any_new_request_is_accepted_or_refused_with_a_reason(tmp_path_factory, monkeypatch,
                                                             body):
    client = _client(tmp_path_factory, monkeypatch)
    r = client.post("/api/upload/new", headers=HDR, data=json.dumps(body),
                    content_type="application/json")
    if r.status_code == 201:
        start = r.get_json()
        assert isinstance(body, dict) and 0 < body["size"] <= upload.max_upload_bytes()
        assert start["chunks"] * start["chunk_size"] >= body["size"]
        assert client.delete(f"/api/upload/{start['upload_id']}", headers=HDR).status_code \
            in (200, 204)
    else:
        assert _is_error(r), (r.status_code, r.get_data()[:200])


@SETTINGS
@given(index=st.text(max_size=12) | st.integers(-5, 10).map(str),
       length=st.integers(0, 3 * upload.MIN_CHUNK_SIZE))
def test_any_chunk_request_is_stored_exactly_or_refused(tmp_path_factory, monkeypatch, index,
                                                        length):
    client = _client(tmp_path_factory, monkeypatch)
    chunk = upload.MIN_CHUNK_SIZE
    size = 2 * chunk + 17
    start = client.post("/api/upload/new", headers=HDR, json={
        "filename": "events.csv", "size": size, "chunk_size": chunk}).get_json()
    uid = start["upload_id"]
    r = client.post(f"/api/upload/{uid}/chunk", query_string={"index": index}, headers=HDR,
                    data=b"x" * length, content_type="application/octet-stream")
    valid = index.isascii() and index.isdigit() and int(index) < start["chunks"]
    expected = (min(chunk, size - int(index) * chunk) if valid else None)
    if r.status_code == 200:
        assert valid and length == expected, (index, length)
        assert r.get_json()["bytes"] == length
    else:
        assert _is_error(r), (index, length, r.status_code, r.get_data()[:200])
        assert not (valid and length == expected), "a well-formed chunk was refused"
    client.delete(f"/api/upload/{uid}", headers=HDR)


@SETTINGS
@given(sent=st.lists(st.integers(0, 4), max_size=8))
def test_finish_succeeds_exactly_when_every_chunk_arrived(tmp_path_factory, monkeypatch, sent):
    client = _client(tmp_path_factory, monkeypatch)
    chunk = upload.MIN_CHUNK_SIZE
    data = TAOBAO.read_bytes()[: 4 * chunk + 1001]  # real bytes, five chunks, the last short
    start = client.post("/api/upload/new", headers=HDR, json={
        "filename": "taobao.csv", "size": len(data), "chunk_size": chunk}).get_json()
    uid = start["upload_id"]
    for i in sent:  # any order, repeats allowed
        r = client.post(f"/api/upload/{uid}/chunk?index={i}", headers=HDR,
                        data=data[i * chunk:(i + 1) * chunk])
        assert r.status_code == 200, r.get_json()
    r = client.post(f"/api/upload/{uid}/finish", headers=HDR)
    if set(sent) == set(range(start["chunks"])):
        assert r.status_code == 200, r.get_json()
        assert upload.resolve_upload(uid).read_bytes() == data
    else:
        assert _is_error(r), (sent, r.status_code)
    client.delete(f"/api/upload/{uid}", headers=HDR)

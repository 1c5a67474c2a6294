"""The HTTP API (app/api) against real servers: ``trailscope serve`` subprocesses on free
ports over workspaces holding the committed Foursquare NYC slice and a trained markov model;
requests go through ``requests`` with no mocks.

Server A (loopback) has an API token and a small body limit; server B has only a password and
listens on this machine's own non-loopback address, so its requests come from a non-loopback
client (skipped where the machine has no such address).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta

import pytest
import requests
from trailscope.analytics import schema
from trailscope.app.localserver import local_server

from tests.conftest import ROOT, nyc_head

TOKEN = "api-test-token-0123456789abcdef"
PASSWORD = "api test password, long enough"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY_MB = 0.05       # server A: 52 KB bodies at most
NYC_LINES = 4000         # rows of the slice the workspace holds


def own_address() -> str | None:
    """This machine's non-loopback IPv4 address (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


@pytest.fixture(scope="module")
def nyc(tmp_path_factory) -> dict:
    """A workspace holding dataset ``nyc`` (the slice's first rows) and a markov model."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import Store
    from trailscope.models import api

    home = tmp_path_factory.mktemp("api_home")
    with Store(home / "trailscope.duckdb") as store:
        import_file(store, nyc_head(home / "nyc.csv", NYC_LINES), name="nyc")
        model_id = api.train(store, "nyc", "markov", log=lambda _m: None).model_id
        top = store.query_df(
            f"SELECT {schema.USER} AS u, max({schema.TS}) AS last, count(*) AS n "
            f"FROM {store.table('nyc')} GROUP BY 1 ORDER BY n DESC, u LIMIT 1").iloc[0]
        items = store.query_df(
            f"SELECT {schema.ITEM} AS i, count(*) AS n FROM {store.table('nyc')} "
            "GROUP BY 1 ORDER BY n DESC, i LIMIT 20")["i"].tolist()
    return {"home": home, "model_id": model_id, "user": str(top["u"]), "last": top["last"],
            "items": [str(i) for i in items]}


@pytest.fixture(scope="module")
def servers(nyc, tmp_path_factory) -> Iterator[dict]:
    """Server A (token, small body limit, the nyc workspace) and, where this machine has a
    non-loopback address, server B (password only, listening there), started together."""
    ip = own_address()
    with ExitStack() as stack:
        out = {"a": stack.enter_context(local_server(
            nyc["home"], env={"TRAILSCOPE_API_TOKEN": TOKEN,
                              "TRAILSCOPE_API_MAX_BODY_MB": str(MAX_BODY_MB)}))}
        if ip:
            out["b"] = stack.enter_context(local_server(
                tmp_path_factory.mktemp("api_pw"), host=ip,
                env={"TRAILSCOPE_PASSWORD": PASSWORD}))
        yield out


def _json_error(resp: requests.Response, status: int) -> dict:
    """``resp`` is a JSON error with ``status``: a message, no HTML, no traceback."""
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body["error"], str) and body["error"].strip()
    assert "Traceback" not in resp.text and "<html" not in resp.text.lower()
    assert "/tmp/" not in resp.text and str(ROOT) not in resp.text  # no server paths
    return body


def _rows(url: str) -> int:
    return requests.get(f"{url}/api/v1/datasets/nyc", headers=AUTH, timeout=30).json()["rows"]


def _recs(url: str, user: str, **params: str) -> dict:
    r = requests.get(f"{url}/api/v1/datasets/nyc/users/{user}/recommendations",
                     params={"k": "10", **params}, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _event(user: str, item: str, ts: str, **more: object) -> dict:
    return {schema.USER: user, schema.ITEM: item, schema.TS: ts, **more}


def _later(nyc: dict, minutes: int) -> str:
    return (nyc["last"] + timedelta(minutes=minutes)).isoformat() + "Z"


# -- the events write path -------------------------------------------------------------------
def test_posting_an_event_changes_that_users_next_recommendations(servers, nyc):
    url, user = servers["a"], nyc["user"]
    before = _recs(url, user, model=nyc["model_id"])
    assert before["model_id"] == nyc["model_id"] and len(before["items"]) == 10
    # the user's next check-in: one of the most visited places (the first that moves the
    # markov chain elsewhere: the user's last place may be among them)
    changed = None
    for n, item in enumerate(nyc["items"][:5]):
        r = requests.post(f"{url}/api/v1/datasets/nyc/events", headers=AUTH, timeout=60,
                          json=[_event(user, item, _later(nyc, 60 * (n + 1)))])
        assert r.status_code == 200 and r.json()["stored"] == 1, r.text
        after = _recs(url, user, model=nyc["model_id"])  # no retraining: the same model
        assert after["model_id"] == nyc["model_id"]
        assert after["history_used"] >= before["history_used"]
        if [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]:
            changed = item
            break
        before = after
    assert changed is not None, "no posted event changed the user's recommendations"
    # a model name picks its best current model; at/lat/lon are taken
    named = _recs(url, user, model="markov", at="2012-05-01T08:00:00Z", lat="40.75",
                  lon="-73.99")
    assert named["model_id"] == nyc["model_id"] and named["at"].startswith("2012-05-01T08:00")


def test_a_resent_event_id_is_stored_once(servers, nyc):
    url, user = servers["a"], nyc["user"]
    rows = _rows(url)
    batch = [_event(user, nyc["items"][k], _later(nyc, 600 + k), event_id=f"resend-{k}")
             for k in range(3)]
    first = requests.post(f"{url}/api/v1/datasets/nyc/events", json=batch, headers=AUTH,
                          timeout=60).json()
    assert (first["stored"], first["duplicates"], first["rows"]) == (3, 0, rows + 3)
    # the same batch again, plus one id twice in a new NDJSON batch
    again = requests.post(f"{url}/api/v1/datasets/nyc/events", json=batch, headers=AUTH,
                          timeout=60).json()
    assert (again["stored"], again["duplicates"], again["rows"]) == (0, 3, rows + 3)
    fresh = _event(user, nyc["items"][5], _later(nyc, 700), event_id="resend-new")
    body = "\n".join(json.dumps(e) for e in (fresh, fresh, batch[0])) + "\n"
    nd = requests.post(f"{url}/api/v1/datasets/nyc/events", data=body.encode(), timeout=60,
                       headers={**AUTH, "Content-Type": "application/x-ndjson"}).json()
    assert (nd["stored"], nd["duplicates"]) == (1, 2)
    assert _rows(url) == rows + 4


def test_every_bad_event_is_named_by_index_field_and_reason(servers, nyc):
    url, user, item = servers["a"], nyc["user"], nyc["items"][0]
    rows = _rows(url)
    ok = _event(user, item, _later(nyc, 800))
    batch = [ok, {schema.ITEM: item, schema.TS: _later(nyc, 801)},           # 1: no user
             _event(user, item, "yesterday-ish"),                             # 2: bad time
             _event(user, item, _later(nyc, 802), lat=40.7),                 # 3: lat only
             _event(user, item, _later(nyc, 803), lat=40.7, lon=250),        # 4: lon range
             {**ok, "colour": "red"},                                         # 5: unknown field
             ok]
    body = _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", json=batch,
                                     headers=AUTH, timeout=60), 400)
    found = {(p["index"], p["field"]) for p in body["problems"]}
    assert {(1, schema.USER), (2, schema.TS), (3, schema.LON), (4, schema.LON),
            (5, "colour")} <= found, body
    assert all(p["reason"] for p in body["problems"]) and 0 not in {i for i, _ in found}
    assert _rows(url) == rows  # the good events of the batch were not stored either
    # NDJSON: a line that is not JSON, and one that is not an object
    text = json.dumps(ok) + "\n{not json\n[1, 2]\n"
    body = _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", data=text.encode(),
                                     headers={**AUTH, "Content-Type": "application/x-ndjson"},
                                     timeout=60), 400)
    assert [p["index"] for p in body["problems"]] == [1, 2]
    assert "line 2" in body["problems"][0]["reason"]
    # a JSON body that does not parse says where
    body = _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", data=b'[{"a": 1,]',
                                     headers={**AUTH, "Content-Type": "application/json"},
                                     timeout=60), 400)
    assert "line 1 column" in body["error"]
    _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", json=[], headers=AUTH,
                              timeout=60), 400)
    assert _rows(url) == rows


def test_a_body_over_the_limit_is_413_json(servers, nyc):
    url = servers["a"]
    rows = _rows(url)
    event = _event(nyc["user"], nyc["items"][0], _later(nyc, 900))
    big = json.dumps([event] * int(MAX_BODY_MB * 1024 * 1024 / len(json.dumps(event)) + 50))
    assert len(big) > MAX_BODY_MB * 1024 * 1024
    body = _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", data=big.encode(),
                                     headers={**AUTH, "Content-Type": "application/json"},
                                     timeout=60), 413)
    assert "TRAILSCOPE_API_MAX_BODY_MB" in body["error"]

    def chunked():  # no Content-Length: the limit holds while the body is read
        for k in range(0, len(big), 8192):
            yield big[k:k + 8192].encode()

    _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", data=chunked(),
                              headers={**AUTH, "Content-Type": "application/json"},
                              timeout=60), 413)
    assert _rows(url) == rows


# -- who may write -----------------------------------------------------------------------------
def test_api_writes_need_the_bearer_token(servers, nyc):
    url = servers["a"]
    batch = [_event(nyc["user"], nyc["items"][0], _later(nyc, 1000))]
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"},
                    {"Authorization": f"Basic {TOKEN}"}):
        body = _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", json=batch,
                                         headers=headers, timeout=30), 401)
        assert "token" in body["error"].lower() or "log in" in body["error"]
    _json_error(requests.delete(f"{url}/api/v1/datasets/nyc", timeout=30), 401)
    _json_error(requests.get(f"{url}/api/v1/datasets", timeout=30), 401)  # reads too
    assert requests.get(f"{url}/api/v1/datasets", headers=AUTH, timeout=30).status_code == 200


def test_without_a_token_api_writes_come_only_from_loopback(servers, nyc):
    if "b" not in servers:
        pytest.skip("this machine has no non-loopback address to send from")
    url = servers["b"]
    batch = [_event(nyc["user"], nyc["items"][0], _later(nyc, 1100))]
    body = _json_error(requests.post(f"{url}/api/v1/datasets/nyc/events", json=batch,
                                     timeout=30), 403)
    assert "TRAILSCOPE_API_TOKEN" in body["error"]
    # a logged-in browser session (the password) does not open API writes either
    s = requests.Session()
    form = s.get(f"{url}/login", timeout=30)
    csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    login = s.post(f"{url}/login", data={"secret": PASSWORD, "csrf_token": csrf, "next": "/"},
                   allow_redirects=False, timeout=30)
    assert login.status_code == 302, login.text
    assert s.get(f"{url}/api/v1/datasets", timeout=30).status_code == 200  # reads: the session
    body = _json_error(s.post(f"{url}/api/v1/datasets/nyc/events", json=batch, timeout=30,
                              headers={"X-CSRFToken": s.cookies.get("_csrf_token", "")}), 403)
    assert "TRAILSCOPE_API_TOKEN" in body["error"]


# -- errors and reads ------------------------------------------------------------------------
def test_errors_are_json_with_a_message_never_html(servers, nyc):
    url, user = servers["a"], nyc["user"]
    base = f"{url}/api/v1/datasets"
    cases = [
        ("GET", f"{base}/nowhere", 404), ("GET", f"{base}/nowhere/users/1/recommendations", 404),
        ("GET", f"{base}/nyc/users/no-such-user/recommendations", 404),
        ("GET", f"{base}/nyc/users/{user}/recommendations?model=no-such-model", 404),
        ("GET", f"{base}/nyc/users/no-such-user/explanation", 404),
        ("GET", f"{url}/api/v1/no/such/route", 404), ("POST", f"{url}/api/v1/health", 405),
        ("PUT", f"{base}/nyc", 405), ("GET", f"{url}/api/v1/jobs/0123456789ab", 404),
        ("GET", f"{base}/nyc/users/{user}/recommendations?k=0", 400),
        ("GET", f"{base}/nyc/users/{user}/recommendations?k=ten", 400),
        ("GET", f"{base}/nyc/users/{user}/recommendations?lat=40.7", 400),
        ("GET", f"{base}/nyc/users/{user}/recommendations?lat=95&lon=0", 400),
        ("GET", f"{base}/nyc/users/{user}/recommendations?at=half-past-noon", 400),
        ("POST", f"{base}/nowhere/events", 404), ("POST", f"{base}/bad%20name!/events", 400),
        ("POST", f"{base}/nyc/models", 400), ("DELETE", f"{base}/nowhere", 404),
    ]
    for method, target, status in cases:
        data = json.dumps([_event(user, "x", "2012-05-01T00:00:00Z")]) \
            if target.endswith("/events") else None
        body = _json_error(requests.request(method, target, headers={
            **AUTH, "Content-Type": "application/json"}, data=data, timeout=60), status)
        assert len(body["error"]) < 600, (target, body)
    allow = requests.post(f"{url}/api/v1/health", headers=AUTH, timeout=30).headers["Allow"]
    assert "GET" in allow


def test_health_and_datasets_report_counts_span_and_last_event(servers, nyc):
    url = servers["a"]
    health = requests.get(f"{url}/api/v1/health", headers=AUTH, timeout=30).json()
    assert health["status"] == "ok" and health["workspace_id"]
    listed = requests.get(f"{url}/api/v1/datasets", headers=AUTH, timeout=30).json()["datasets"]
    one = requests.get(f"{url}/api/v1/datasets/NYC", headers=AUTH, timeout=30).json()
    assert [d["name"] for d in listed] == ["nyc"] and one["name"] == "nyc"
    assert one["rows"] > NYC_LINES // 2 and one["users"] > 10 and one["items"] > 100
    late = _later(nyc, 60 * 24 * 365)
    r = requests.post(f"{url}/api/v1/datasets/nyc/events", headers=AUTH, timeout=60,
                      json=[_event(nyc["user"], nyc["items"][1], late)])
    assert r.status_code == 200, r.text
    now = requests.get(f"{url}/api/v1/datasets/nyc", headers=AUTH, timeout=30).json()
    assert now["rows"] == r.json()["rows"] and now["last_event"].startswith(late[:16])
    assert now["time_min"] == one["time_min"] and now["bbox"] is not None
    spec = requests.get(f"{url}/api/v1/openapi.json", headers=AUTH, timeout=30).json()
    assert spec["openapi"].startswith("3.") and "/datasets/{name}/events" in spec["paths"]


def test_explanation_is_what_trailscope_explain_prints(servers, nyc):
    url, user = servers["a"], nyc["user"]
    top = _recs(url, user)["items"][0]["item_id"]
    r = requests.get(f"{url}/api/v1/datasets/nyc/users/{user}/explanation", headers=AUTH,
                     timeout=300)
    assert r.status_code == 200, r.text
    ex = r.json()
    assert (ex["user"], ex["item"], ex["model_id"]) == (user, top, nyc["model_id"])
    assert ex["summary"] and isinstance(ex["events"], list) and ex["groups"]
    other = _recs(url, user)["items"][1]["item_id"]
    r = requests.get(f"{url}/api/v1/datasets/nyc/users/{user}/explanation",
                     params={"item": other, "model": "markov"}, headers=AUTH, timeout=300)
    assert r.status_code == 200 and r.json()["item"] == other, r.text


def test_appended_events_reach_recommendations_without_reloading_the_model(workspace,
                                                                          monkeypatch):
    """The loaded model is memoised per import (its fingerprint is fixed at import): an
    append changes the user's history at once and loads nothing again."""
    from trailscope.analytics.sample.generate import import_sample
    from trailscope.app.services import models as model_service
    from trailscope.app.services import writer
    from trailscope.models import api

    import_sample(workspace, "city", users=30, seed=3)
    model_id = api.train(workspace, "city", "markov", log=lambda _m: None).model_id
    loads = []
    real = api.load
    monkeypatch.setattr(api, "load", lambda *a, **kw: loads.append(a[1:]) or real(*a, **kw))
    user = model_service.model_users("city", model_id, limit=1)[0]["user"]
    before = model_service.recommend("city", user, k=5, model_id=model_id)
    last = workspace.query_df(f"SELECT max({schema.TS}) AS t FROM {workspace.table('city')} "
                              f"WHERE {schema.USER} = ?", [user])["t"].iloc[0]
    item = before["items"][0]["item_id"]
    res = writer.append("city", [_event(user, item, (last + timedelta(hours=1)).isoformat())])
    assert res.stored == 1
    after = model_service.recommend("city", user, k=5, model_id=model_id)
    assert after["history_used"] == before["history_used"] + 1 or \
        after["history_used"] == before["history_used"]  # at the model's max_len already
    assert after["at"] > before["at"]  # the appended event is the user's latest now
    assert loads == [("city", model_id)]

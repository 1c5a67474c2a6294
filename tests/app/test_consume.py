"""``trailscope consume``: a real redis-server started here, the NYC slice as events, a real
workspace in tmp_path. Exact counts: every sent event stored once, bad ones dead-lettered."""

from __future__ import annotations

import json

import pytest
from trailscope.app.streams.redis_source import RedisSource, decode

from tests.app.streams_helpers import (
    nyc_records,
    redis_server,
    trailscope,
)


@pytest.fixture()
def redis_url(tmp_path):
    with redis_server(tmp_path) as (url, client):
        yield url, client


def _xadd(client, stream: str, records) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for r in records:
        pipe.xadd(stream, {"event": json.dumps(r)})
    return [i.decode() for i in pipe.execute()]


# -- the source alone --------------------------------------------------------------------
def test_decode_json_fields_and_bad_entries():
    good = decode("1-0", {b"event": json.dumps({"user_id": "u", "item_id": "i"}).encode()}, "s")
    assert good.record == {"user_id": "u", "item_id": "i"} and good.key == "s:1-0"
    fields = decode("2-0", {b"user_id": b"u", b"item_id": b"i", b"ts": b"2024-01-01"}, "s")
    assert fields.record == {"user_id": "u", "item_id": "i", "ts": "2024-01-01"}
    bad = decode("3-0", {b"event": b"{not json"}, "s")
    assert bad.record is None and bad.field == "event" and "not valid JSON" in bad.error
    arr = decode("4-0", {b"event": b"[1, 2]"}, "s")
    assert arr.record is None and "JSON object" in arr.error
    gone = decode("5-0", None, "s")
    assert gone.record is None and "deleted" in gone.error


def test_unacknowledged_entries_come_back_first_and_idle_ones_are_claimed(redis_url):
    url, client = redis_url
    ids = _xadd(client, "ev", nyc_records(30))
    a = RedisSource(f"{url}/ev", "g", "a")
    first = a.read(10, 100)
    assert [m.id for m in first] == ids[:10]
    a.ack([m.id for m in first[:4]])
    a.close()  # "killed": 6 entries delivered to a, never acknowledged

    again = RedisSource(f"{url}/ev", "g", "a")  # the restart, same consumer name
    assert [m.id for m in again.read(100, 100)] == ids[4:10]  # its pending ones first
    assert [m.id for m in again.read(100, 100)] == ids[10:]   # then the new ones
    assert again.read(100, 50) == []
    # b takes over what a left idle (here: everything pending, min idle 0)
    b = RedisSource(f"{url}/ev", "g", "b", claim_idle_ms=0, claim_every_s=0)
    claimed = b.read(100, 50)
    assert sorted(m.id for m in claimed) == sorted(ids[4:])
    b.ack([m.id for m in claimed])
    assert client.xpending("ev", "g")["pending"] == 0
    again.close()
    b.close()


def test_a_bad_url_says_what_is_wrong(tmp_path):
    r = trailscope(tmp_path / "home", "consume", "nyc", "--from", "redis://127.0.0.1:1")
    assert r.returncode == 1 and "name the stream" in r.stderr and "Traceback" not in r.stderr
    r = trailscope(tmp_path / "home", "consume", "nyc", "--from",
                   "redis://127.0.0.1:1/events")
    assert r.returncode == 1 and "cannot reach Redis at redis://127.0.0.1:1/events" in r.stderr
    assert "Traceback" not in r.stderr

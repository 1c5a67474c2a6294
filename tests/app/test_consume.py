"""``trailscope consume``: a real redis-server started here, the NYC slice as events, a real
workspace in tmp_path. Exact counts: every sent event stored once, bad ones dead-lettered."""

from __future__ import annotations

import gzip
import json
import signal

import pytest
from trailscope.analytics.append import live_table
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.store import Store
from trailscope.app.streams.redis_source import RedisSource, decode

from tests.app.streams_helpers import (
    nyc_records,
    redis_server,
    start_trailscope,
    trailscope,
    wait_until,
)
from tests.conftest import NYC


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


# -- trailscope consume into a workspace it holds ---------------------------------------------
HEAD = 1000  # rows of the NYC slice imported before consuming (some lack a venue: skipped)


@pytest.fixture()
def nyc_home(tmp_path, monkeypatch):
    """(workspace, events) holding dataset ``nyc``: the first HEAD rows of the NYC slice."""
    home = tmp_path / "home"
    monkeypatch.setenv("TRAILSCOPE_HOME", str(home))
    head = tmp_path / "nyc_head.csv"
    with gzip.open(NYC, "rt", encoding="latin-1") as fh:
        head.write_text("".join(line for _, line in zip(range(HEAD + 1), fh, strict=False)),
                        encoding="latin-1")
    with Store() as store:
        report = import_file(store, head, name="nyc", keep_duplicates=True)
    assert 0 < report.rows_kept <= HEAD
    return home, report.rows_kept


def _stored(home) -> tuple[int, int, int]:
    """(rows of nyc in the registry, events in its table, distinct event ids appended)."""
    with Store(home / "trailscope.duckdb", read_only=True) as store:
        rows = store.info("nyc").rows
        table = store.query_df(f"SELECT count(*) AS n FROM {store.table('nyc')}")["n"][0]
        ids = store.query_df(f"SELECT count(DISTINCT event_id) AS n FROM {live_table('nyc')}")
    return int(rows), int(table), int(ids["n"][0])


def _group(client, stream: str) -> dict:
    """The consumer group's counters: entries delivered and not yet acknowledged, etc."""
    groups = client.xinfo_groups(stream)
    if not groups:  # the consumer has not created it yet
        return {"pending": 0, "read": 0}
    info = groups[0]
    return {"pending": int(info["pending"]), "read": int(info.get("entries-read") or 0)}


def _bad_entries(client, stream: str) -> list[str]:
    """Three entries the write path must refuse, one of each kind."""
    return [
        client.xadd(stream, {"event": b"{oops"}).decode(),                       # not JSON
        client.xadd(stream, {"event": json.dumps({"item_id": "x", "ts": "2012-04-03T18:00:00Z"})}
                    ).decode(),                                                  # no user
        client.xadd(stream, {"event": json.dumps({"user_id": "u", "item_id": "x",
                                                  "ts": "2012-04-03T18:00:00Z",
                                                  "colour": "red"})}).decode(),  # unknown
    ]


def test_kill_9_mid_batch_then_restart_loses_nothing_and_doubles_nothing(nyc_home, redis_url,
                                                                         tmp_path):
    nyc_home, base = nyc_home
    url, client = redis_url
    sent = nyc_records(12_000, offset=HEAD)
    ids = _xadd(client, "ev", sent)
    _xadd(client, "ev", sent[:500])  # the same 500 events sent twice (same event ids)
    bad = _bad_entries(client, "ev")
    # the canonical fields as separate stream fields, and an event without an id
    client.xadd("ev", {k: str(v) for k, v in nyc_records(1, offset=HEAD + 30_000)[0].items()})
    no_id = {k: v for k, v in nyc_records(1, offset=HEAD + 31_000)[0].items() if k != "event_id"}
    no_id_entry = client.xadd("ev", {"event": json.dumps(no_id)}).decode()
    total_entries = len(ids) + 500 + len(bad) + 2
    distinct = len(sent) + 2

    proc = start_trailscope(nyc_home, tmp_path / "consume1.log", "consume", "nyc", "--from",
                            f"{url}/ev", "--batch", "500")
    # kill it while it holds a delivered, unacknowledged batch, after some were committed
    wait_until(lambda: (proc.poll(), _group(client, "ev")),
               lambda s: s[0] is not None or (s[1]["read"] - s[1]["pending"] >= 3000
                                              and s[1]["pending"] > 0),
               "the consumer acknowledged 3000 entries and holds a batch", timeout_s=120,
               every_s=0.01)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "consume1.log").read_text()
    killed = _group(client, "ev")
    assert killed["pending"] > 0 and killed["read"] < total_entries
    rows, _, _ = _stored(nyc_home)
    assert base < rows < base + distinct  # part stored, part not

    r = trailscope(nyc_home, "consume", "nyc", "--from", f"{url}/ev", "--batch", "500",
                   "--idle-exit", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # the restart read the killed run's pending entries again and everything after them
    assert out["read"] == total_entries - (killed["read"] - killed["pending"])
    assert out["rejected"] == len(bad)
    assert _group(client, "ev")["pending"] == 0
    assert _stored(nyc_home) == (base + distinct, base + distinct, distinct)

    # the refused entries are in the dead-letter stream with their index, field and reason
    dead = client.xrange("ev:rejected")
    assert [d[1][b"entry_id"].decode() for d in dead] == bad
    why = {d[1][b"entry_id"].decode(): (d[1][b"field"].decode(), d[1][b"reason"].decode())
           for d in dead}
    assert why[bad[0]][0] == "event" and "not valid JSON" in why[bad[0]][1]
    assert why[bad[1]][0] == "user_id"
    assert why[bad[2]][0] == "colour" and "unknown field" in why[bad[2]][1]
    assert all(int(d[1][b"index"]) >= 0 for d in dead)
    # the event without an id got its entry's id, so a redelivery is stored once
    with Store(nyc_home / "trailscope.duckdb", read_only=True) as store:
        n = store.query_df(f"SELECT count(*) AS n FROM {live_table('nyc')} WHERE event_id = ?",
                           [f"ev:{no_id_entry}"])["n"][0]
    assert n == 1


def test_sigterm_stops_after_the_current_batch(nyc_home, redis_url, tmp_path):
    nyc_home, base = nyc_home
    url, client = redis_url
    _xadd(client, "ev", nyc_records(5000, offset=HEAD))
    log = tmp_path / "consume.log"
    proc = start_trailscope(nyc_home, log, "consume", "nyc", "--from", f"{url}/ev",
                            "--batch", "200", "--json")
    wait_until(lambda: (proc.poll(), _group(client, "ev")),
               lambda s: s[0] is not None or s[1]["read"] >= 1000, "1000 entries delivered",
               timeout_s=120, every_s=0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
    out = json.loads(log.read_text().strip().splitlines()[-1])
    group = _group(client, "ev")
    assert group["pending"] == 0 and out["read"] == group["read"] < 5000
    assert out["stored"] == out["read"] and out["rejected"] == 0
    assert "stopping after the current batch (SIGTERM)" in log.read_text()
    assert _stored(nyc_home)[0] == base + out["read"]


def test_consume_into_a_missing_dataset_says_so(tmp_path, redis_url):
    url, _ = redis_url
    r = trailscope(tmp_path / "home", "consume", "nope", "--from", f"{url}/ev", "--idle-exit",
                   "1")
    assert r.returncode == 1 and "no dataset named 'nope'" in r.stderr
    assert "Traceback" not in r.stderr

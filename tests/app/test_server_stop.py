"""Stopping the server (SIGTERM, as ``kill`` and supervisors do) while events stream in over
the API: it exits with status 0 (``local_server`` raises otherwise; before the wind-down about
one stop in three ended in ``FATAL: exception not rethrown`` and SIGABRT, status -6), every
acknowledged event is stored, no event is stored twice, and a sender that resends what got no
answer completes the dataset exactly."""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import urlsplit

import pytest
from trailscope.analytics.append import live_table
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.rollups import build
from trailscope.analytics.store import Store
from trailscope.app.localserver import local_server

from tests.app.streams_helpers import nyc_records
from tests.conftest import NYC

BATCH = 100
POSTERS = 6


class _Poster(threading.Thread):
    """Posts its batches in order until stopped or the server goes; remembers which batches
    got a 200 and which were sent without an answer."""

    def __init__(self, url: str, batches: list[list[dict]], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.batches, self.stop = batches, stop
        self.acked: list[int] = []
        self.unanswered: list[int] = []
        self.refused: list[tuple[int, int]] = []  # (batch, status) of an answer but 200

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        for k, batch in enumerate(self.batches):
            if self.stop.is_set():
                return
            try:
                conn.request("POST", "/api/v1/datasets/nyc/events", body=json.dumps(batch),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                self.unanswered.append(k)  # the server stopped meanwhile
                return
            if resp.status != 200:
                self.refused.append((k, resp.status))
                return
            self.acked.append(k)


def _stored_ids(home) -> tuple[set[str], int]:
    with Store(home / "trailscope.duckdb") as store:
        cur = store.cursor()
        rows = cur.execute("SELECT event_id FROM " + live_table("nyc")).fetchall()
        total = cur.execute("SELECT rows FROM datasets WHERE name = 'nyc'").fetchone()[0]
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "an event id stored twice"
    return set(ids), int(total)


@pytest.mark.parametrize("round_", [1, 2])
def test_sigterm_while_posting_stops_cleanly_and_keeps_every_acknowledged_event(tmp_path, round_):
    home = tmp_path / "home"
    home.mkdir()
    with Store(home / "trailscope.duckdb") as store:
        base = import_file(store, NYC, name="nyc", keep_duplicates=True).rows_kept
        build.after_import(store, "nyc")  # the summaries: every commit is folded into them
    events = nyc_records(POSTERS * 30 * BATCH)
    batches = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
    shares = [batches[p::POSTERS] for p in range(POSTERS)]
    stop = threading.Event()
    with local_server(home, stop_s=60) as url:
        posters = [_Poster(url, share, stop) for share in shares]
        for p in posters:
            p.start()
        deadline = time.monotonic() + 60
        while sum(len(p.acked) for p in posters) < 2 * POSTERS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(len(p.acked) for p in posters) >= 2 * POSTERS, "posts were not answered"
        time.sleep(1.5)  # commits and summary folds under way
        # leaving the block sends SIGTERM now, with posts in flight
    stop.set()
    for p in posters:
        p.join(30)
    assert not [p.refused for p in posters if p.refused]
    log = (home / "server.log").read_text()
    assert "FATAL" not in log and "terminate called" not in log, log[-2000:]

    acked = {e["event_id"] for p in posters for k in p.acked for e in p.batches[k]}
    unanswered = {e["event_id"] for p in posters for k in p.unanswered for e in p.batches[k]}
    stored, rows = _stored_ids(home)
    assert acked <= stored                      # nothing acknowledged was lost
    assert stored <= acked | unanswered         # nothing stored that was never sent
    assert rows == base + len(stored)           # the registry agrees with the stored events

    # the senders resend what got no answer to a fresh server: the dataset is then exact
    with local_server(home) as url:
        resend = [_Poster(url, [p.batches[k] for k in p.unanswered], threading.Event())
                  for p in posters if p.unanswered]
        for p in resend:
            p.start()
        for p in resend:
            p.join(60)
        assert all(not p.unanswered and not p.refused for p in resend)
    stored, rows = _stored_ids(home)
    assert stored == acked | unanswered
    assert rows == base + len(stored)

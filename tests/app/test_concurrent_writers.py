"""Three writers at once on one served workspace: API posts, ``trailscope consume`` (which
hands its batches to the server, as the server holds the DuckDB file) and a CLI import of
another dataset (also handed to the server). Exact final counts for each dataset, and the
events the API and the stream both sent are stored once."""

from __future__ import annotations

import json
import threading

from trailscope.analytics.append import live_table
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.store import Store
from trailscope.app.cli.remote import Server, post_events
from trailscope.app.localserver import local_server

from tests.app.streams_helpers import (
    nyc_records,
    redis_server,
    start_trailscope,
)
from tests.conftest import NYC, TAOBAO

TOKEN = "concurrent-writers-token"


def test_api_consumer_and_cli_import_at_once(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TRAILSCOPE_HOME", str(home))
    monkeypatch.setenv("TRAILSCOPE_API_TOKEN", TOKEN)  # the server, the CLI and the consumer
    with Store() as store:
        base = import_file(store, NYC, name="nyc", keep_duplicates=True).rows_kept
    events = nyc_records(9000)  # the same check-ins again, now as live events with ids
    by_api, by_stream = events[:6000], events[3000:]   # 3000 events sent by both
    distinct = len({e["event_id"] for e in by_api + by_stream})
    assert distinct == 9000

    with redis_server(tmp_path) as (url, client), local_server(home) as server_url:
        pipe = client.pipeline(transaction=False)
        for k, e in enumerate(by_stream):
            pipe.xadd("ev", {"event": json.dumps(e)})
            if k in (10, 4000):  # two events the server's write path refuses (its 400)
                pipe.xadd("ev", {"event": json.dumps({**e, "event_id": f"bad-{k}",
                                                      "lat": 123.0})})
        pipe.execute()
        server = Server(server_url, TOKEN)
        stored_by_api: list[int] = []
        errors: list[BaseException] = []

        def poster(part: list[dict]) -> None:
            try:
                for i in range(0, len(part), 100):
                    stored_by_api.append(post_events(server, "nyc", part[i:i + 100])["stored"])
                # the first batch again (a sender's retry): stored 0 times more
                stored_by_api.append(post_events(server, "nyc", part[:100])["stored"])
            except BaseException as exc:  # reported below
                errors.append(exc)

        consumer = start_trailscope(home, tmp_path / "consume.log", "consume", "nyc", "--from",
                                    f"{url}/ev", "--batch", "250", "--idle-exit", "3",
                                    "--json")
        importer = start_trailscope(home, tmp_path / "import.log", "import", str(TAOBAO),
                                    "--name", "tb", "--json")
        threads = [threading.Thread(target=poster, args=(by_api[k::2],)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        assert consumer.wait(timeout=300) == 0, (tmp_path / "consume.log").read_text()
        assert importer.wait(timeout=300) == 0, (tmp_path / "import.log").read_text()

        log = (tmp_path / "consume.log").read_text()
        assert "into dataset 'nyc' on the server at http://127.0.0.1:" in log  # the API path
        consumed = json.loads(log.strip().splitlines()[-1])
        imported = json.loads((tmp_path / "import.log").read_text().strip().splitlines()[-1])
        assert consumed["read"] == len(by_stream) + 2 and consumed["rejected"] == 2
        dead = client.xrange("ev:rejected")
        assert sorted(json.loads(d[1][b"event"])["event_id"] for d in dead) == \
            ["bad-10", "bad-4000"]
        assert all(d[1][b"field"] == b"lat" and b"out of range" in d[1][b"reason"]
                   for d in dead)
        # every distinct event stored by exactly one writer
        assert sum(stored_by_api) + consumed["stored"] == distinct
        assert consumed["stored"] + consumed["duplicates"] == len(by_stream)

        def rows(name: str) -> int:
            return int(server.expect("GET", f"/api/v1/datasets/{name}")["rows"])

        assert rows("nyc") == base + distinct
        assert rows("tb") == imported["rows_kept"] > 0
        assert imported["rows_read"] == sum(1 for _ in open(TAOBAO, encoding="latin-1"))

    # the server has stopped: the file itself agrees with what the API said
    with Store(read_only=True) as store:
        assert store.info("nyc").rows == base + distinct
        n = store.query_df(f"SELECT count(*) AS n, count(DISTINCT event_id) AS d "
                           f"FROM {live_table('nyc')}").iloc[0]
        assert int(n["n"]) == int(n["d"]) == distinct
        events_rows = store.query_df(f"SELECT count(*) AS n FROM {store.table('nyc')}")
        assert int(events_rows["n"][0]) == base + distinct
        assert int(store.query_df(f"SELECT count(*) AS n FROM {store.table('tb')}")["n"][0]) \
            == imported["rows_kept"]

"""The Live page's service on the real NYC slice: what arrived, whose top-10 changed, and the
background rebuild of the summaries once enough appended events are behind."""

from __future__ import annotations

from trailscope.analytics import append, schema
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.rollups import build, incremental
from trailscope.analytics.rollups import tables as rollup
from trailscope.app.services import jobs
from trailscope.app.services import live as svc
from trailscope.app.views import live as views
from trailscope.models import api

from tests.app.helpers import texts
from tests.conftest import NYC


def _events(n: int, user: str = "live-u") -> list[dict]:
    return [{"user_id": f"{user}{i % 3}", "item_id": f"live-item-{i}",
             "ts": f"2012-11-0{1 + i % 3}T12:{i % 60:02d}:00-04:00",
             "lat": 40.74 + i / 1e4, "lon": -73.99, "category": "Coffee Shop"}
            for i in range(n)]


def test_snapshot_before_and_after_appends(workspace):
    import_file(workspace, NYC, name="nyc")
    empty = svc.snapshot("nyc")
    assert empty.total == 0 and empty.feed.empty and len(empty.per_minute) == svc.MINUTES
    assert empty.known is None                    # no model: no explanation to offer
    words = " ".join(texts(views.how_to_send("nyc", empty.endpoint)))
    assert "/api/v1/datasets/nyc/events" in words and "curl" in words

    got = append.append(workspace, "nyc", append.validate(_events(5)))
    assert got.stored == 5
    snap = svc.snapshot("nyc")                    # a new stamp: not the memoised empty one
    assert snap.total == 5 and snap.rows == got.rows
    assert int(snap.per_minute[svc.EVENTS].sum()) == 5
    assert snap.feed[schema.ITEM].tolist()[0].startswith("live-item-")
    assert len(snap.newest) == 5 and snap.newest[schema.LAT].notna().all()
    fig = views.minutes_figure(snap.per_minute)
    assert sum(fig.data[0].y) == 5


def test_the_feed_offers_explanations_for_the_models_users_only(workspace):
    import_file(workspace, NYC, name="nyc")
    api.train(workspace, "nyc", "markov", log=lambda _m: None)
    known_user = sorted(svc._known("nyc") or [])[0]
    append.append(workspace, "nyc", append.validate(
        _events(2) + [{**_events(1)[0], "user_id": known_user}]))
    snap = svc.snapshot("nyc")
    assert snap.known and known_user in snap.known and "live-u0" not in snap.known
    table = views.feed_table("nyc", snap.feed, "feed", known=snap.known,
                             endpoint=snap.endpoint)
    explain = [a.href for a in _links(table) if a.children == "explain"]
    assert explain and all(f"user={known_user}" in h for h in explain)


def _links(node) -> list:
    """Every dcc.Link under ``node``."""
    found, stack = [], [node]
    while stack:
        n = stack.pop()
        if type(n).__name__ == "Link":
            found.append(n)
        kids = getattr(n, "children", None)
        stack.extend(kids if isinstance(kids, list) else [kids] if kids is not None
                     and not isinstance(kids, str) else [])
    return found


def test_top_changes_without_a_model_says_so(workspace):
    import_file(workspace, NYC, name="nyc")
    got = svc.top_changes("nyc")
    assert got.rows.empty and "No trained model" in got.note


def test_rebuild_runs_as_a_job_once_enough_events_are_behind(workspace, monkeypatch):
    import_file(workspace, NYC, name="nyc")
    build.after_import(workspace, "nyc")
    assert svc.rebuild_if_needed("nyc") is None          # nothing behind
    monkeypatch.setattr(incremental, "REBUILD_ROWS", 6)
    append.append(workspace, "nyc", append.validate(_events(8, "rb")))
    cur = workspace.cursor()
    assert incremental.behind_rows(cur, "nyc") == 8 and incremental.needs_rebuild(cur, "nyc")
    monkeypatch.setattr(incremental, "REBUILD_SPACING", 1e9)
    assert svc.rebuild_if_needed("nyc") is None          # due, but the last build was just now
    monkeypatch.setattr(incremental, "REBUILD_SPACING", 0.0)
    job = svc.rebuild_if_needed("nyc")
    assert job is not None
    snap = jobs.wait(job, timeout=300)
    assert snap["status"] == jobs.DONE, snap
    assert incremental.behind_rows(cur, "nyc") == 0 and rollup.fresh(cur, "nyc")
    rows = cur.execute("SELECT rows FROM datasets WHERE name = 'nyc'").fetchall()[0][0]
    assert cur.execute(f"SELECT events FROM {rollup.part('nyc', 'summary')}"
                       ).fetchall()[0][0] == rows
    assert svc.rebuild_if_needed("nyc") is None
    # the rebuilt sorted event table holds the appended events
    assert cur.execute(f"SELECT count(*) FROM {rollup.part('nyc', 'ev')} e JOIN "
                       f"{rollup.part('nyc', 'items')} i USING (item_idx) WHERE "
                       f"i.{schema.ITEM} LIKE 'live-item-%'").fetchall()[0][0] == 8

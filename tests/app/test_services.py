"""app/services.py against a real temporary workspace and slices of the real datasets."""

from __future__ import annotations

import pytest
from trailscope.analytics import schema
from trailscope.app.services import workspace as services

from tests.app.helpers import save_taobao as _save_events
from tests.app.helpers import slice_file as _slice
from tests.app.test_hostile_strings import HOSTILE, _drift, assert_safe
from tests.conftest import MOVIELENS, TAOBAO


def test_catalog_default_and_resolve(workspace):
    assert services.dataset_names() == [] and services.default_dataset() is None
    _save_events(workspace, "first", 500)
    _save_events(workspace, "second", 300)
    assert services.dataset_names() == ["second", "first"]  # newest first
    assert services.default_dataset() == "second"
    assert services.resolve_dataset(None) == "second"
    assert services.resolve_dataset("nope") == "second"
    assert services.resolve_dataset("first") == "first"
    services.set_default_dataset("first")
    assert services.default_dataset() == "first"
    services.set_default_dataset("gone")  # a configured default that does not exist
    assert services.default_dataset() == "second"
    frame = services.list_datasets()
    assert frame.set_index("name").loc["first", "rows"] == 500


def test_dataset_info_is_memoised_and_reimport_invalidates(workspace, monkeypatch):
    _save_events(workspace, "ml", 1000)
    calls = []
    real_info = workspace.info
    monkeypatch.setattr(workspace, "info", lambda name: calls.append(name) or real_info(name))
    first = services.dataset_info("ml")
    again = services.dataset_info("ml")
    assert first.rows == again.rows == 1000
    assert calls == ["ml"]  # the second call came from the cache
    monkeypatch.setattr(workspace, "info", real_info)
    _save_events(workspace, "ml", 400, replace=True)  # same name, new import time
    assert services.dataset_info("ml").rows == 400
    with pytest.raises(KeyError, match="no dataset named 'zzz'"):
        services.dataset_info("zzz")


def test_memoize_dataset_keys_on_arguments(workspace):
    _save_events(workspace, "ml", 200)
    calls = []

    @services.memoize_dataset
    def users_over(name: str, min_events: int) -> int:
        calls.append(min_events)
        df = services.get_store().events(name)
        counts = df.groupby(schema.USER).size()
        return int((counts >= min_events).sum())

    assert users_over("ml", 1) == users_over("ml", 1)
    assert users_over("ml", 5) <= users_over("ml", 1)
    assert calls == [1, 5]


def test_drop(workspace):
    _save_events(workspace, "a", 100)
    services.drop_dataset("a")
    assert services.dataset_names() == []


# an upload of 2,000 lines of a real file: the Taobao slice, and MovieLens 100K (complete file)
@pytest.mark.parametrize(("src", "fmt", "sep"), [
    pytest.param(TAOBAO, "taobao", ",", id="taobao"),
    pytest.param(MOVIELENS, "movielens", "\t", id="movielens", marks=pytest.mark.full_data)])
def test_import_uploaded_slice(workspace, tmp_path, src, fmt, sep):
    path = _slice(src, tmp_path / f"{fmt}_2k.data", 2000)
    lines = path.read_text(encoding="latin-1").splitlines()
    sn = services.sniff(path)
    assert sn.format == fmt
    assert {schema.USER, schema.ITEM, schema.TS} <= set(sn.mapping)
    assert len(sn.preview) > 0
    report = services.import_uploaded(path, "ml2k", "auto", sn.mapping, False, False)
    assert report["name"] == "ml2k"
    assert report["rows_read"] == report["rows_kept"] == len(lines)
    assert report["users"] == len({ln.split(sep)[0] for ln in lines})
    assert services.dataset_info("ml2k").rows == len(lines)
    assert report["summaries_s"] > 0  # built by the import: the first page view reads them
    from trailscope.analytics.rollups import tables as rollup
    with services.get_store().cursor() as cur:
        assert rollup.info(cur, "ml2k")["rows"] == len(lines)
    assert services.default_dataset() == "ml2k"

    with pytest.raises(services.ServiceError, match="already exists.*Replace"):
        services.import_uploaded(path, "ml2k", "auto", sn.mapping, False, False)
    with pytest.raises(services.ServiceError, match="invalid dataset name"):
        services.import_uploaded(path, "../evil", "auto", sn.mapping, False, False)
    small = _slice(src, tmp_path / f"{fmt}_500.data", 500)
    again = services.import_uploaded(small, "ml2k", fmt, None, True, False)
    assert again["rows_kept"] == 500
    assert services.dataset_info("ml2k").rows == 500  # the cache followed the re-import


def test_import_uploaded_reports_rejections_and_bad_files(workspace, tmp_path):
    from trailscope.analytics.ingest.pipeline import IngestError

    lines = TAOBAO.read_text().splitlines()[:2000]
    # Damage two rows past the head the importer sniffs (500 rows), so the format is still
    # recognised; line numbers in the report are 1-based and the file has no header.
    lines[1500] = ",".join(["", *lines[1500].split(",")[1:]])  # no user id
    lines[1800] = ",".join([*lines[1800].split(",")[:4], "not-a-time"])  # unreadable time
    path = tmp_path / "taobao_bad.csv"
    path.write_text("\n".join(lines) + "\n")
    assert services.sniff(path).format == "taobao"
    report = services.import_uploaded(path, "tb", "auto", None, False, False)
    assert report["rows_read"] == 2000
    assert report["rows_kept"] + report["rows_rejected"] == 2000
    assert report["rejected_by_reason"].get("missing_user") == 1
    assert report["examples"]["missing_user"] == [1501]
    assert report["rejected_by_reason"].get("bad_time") == 1
    assert report["examples"]["bad_time"] == [1801]
    assert services.dataset_info("tb").rows == report["rows_kept"]

    # Damage inside the sniffed head: auto-detection gives up on Taobao, naming it explicitly
    # (the Data page's format dropdown) imports it with the bad row rejected.
    head = lines[:300]
    head[20] = ",".join([*head[20].split(",")[:4], "not-a-time"])
    path2 = tmp_path / "taobao_head_bad.csv"
    path2.write_text("\n".join(head) + "\n")
    report2 = services.import_uploaded(path2, "tb_head", "taobao", None, False, False)
    assert report2["rows_read"] == 300 and report2["examples"]["bad_time"] == [21]

    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 40)
    with pytest.raises((IngestError, services.ServiceError)):
        services.import_uploaded(junk, "junk", "auto", None, False, False)
    assert "junk" not in services.dataset_names()


def test_imports_run_as_jobs_with_their_report(workspace, tmp_path):
    from trailscope.app.services import imports, jobs

    path = _slice(TAOBAO, tmp_path / "taobao_1k.csv", 1000)
    job_id = imports.start_import(path, "ml1k", "auto", None)
    assert jobs.wait(job_id, 120)["kind"] == "import"
    state = imports.import_state(job_id)
    assert state["status"] == "done" and state["fraction"] == 1.0, state
    assert state["report"]["rows_kept"] == 1000 and state["report"]["name"] == "ml1k"
    assert services.dataset_info("ml1k").rows == 1000
    # the Overview's periodicity (and forecast, when the span allows one) were fitted by the
    # import job and kept as files, so the first view reads them
    assert state["report"]["prefit_s"] is not None
    assert any((services.get_store().path.parent / "cache" / "periods").glob("*"))
    clash = imports.start_import(path, "ml1k", "auto", None)
    jobs.wait(clash, 60)
    state = imports.import_state(clash)
    assert state["status"] == "error" and not state["unexpected"]
    assert "already exists" in state["error"] and state["report"] is None
    assert imports.cancel_import(clash) is False  # finished jobs cannot be cancelled
    with pytest.raises(services.ServiceError, match="import the file again"):
        imports.import_state("feedbeef")


# -- interest drift (Users page, `trailscope aggregate drift`) -----------------------------
@pytest.fixture()
def drift_ws(workspace, tmp_path):
    """``nyc`` (the NYC slice), ``nocat`` (the same check-ins with the category columns
    dropped: a SNAP-like file, coordinates only) and ``plain`` (Taobao slice without
    categories: neither)."""
    from trailscope.analytics.ingest.pipeline import import_file

    from tests.analytics.test_drift_basis import write_without_categories
    from tests.conftest import NYC

    import_file(workspace, NYC, name="nyc")
    import_file(workspace, write_without_categories(tmp_path / "nocat.csv"), name="nocat")
    workspace.save_dataset(
        "plain", "SELECT CAST(u AS VARCHAR), CAST(i AS VARCHAR), to_timestamp(t)::TIMESTAMP, "
        "NULL::DOUBLE, NULL::DOUBLE, b, NULL, NULL::DOUBLE, 480 FROM read_csv(?, header=false, "
        "columns={'u': 'BIGINT', 'i': 'BIGINT', 'c': 'BIGINT', 'b': 'VARCHAR', 't': 'BIGINT'})",
        source=str(TAOBAO), fmt="taobao", report={}, params=[str(TAOBAO)])
    return workspace


def test_drift_summary_says_its_basis_and_is_json(drift_ws):
    import json

    import h3
    from trailscope.app.services import users

    got = {name: users.drift_summary(name) for name in ("nyc", "nocat", "plain")}
    for s in got.values():
        assert json.loads(json.dumps(s, allow_nan=False)) == s
    nyc, nocat, plain = got["nyc"], got["nocat"], got["plain"]
    assert (nyc["basis"], nocat["basis"], plain["basis"]) == ("category", "zone", None)
    assert "H3 resolution 7" in nocat["basis_note"] and "no categories" in nocat["basis_note"]
    assert plain["users"] == [] and "no categories and no coordinates" in plain["basis_note"]
    for s in (nyc, nocat):
        assert s["min_events_per_window"] == users.DRIFT_MIN_EVENTS and s["freq"] == "month"
        assert len(s["users"]) > 300                      # of the slice's 361 users
        drift = [u["drift"] for u in s["users"]]
        assert drift == sorted(drift, reverse=True) and 0 <= drift[-1] <= drift[0] <= 1
        for u in s["users"]:
            assert u["windows"] == u["pairs"] + 1
            assert u["events"] >= u["windows"] * users.DRIFT_MIN_EVENTS
        pairs = {u["user"]: u["pairs"] for u in s["users"]}
        assert len(s["most_changed"]) == 12
        assert all(pairs[u] >= users.DRIFT_MIN_PAIRS for u in s["most_changed"])
        assert [x["segment"] for x in s["segments"]] == ["light", "medium", "heavy"]
    cells = [u["gained"] for u in nocat["users"] if u["gained"]]
    assert len(cells) > 300 and all(h3.get_resolution(c) == 7 for c in cells)
    assert users.drift_summary("nyc", limit=5)["users"] == nyc["users"][:5]


def test_most_changed_users_rest_on_enough_events(drift_ws):
    """Each listed user's evidence, recounted from the stored events: their months with at
    least the minimum of categorised events, and those months' events."""
    from trailscope.app.services import users

    top = users.top_changers("nyc")
    ev = drift_ws.events("nyc").dropna(subset=[schema.CATEGORY])
    month = ev[schema.TS].dt.to_period("M")
    for r in top.itertuples():
        counts = ev[ev[schema.USER] == r.user_id].groupby(month).size()
        kept = counts[counts >= users.DRIFT_MIN_EVENTS]
        assert (r.windows, r.pairs, r.events) == (len(kept), len(kept) - 1, kept.sum())
        assert r.pairs >= users.DRIFT_MIN_PAIRS
    assert top["mean_js"].is_monotonic_decreasing and top["mean_js"].between(0, 1).all()
    d = users.drift("nyc").drift
    assert d.loc[d[schema.USER].isin(top[schema.USER]), ["prev_events", "events"]].min().min() \
        >= users.DRIFT_MIN_EVENTS


def test_users_page_shows_the_basis_and_the_evidence(drift_ws):
    import trailscope.app.main  # noqa: F401 (creates the Dash app, which registers app/pages)
    from trailscope.app.pages import users as page
    from trailscope.app.services import users

    from tests.app.helpers import texts

    text = " ".join(texts(page.layout(dataset="nocat")))
    assert "H3 resolution 7" in text and "because the data has no categories" in text
    assert "event categories" in " ".join(texts(page.layout(dataset="nyc")))
    table = " ".join(texts(page.show_changers("nocat")))
    first = users.top_changers("nocat").iloc[0]
    assert f"{first['windows']} windows, {first['pairs']} pairs, {first['events']:,} events" \
        in table
    assert "area at 40." in table                          # zones named by their centres
    fig = page.draw_drift(str(first[schema.USER]), "nocat")
    names = {t.name for t in fig.data}
    assert {"drift", "raw drift (unshrunk)", "median drift, all users"} <= names
    assert any(n.startswith("area at 40.") for n in names)
    assert "no categories and no coordinates" in " ".join(texts(page.show_changers("plain")))
    fig = page.draw_drift(str(drift_ws.events("plain")[schema.USER].iloc[0]), "plain")
    assert "no categories and no coordinates" in fig.layout.annotations[0].text


@pytest.mark.parametrize("hostile", range(len(HOSTILE)))
def test_drift_figure_escapes_hostile_strings(hostile):
    """app/views/drift.py's builder, as tests/app/test_hostile_strings.py checks the others:
    a hostile category or zone name is escaped wherever the figure shows it."""
    from trailscope.app.views import drift as drift_views

    s = HOSTILE[hostile]
    prof, dr, ref = _drift(s)
    assert_safe(drift_views.drift_figure(prof, dr, ref), s, True)
    shrunk = dr.assign(shrunk_js=[0.05, 0.1], prev_events=[4, 4], events=[4, 4])
    zones = prof.rename(columns={schema.CATEGORY: "zone"})
    assert_safe(drift_views.drift_figure(zones, shrunk, ref, "week", "zone", {s: s}), s, True)

"""The Dash app shell and pages through the Flask test client and direct layout calls."""

from __future__ import annotations

import json
from typing import Any

import dash
import pytest
from trailscope.app import layout
from trailscope.app.views import data as data_views
from trailscope.app.views import ids

from tests.app.helpers import save_taobao as _save_events
from tests.app.helpers import texts


@pytest.fixture()
def client(workspace):
    from trailscope.app.main import server

    return server.test_client()


def _texts(component: Any) -> list[str]:
    return texts(component)


def _page(path: str) -> dict:
    return next(p for p in dash.page_registry.values() if p["path"] == path)


def test_pages_are_registered_on_the_fixed_paths():
    import trailscope.app.main  # noqa: F401 (creates the app, which loads app/pages)

    assert sorted(p["path"] for p in dash.page_registry.values()) == sorted(
        path for _, _, path in ids.PAGES)
    assert "/live" in {path for _, _, path in ids.PAGES}


def test_every_page_and_the_root_redirect(client):
    for _, _, path in ids.PAGES:
        r = client.get(path + "?dataset=whatever")
        assert r.status_code == 200 and b"react-entry-point" in r.data
    r = client.get("/?dataset=ml")
    assert r.status_code == 302 and r.headers["Location"] == "/overview?dataset=ml"
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"] == "/overview"


def test_js_and_css_are_served_locally(client):
    html = client.get("/data").data.decode()
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    assert "/assets/style.css" in html and "/assets/upload.js" in html
    assert client.get("/assets/upload.js").status_code == 200
    assert client.get("/assets/logo.svg").status_code == 200


def test_no_duplicate_callback_outputs(client):
    deps = json.loads(client.get("/_dash-dependencies").data)
    outputs = [d["output"] for d in deps]
    assert len(outputs) == len(set(outputs))
    joined = " ".join(outputs)
    for component in (ids.DATASET_DROPDOWN, ids.IMPORT_RESULT, ids.DATASETS_TABLE):
        assert component in joined


def test_search_helpers():
    assert layout.dataset_from_search("?dataset=nyc&user=3") == "nyc"
    assert layout.dataset_from_search("") is None
    assert layout.search_with_dataset("?user=3&dataset=a", "b") == "?dataset=b&user=3"
    assert layout.search_with_dataset("?dataset=a", None) == ""
    assert layout.search_with_dataset(None, "x y") == "?dataset=x+y"


def test_overview_cards_show_registry_numbers(workspace):
    info = _save_events(workspace, "tb", 1500)
    texts = _texts(_page("/overview")["layout"](dataset="tb"))
    assert f"{info.rows:,}" in texts and f"{info.users:,}" in texts
    assert f"{info.items:,}" in texts and "Time span" in texts
    missing = " ".join(_texts(_page("/overview")["layout"](dataset="nope")))
    assert "no dataset named 'nope'" in missing and f"{info.rows:,}" in missing


def test_pages_without_data_say_so(workspace):
    for _, label, path in ids.PAGES:
        if path == "/data":
            continue
        texts = " ".join(_texts(_page(path)["layout"]()))
        assert label in texts and "No dataset yet" in texts


def test_suggest_name():
    assert data_views.suggest_name("u.data", []) == "u"
    assert data_views.suggest_name("my file (2).csv.gz", ["my_file_2"]) == "my_file_2_2"
    assert data_views.suggest_name("___.csv", []) == "dataset"


def test_import_report_rendering_escapes_and_lists_reasons():
    report = {"name": "x", "rows_read": 10, "rows_kept": 7, "rows_rejected": 3,
              "rejected_by_reason": {"bad_time": 2, "missing_user": 1, "duplicate": 0},
              "examples": {"bad_time": [4, 9], "missing_user": [2]},
              "flags": {"ts_in_future": 1, "ts_outlier": 0}, "users": 3, "items": 5,
              "time_min": "2017-11-25T00:00:00", "time_max": "2017-12-03T00:00:00",
              "has_coordinates": False, "extra": {}}
    texts = " ".join(_texts(data_views.import_report(report)))
    assert "4, 9" in texts and "bad_time" in texts and "duplicate" not in texts
    assert "1 rows with a timestamp in the future" in texts
    assert "ts_outlier" not in texts and "far from the rest" not in texts


def test_main_sets_default_dataset_and_runs(workspace, monkeypatch):
    import trailscope.app.main as main_mod

    _save_events(workspace, "older", 100)
    _save_events(workspace, "newer", 100)
    runs = []

    class Dispatcher:
        def shutdown(self, cancel_pending: bool, timeout: float) -> None:
            runs.append("shutdown")

    class Server:  # what waitress.create_server returns; run() would block
        task_dispatcher = Dispatcher()

        def run(self) -> None:
            runs.append("run")

        def close(self) -> None:
            runs.append("close")

    def create_server(wsgi, **kw):
        runs.append((wsgi, kw["host"], kw["port"]))
        return Server()

    monkeypatch.setattr(main_mod.waitress, "create_server", create_server)
    args = main_mod._parse(["--port", "8123", "--dataset", "older"])
    main_mod.main(host=args.host, port=args.port, dataset=args.dataset)
    assert runs == [(main_mod.server, "127.0.0.1", 8123), "run", "close", "shutdown"]
    from trailscope.app.services import workspace as services

    assert services.default_dataset() == "older"  # not the newest: the configured one

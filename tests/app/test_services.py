"""app/services.py against a real temporary workspace and slices of the real datasets."""

from __future__ import annotations

import pytest
from trailscope.analytics import schema
from trailscope.app.services import workspace as services

from tests.app.helpers import save_taobao as _save_events
from tests.app.helpers import slice_file as _slice
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
    clash = imports.start_import(path, "ml1k", "auto", None)
    jobs.wait(clash, 60)
    state = imports.import_state(clash)
    assert state["status"] == "error" and not state["unexpected"]
    assert "already exists" in state["error"] and state["report"] is None
    assert imports.cancel_import(clash) is False  # finished jobs cannot be cancelled
    with pytest.raises(services.ServiceError, match="import the file again"):
        imports.import_state("feedbeef")

"""app/services/cache.py, the one caching policy, and the services memoising through it:
loaded models (services.models) and explanations run as jobs (services.explain)."""

from __future__ import annotations

import pandas as pd
import pytest
from trailscope.app.services import cache, jobs
from trailscope.app.services import explain as explain_service
from trailscope.app.services import models as model_service


def test_memo_is_bounded_least_recently_used_first():
    memo = cache.Memo("test-lru", 2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1          # "a" is now the most recently used
    memo.put("c", 3)
    assert "b" not in memo and memo.get("a") == 1 and memo.get("c") == 3 and len(memo) == 2
    calls = []
    assert memo.get_or_compute("none", lambda: calls.append(1)) is None
    assert memo.get_or_compute("none", lambda: calls.append(1)) is None
    assert calls == [1]                 # a None result is remembered too
    cache.clear_all()
    assert len(memo) == 0
    with pytest.raises(ValueError, match="at least one entry"):
        cache.Memo("empty", 0)


def test_isolated_memo_hands_out_copies():
    memo = cache.Memo("test-isolated", 4, isolate=True)
    first = memo.get_or_compute("k", lambda: pd.DataFrame({"x": [1, 2]}))
    first.loc[0, "x"] = 99              # a caller changing its frame ...
    again = memo.get("k")
    assert again["x"].tolist() == [1, 2]  # ... never changes what the next caller gets
    shared = cache.Memo("test-shared", 4)
    obj = object()
    assert shared.get_or_compute("k", lambda: obj) is obj and shared.get("k") is obj


def test_file_stamp_follows_the_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"1")
    before = cache.file_stamp(path)
    path.write_bytes(b"22")
    import os

    os.utime(path, ns=(before[1] + 10**9, before[1] + 10**9))
    assert cache.file_stamp(path) != before and cache.file_stamp(path)[0] == str(path)


def _city(store, seed: int = 7, replace: bool = False) -> None:
    """Dataset ``ml``: the generated sample city, 30 users (no data files needed)."""
    from trailscope.analytics.sample.generate import import_sample

    import_sample(store, "ml", users=30, seed=seed, replace=replace)


@pytest.fixture()
def markov(workspace, monkeypatch):
    """Dataset ``ml`` (the generated city) with a trained markov model; counts loads."""
    from trailscope.models import api

    _city(workspace)
    model_id = api.train(workspace, "ml", model="markov", log=lambda _m: None).model_id
    loads = []
    real = api.load
    monkeypatch.setattr(api, "load", lambda *a, **kw: loads.append(a[1:]) or real(*a, **kw))
    return {"store": workspace, "model_id": model_id, "loads": loads}


def test_models_load_once_and_reload_after_a_reimport(markov):
    mid = markov["model_id"]
    user = model_service.model_users("ml", mid, limit=1)[0]["user"]
    first = model_service.recommend("ml", user, k=5, model_id=mid)
    again = model_service.recommend("ml", user, k=5, model_id=mid)
    assert first == again and len(first["items"]) == 5
    assert markov["loads"] == [("ml", mid)]      # the second request used the memoised model
    assert model_service.loaded_model("ml", mid) is model_service.loaded_model("ml", mid)
    _city(markov["store"], seed=8, replace=True)  # other data under the same name
    from trailscope.models.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="Retrain"):  # re-checked, not served stale
        model_service.loaded_model("ml", mid)


def test_explanations_run_as_jobs_and_are_memoised(markov):
    mid = markov["model_id"]
    user = model_service.model_users("ml", mid, limit=1)[0]["user"]
    item = model_service.recommend("ml", user, k=3, model_id=mid)["items"][0]["item_id"]
    job_id = explain_service.start("ml", user, item, mid)
    snap = jobs.wait(job_id, 120)
    assert snap["kind"] == "explain" and snap["status"] == jobs.DONE, snap
    state = explain_service.job(job_id)
    assert state["status"] == "done" and state["progress"] == 1.0
    assert state["request"] == {"dataset": "ml", "user": user, "item": item, "model_id": mid}
    ex = explain_service.cached("ml", mid, user, item)
    assert ex is not None and ex.item_id == str(item)
    again = jobs.wait(explain_service.start("ml", user, item, mid), 60)
    assert again["progress"]["message"] == "from cache" and jobs.result(again["id"]) is ex
    assert markov["loads"] == [("ml", mid)]      # one load for recommend and explanation
    bad = explain_service.job(jobs.wait(explain_service.start("ml", "no-such-user", item,
                                                              mid), 60)["id"])
    assert bad["status"] == "error" and "no-such-user" in bad["error"]
    with pytest.raises(explain_service.ServiceError, match="click the item again"):
        explain_service.job("feedbeef")


def test_batch_export_runs_as_a_job_and_hands_its_zip_out_once(markov):
    import io
    import zipfile

    mid = markov["model_id"]
    user = model_service.model_users("ml", mid, limit=1)[0]["user"]
    with pytest.raises(explain_service.ServiceError, match="at least one user"):
        explain_service.start_batch("ml", " ,\n", "html", mid)
    job_id = explain_service.start_batch("ml", f"{user}, no-such-user", "html", mid)
    snap = jobs.wait(job_id, 120)
    assert snap["kind"] == "explain" and snap["status"] == jobs.DONE, snap
    state = explain_service.batch_state(job_id)
    assert state["status"] == "done" and (state["written"], state["failed"]) == (1, 1)
    zf = zipfile.ZipFile(io.BytesIO(state["zip"]))
    names = zf.namelist()
    assert sorted(n for n in names if not n.endswith(".js")) == ["failures.txt",
                                                                 f"ml-{user}.html"]
    # HTML reports share one copy of the plotting library, zipped beside them
    assert "plotly.min.js" in names
    assert zf.getinfo(f"ml-{user}.html").file_size < 1_000_000
    assert markov["loads"] == [("ml", mid)]      # one load for the whole batch
    with pytest.raises(explain_service.ServiceError, match="export the batch again"):
        explain_service.batch_state(job_id)      # handed out once, then forgotten


def test_a_batch_export_stops_when_cancelled(workspace, monkeypatch):
    import threading
    import time

    started = threading.Event()

    def slow_batch(name, users, fmt, model_id, on_user=None):
        for i in range(1000):  # stands in for many slow reports
            on_user(i, 1000, f"u{i}")
            started.set()
            time.sleep(0.01)
        return b"", {"written": [], "failed": {}}

    monkeypatch.setattr(explain_service, "batch_zip", slow_batch)
    job_id = explain_service.start_batch("ml", "a, b", "html", "m")
    assert started.wait(30)
    assert explain_service.batch_state(job_id)["status"] == "running"
    assert explain_service.cancel(job_id) is True
    assert jobs.wait(job_id, 30)["status"] == jobs.CANCELLED
    state = explain_service.batch_state(job_id)
    assert state["status"] == "cancelled" and state["cancelling"] and state["zip"] is None


def test_forecasts_are_kept_as_files_under_their_inputs(workspace):
    """The Overview's forecast fit (and its periodicity search) is kept in the workspace
    folder under a digest of its inputs: after the in-memory memo is cleared the same answer
    comes from the file, a different horizon is another file, a damaged file is fitted
    again."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.app.services import analytics as svc

    from tests.conftest import NYC

    import_file(workspace, NYC, name="nyc")
    folder = workspace.path.parent / "cache" / "forecasts"
    first = svc.forecast("nyc", "day")
    files = sorted(folder.glob("*.pkl"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    cache.clear_all()
    again = svc.forecast("nyc", "day")
    assert files[0].stat().st_mtime_ns == stamp  # read, not written again
    pd.testing.assert_frame_equal(again.forecast, first.forecast)
    pd.testing.assert_frame_equal(again.backtest, first.backtest)
    svc.forecast("nyc", "day", horizon=7)
    assert len(list(folder.glob("*.pkl"))) == 2
    files[0].write_bytes(b"not a pickle")
    cache.clear_all()
    refit = svc.forecast("nyc", "day")
    pd.testing.assert_frame_equal(refit.forecast, first.forecast)
    assert files[0].read_bytes() != b"not a pickle"
    found = svc.dominant_periods("nyc", "hour")
    assert len(list((workspace.path.parent / "cache" / "periods").glob("*.pkl"))) == 1
    cache.clear_all()
    pd.testing.assert_frame_equal(svc.dominant_periods("nyc", "hour"), found)


def test_a_file_memo_keeps_its_newest_files(tmp_path):
    memo = cache.FileMemo("things", 2)
    for i in range(4):
        assert memo.get_or_compute(tmp_path, f"key {i}", lambda i=i: i * 10) == i * 10
    assert len(list((tmp_path / "cache" / "things").glob("*.pkl"))) == 2
    assert memo.get_or_compute(tmp_path, "key 3", lambda: -1) == 30  # the newest: read back


def test_an_import_can_prefit_the_overview(workspace):
    """``prefit_overview`` leaves the forecast (at the page's default granularity) and the
    periodicity in their file memos, so the first view reads them."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.app.services import analytics as svc

    from tests.conftest import NYC

    import_file(workspace, NYC, name="nyc")
    assert svc.forecast_freq("nyc") in svc.FORECAST_FREQS
    assert svc.prefit_overview("nyc") > 0
    folder = workspace.path.parent / "cache"
    kept = {kind: list((folder / kind).glob("*.pkl")) for kind in ("forecasts", "periods")}
    assert all(len(files) == 1 for files in kept.values())
    stamps = {f: f.stat().st_mtime_ns for files in kept.values() for f in files}
    cache.clear_all()
    svc.forecast("nyc", svc.forecast_freq("nyc"))
    svc.dominant_periods("nyc", "hour")
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # read, not fitted again

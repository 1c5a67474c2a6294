"""app/services/jobs.py: real short trainings on the first 8,000 events of the Taobao slice
(tests/data) in a temp workspace, and the runner's pools, errors and bounds on small plain
targets.

Each test uses its own JobRunner so jobs of one test never queue behind another's.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from trailscope.app.services import jobs

from tests.app.helpers import slice_file
from tests.conftest import TAOBAO

ROWS = 8000  # 724 events of 35 users and 103 items after the 5-core filter
GRU = {"hidden": 16, "batch_size": 16}   # 38 training windows -> 3 steps an epoch


@pytest.fixture()
def tb(store, tmp_path):
    """The workspace with dataset ``tb``: the first 8,000 events of the Taobao slice."""
    from trailscope.analytics.ingest.pipeline import import_file

    path = slice_file(TAOBAO, tmp_path / "taobao_8k.csv", ROWS)
    report = import_file(store, path, name="tb")
    assert store.info("tb").rows == ROWS, report
    return store


def _poll(runner: jobs.JobRunner, job_id: str, until, timeout: float = 60.0) -> list[dict]:
    """Snapshots taken every 20 ms until ``until(snapshot)`` holds; fails on timeout."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = runner.snapshot(job_id)
        seen.append(snap)
        if until(snap):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"condition not reached in {timeout} s; last snapshot {seen[-1]}")


def test_markov_job_finishes_with_a_checkpoint_and_the_data_report(tb):
    from trailscope.models import api

    runner = jobs.JobRunner()
    job_id = runner.start(jobs.training_job(tb, "tb", "markov"))
    snap = runner.wait(job_id, timeout=60)
    assert snap["status"] == jobs.DONE and not snap["active"], snap
    assert snap["fraction"] == 1.0 and snap["plan"] == {}   # a count model has no epochs
    assert snap["loss"] == [] and snap["valid"] == []
    assert sum("iterative filter" in m for m in snap["messages"]) == 1, snap["messages"]
    assert any(m.startswith("saved markov-") for m in snap["messages"])
    mid = snap["summary"]["model_id"]
    listed = api.list_models(tb, "tb")
    assert [m["model_id"] for m in listed] == [mid]
    assert snap["summary"]["metrics"]["ndcg@10"] == pytest.approx(listed[0]["ndcg@10"])
    assert snap["meta"]["dataset"] == "tb" and snap["meta"]["model"] == "markov"
    assert runner.result(job_id).model_id == mid
    assert runner.cancel(job_id) is False          # nothing left to cancel
    assert runner.jobs(dataset="tb")[0]["id"] == job_id
    assert runner.jobs(dataset="other") == [] and runner.jobs(active_only=True) == []


def test_gru_one_epoch_reports_steps_loss_and_validation(tb):
    runner = jobs.JobRunner()
    job_id = runner.start(jobs.training_job(tb, "tb", "gru", epochs=1, **GRU))
    seen = _poll(runner, job_id, lambda s: not s["active"])
    snap = seen[-1]
    assert snap["status"] == jobs.DONE, snap
    assert snap["plan"] == {"train": 1} and snap["meta"]["hidden"] == 16
    xs = [p[0] for p in snap["loss"]]
    steps = len(xs)
    assert steps >= 3 and xs == sorted(xs) and 0 < xs[0] < xs[-1] == pytest.approx(1.0)
    assert all(p[1] > 0 for p in snap["loss"])     # a softmax loss over ~100 items
    assert len(snap["valid"]) == 1 and snap["valid"][0][0] == 1.0
    # the validation point of the curve is the metric the checkpoint kept
    assert snap["valid"][0][1] == pytest.approx(snap["summary"]["valid"]["ndcg@10"])
    fractions = [s["fraction"] for s in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert runner.result(job_id).history[0]["epoch"] == 1


def test_cancel_stops_a_running_gru_and_keeps_its_best_epoch(tb):
    from trailscope.models import api

    runner = jobs.JobRunner()
    job = jobs.training_job(tb, "tb", "gru", epochs=300, patience=1000, hidden=16,
                            batch_size=4)
    job_id = runner.start(job)
    _poll(runner, job_id, lambda s: len(s["valid"]) >= 1)   # one epoch done, more to come
    assert runner.snapshot(job_id)["status"] == jobs.RUNNING
    t0 = time.monotonic()
    assert runner.cancel(job_id) is True
    assert runner.snapshot(job_id)["cancel_requested"] is True
    snap = runner.wait(job_id, timeout=60)
    assert snap["status"] == jobs.CANCELLED and not snap["active"], snap
    assert time.monotonic() - t0 < 30                       # stopped, not trained to the end
    epochs_done = len(snap["valid"])
    assert 1 <= epochs_done < 300
    assert snap["fraction"] < 1.0
    res = runner.result(job_id)
    assert res.cancelled and res.model_id == snap["summary"]["model_id"]
    listed = {m["model_id"]: m for m in api.list_models(tb, "tb")}
    assert listed[res.model_id]["cancelled"] is True
    assert len(res.history) == epochs_done
    # nothing is still training in the background
    assert not runner.jobs(active_only=True)


def test_a_queued_job_waits_and_a_cancelled_queued_job_never_runs(tb):
    from trailscope.models import api

    runner = jobs.JobRunner(max_running=1)
    long_id = runner.start(jobs.training_job(tb, "tb", "gru", epochs=300, patience=1000,
                                             hidden=16, batch_size=4))
    _poll(runner, long_id, lambda s: s["status"] == jobs.RUNNING and s["loss"])
    queued = runner.start(jobs.training_job(tb, "tb", "pop"))
    dropped = runner.start(jobs.training_job(tb, "tb", "markov"))
    time.sleep(0.3)
    assert runner.snapshot(queued)["status"] == jobs.QUEUED
    assert {s["id"] for s in runner.jobs(active_only=True)} == {long_id, queued, dropped}
    assert runner.cancel(dropped) is True
    runner.cancel(long_id)
    assert runner.wait(long_id, 60)["status"] == jobs.CANCELLED
    after = runner.wait(queued, 60)
    assert after["status"] == jobs.DONE and after["summary"]["model_id"].startswith("pop-")
    gone = runner.wait(dropped, 60)
    assert gone["status"] == jobs.CANCELLED and gone["events"] == 0 and gone["started"] is None
    assert not any(m["model"] == "markov" for m in api.list_models(tb, "tb"))


def test_failures_are_reported_not_raised(tb):
    runner = jobs.JobRunner()
    job_id = runner.start(jobs.training_job(tb, "no_such_data", "pop"))
    snap = runner.wait(job_id, 60)
    assert snap["status"] == jobs.FAILED and "no_such_data" in snap["error"]
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        jobs.training_job(tb, "tb", "nope")
    with pytest.raises(jobs.JobNotFound, match="start the training again"):
        runner.snapshot("feedbeef")


def test_the_loss_curve_stays_bounded():
    """A job with many steps keeps at most MAX_POINTS loss points, merged in order."""
    def target(progress, cancel, log):
        for step in range(1, 5001):
            progress({"phase": "train", "epoch": 1, "step": step, "steps": 5000,
                      "loss": 10.0 - step / 1000, "valid": None})
        log("finished")
        return "ok"

    runner = jobs.JobRunner()
    snap = runner.wait(runner.start(jobs.Job(target, plan={"train": 1})), 30)
    assert snap["status"] == jobs.DONE and snap["messages"] == ["finished"]
    assert jobs.MAX_POINTS // 2 <= len(snap["loss"]) <= jobs.MAX_POINTS
    xs, ys = [p[0] for p in snap["loss"]], [p[1] for p in snap["loss"]]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)
    assert runner.result(snap["id"]) == "ok" and snap["events"] == 5000


def test_kinds_run_in_their_own_pools_and_a_full_queue_refuses():
    """A running training does not hold up an explanation; waiting jobs are bounded."""
    release = threading.Event()

    def blocker(progress, cancel, log):
        release.wait(30)
        return "trained"

    runner = jobs.JobRunner(limits={"train": 1, "explain": 2}, max_queued=2)
    train_id = runner.start(jobs.Job(blocker, kind="train"))
    _poll(runner, train_id, lambda s: s["status"] == jobs.RUNNING)
    quick = runner.wait(runner.start(jobs.Job(lambda p, c, log: 1, kind="explain")), 30)
    assert quick["status"] == jobs.DONE and quick["kind"] == "explain"
    waiting = [runner.start(jobs.Job(blocker, kind="train")) for _ in range(2)]
    with pytest.raises(jobs.QueueFull, match="already waiting"):
        runner.start(jobs.Job(blocker, kind="train"))
    assert [s["id"] for s in runner.jobs(kind="explain")] == [quick["id"]]
    assert runner.cancel(waiting[1]) is True
    assert runner.snapshot(waiting[1])["status"] == jobs.CANCELLED  # at once, never started
    release.set()
    assert runner.wait(waiting[0], 30)["status"] == jobs.DONE
    assert runner.result(train_id) == "trained"


def test_expected_errors_keep_their_message_and_others_are_hidden():
    def fails(exc):
        def target(progress, cancel, log):
            progress({"phase": "explain", "fraction": 0.4, "message": "half way"})
            raise exc
        return target

    runner = jobs.JobRunner()
    mine = runner.wait(runner.start(jobs.Job(fails(ValueError("pick another item")),
                                             expected=(ValueError,))), 30)
    assert mine["status"] == jobs.FAILED and mine["error"] == "pick another item"
    assert mine["fraction"] == pytest.approx(0.4) and mine["progress"]["message"] == "half way"
    bug = runner.wait(runner.start(jobs.Job(fails(ZeroDivisionError("x")), expected=(ValueError,),
                                            unexpected="unexpected error ({kind})")), 30)
    assert bug["error"] == "unexpected error (ZeroDivisionError)" and bug["unexpected"]
    assert not mine["unexpected"]


def test_a_finished_job_is_claimed_once():
    """Overlapping polls: only the first one after the end gets to hand the result out."""
    release = threading.Event()
    runner = jobs.JobRunner()
    job_id = runner.start(jobs.Job(lambda p, c, log: release.wait(30) and "ok", kind="explain"))
    assert runner.claim(job_id) is False  # still queued or running: nothing to hand out
    release.set()
    assert runner.wait(job_id, 30)["status"] == jobs.DONE
    assert [runner.claim(job_id) for _ in range(3)] == [True, False, False]
    assert runner.result(job_id) == "ok"
    with pytest.raises(jobs.JobNotFound):
        runner.claim("no-such-job")


def test_stop_cancels_every_job_and_names_those_that_do_not_stop():
    def obeys(progress, cancel, log):
        cancel.wait(30)
        raise jobs.Cancelled("asked to")

    release = threading.Event()

    def ignores(progress, cancel, log):
        release.wait(30)
        return "done anyway"

    runner = jobs.JobRunner(limits={"train": 1, "import": 1})
    a = runner.start(jobs.Job(obeys, label="obeys", kind="train"))
    b = runner.start(jobs.Job(ignores, label="ignores", kind="import"))
    queued = runner.start(jobs.Job(obeys, label="queued", kind="train"))
    _poll(runner, b, lambda s: s["status"] == jobs.RUNNING)
    _poll(runner, a, lambda s: s["status"] == jobs.RUNNING)
    t0 = time.monotonic()
    assert runner.stop(0.5) == ["ignores"]
    assert time.monotonic() - t0 < 5
    assert runner.snapshot(a)["status"] == jobs.CANCELLED
    assert runner.snapshot(queued)["status"] == jobs.CANCELLED
    assert runner.snapshot(b)["cancel_requested"] and runner.snapshot(b)["active"]
    release.set()
    assert runner.wait(b, 30)["status"] == jobs.CANCELLED  # its result came after the request
    assert runner.stop(0.5) == []                          # nothing left


EXIT_SCRIPT = """
import os, sys, time
os.environ["TRAILSCOPE_HOME"] = sys.argv[1]
from trailscope.app.services import jobs, workspace
job_id = jobs.start(jobs.training_job(workspace.get_store(), "tb", "gru", epochs=300,
                                      patience=1000, hidden=16, batch_size=4))
deadline = time.monotonic() + 120
while time.monotonic() < deadline and len(jobs.snapshot(job_id)["valid"]) < 1:
    time.sleep(0.01)
print("leaving while", jobs.snapshot(job_id)["status"], flush=True)
"""


def test_a_program_that_trains_in_process_exits_cleanly_with_its_best_epoch(tmp_path):
    """A program (a bench, a notebook) that starts a training through the job runner and
    ends while it trains: before the exit hook the worker thread was torn down inside torch
    and the process aborted ("terminate called without an active exception", status 134, 3
    runs of 3); now the training is cancelled, keeps its best epoch, and the process exits 0."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import Store
    from trailscope.models import api

    home = tmp_path / "home"
    home.mkdir()
    with Store(home / "trailscope.duckdb") as store:
        import_file(store, slice_file(TAOBAO, tmp_path / "taobao_8k.csv", ROWS), name="tb")
    got = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(home)],
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    assert "leaving while running" in got.stdout
    assert "cancelling 1 background job(s) before exit (train gru on tb)" in got.stderr
    assert "did not stop" not in got.stderr
    with Store(home / "trailscope.duckdb") as store:
        models = api.list_models(store, "tb")
    assert len(models) == 1 and models[0]["model"] == "gru" and models[0]["cancelled"]

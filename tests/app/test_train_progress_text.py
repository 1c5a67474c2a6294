"""What the Models page and the CLI say while a training is inside its slow steps: the data
preparation, each epoch's validation and the final evaluation, from a real run's progress."""

from __future__ import annotations

import io
import re
import threading

import pytest
from trailscope.analytics.store import Store
from trailscope.app.cli.remote import ProgressLine, train_line
from trailscope.app.services import jobs
from trailscope.app.views import models as mv

from tests.conftest import NYC
from tests.models.realdata import load, slice_dataset


@pytest.fixture(scope="module")
def progress_dicts(tmp_path_factory):
    """Every progress dict of a real two-epoch st-transformer job (tiny encoder) on 60 users
    of the NYC slice, as the job runner receives them, and the job."""
    store = Store(tmp_path_factory.mktemp("progress-text") / "trailscope.duckdb")
    load(store, NYC, "nyc")
    slice_dataset(store, "nyc", "nyc60", 60)
    job = jobs.training_job(store, "nyc60", "st-transformer", epochs=2, max_len=20,
                            device="cpu", batch_size=64, hidden=16, n_layers=1, resume=False)
    seen: list[dict] = []
    job.target(seen.append, threading.Event(), lambda _msg: None)
    store.close()
    return seen, job


def snapshot(ev: dict, job: jobs.Job) -> dict:
    return {"status": "running", "meta": job.meta, "progress": ev, "plan": job.plan,
            "elapsed": 3.0, "valid": []}


def test_the_models_page_names_the_step_and_how_far_it_is(progress_dicts):
    seen, job = progress_dicts
    lines = [mv.status_text(snapshot(ev, job)) for ev in seen]
    data = [line for ev, line in zip(seen, lines, strict=True) if ev["phase"] == "data"]
    assert data[0] == ("Preparing the data for st-transformer on nyc60: reading the events "
                       "(1/7) · 3 s")
    assert "Preparing the data for st-transformer on nyc60: splitting each user's history "\
           "(4/7)" in data[3]
    assert data[-1].startswith("Preparing the data for st-transformer on nyc60: counting the "
                               "training statistics (7/7)")
    valid = [line for ev, line in zip(seen, lines, strict=True)
             if ev["phase"] == "valid" and ev["steps"]]
    assert valid and all(re.search(r"Validating st-transformer on nyc60 · epoch [12]/2: "
                                   r"\d+%", line) for line in valid)
    assert valid[-1].startswith("Validating st-transformer on nyc60 · epoch 2/2: 100%")
    evaluate = [line for ev, line in zip(seen, lines, strict=True) if ev["phase"] == "evaluate"]
    assert any(re.search(r"Evaluating the best epoch of st-transformer on nyc60: choosing the "
                         r"markov settings on validation \(\d+/\d+\)", line) for line in evaluate)
    assert any("ranking the test targets (1/1)" in line for line in evaluate)
    # a training step reads as before
    step = next(line for ev, line in zip(seen, lines, strict=True) if ev["phase"] == "train")
    assert re.search(r"Training st-transformer on nyc60 · epoch 1/2 · step \d+/\d+ · loss",
                     step)


def test_the_progress_bar_holds_still_outside_the_training_steps(progress_dicts):
    seen, job = progress_dicts
    runner = jobs.JobRunner()
    fractions, now = [], 0.0
    for ev in seen:
        now = runner._fraction(job.plan, ev, now)
        fractions.append(now)
    assert fractions == sorted(fractions)  # never goes back
    first_train = next(i for i, ev in enumerate(seen) if ev["phase"] == "train")
    assert set(fractions[:first_train]) == {0.0}
    assert fractions[-1] == 1.0


def test_the_cli_prints_the_same_steps(progress_dicts):
    seen, _ = progress_dicts
    lines = [train_line(ev) for ev in seen]
    assert lines[0] == "preparing the data: reading the events (1/7)"
    assert "validating epoch 2: 100%" in lines
    assert any(re.fullmatch(r"train epoch 1 step \d+/\d+ loss \d+\.\d{4}", line)
               for line in lines)
    assert any(line.startswith("evaluating the best epoch: choosing the repeat settings")
               for line in lines)
    assert lines[-1].startswith("done epoch 2 step 0/0")


def test_the_progress_line_on_a_terminal_and_in_a_log() -> None:
    term = io.StringIO()
    line = ProgressLine(term, tty=True)
    line.show("preparing the data: splitting each user's history (4/7)")
    line.show("train epoch 1 step 1/9")
    line.log("epoch 1: valid ndcg@10 0.1234")
    line.show("train epoch 2 step 1/9")
    line.end()
    long, short, rest = term.getvalue().split("\r")[1:]
    short, logged = short.split("\n", 1)
    assert len(short) == len(long)                  # covers the longer line
    assert logged == "epoch 1: valid ndcg@10 0.1234\n"   # on a line of its own
    assert rest == "train epoch 2 step 1/9\n"

    log = io.StringIO()
    line = ProgressLine(log, tty=False, every=3600)
    for step in range(1, 10):
        line.show(f"train epoch 1 step {step}/9 loss {5 - step / 10:.4f}")
    line.show("validating epoch 1: 40%")
    line.log("epoch 1: valid ndcg@10 0.1234")
    line.show("validating epoch 1: 40%")              # the same line again: not repeated
    assert log.getvalue().splitlines() == [
        "train epoch 1 step 1/9 loss 4.9000", "validating epoch 1: 40%",
        "epoch 1: valid ndcg@10 0.1234"]
    assert "\r" not in log.getvalue()

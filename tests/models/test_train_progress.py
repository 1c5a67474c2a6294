"""Progress inside a training run's slow steps: the data preparation, each epoch's
validation, the calibration and the final evaluation report how far they are, in order."""

from __future__ import annotations

import re

import pytest
from trailscope.models.data.dataset import MEMORY_STEPS, STORE_STEPS, build_dataset
from trailscope.models.training import checkpoint as ckpt
from trailscope.models.training import progress as train_progress
from trailscope.models.training.evaluate import prepare_part, rank_metrics
from trailscope.models.training.loop import train
from trailscope.models.training.settings import Phase, TrainEvent, TrainSettings

from tests.models.realdata import real_workspace, slice_dataset

#: two epochs of a few steps each (about 60 users of the NYC slice)
RUN = TrainSettings(split="leave-last", batch_size=64, max_len=20, epochs=2, resume=False,
                    device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A workspace with 60 users of the NYC slice, the events of one st-transformer run on
    it (tiny encoder) and its result."""
    store = real_workspace(tmp_path_factory.mktemp("progress"), "nyc")
    slice_dataset(store, "nyc", "nyc60", 60)
    events: list[TrainEvent] = []
    res = train(store, "nyc60", "st-transformer", RUN, progress=events.append,
                log=lambda _line: None, hidden=16, n_layers=1)
    yield store, events, res
    store.close()


def user_facing(text: str) -> bool:
    """Plain words for a user: no Python reprs, identifiers or brackets of data."""
    return bool(text) and not re.search(r"[_{}\[\]<>=]|None|\bdef\b", text)


def test_data_preparation_reports_its_steps_in_order(run):
    _, events, _ = run
    first_other = next(i for i, e in enumerate(events) if e.phase is not Phase.DATA)
    data = events[:first_other]
    assert all(e.phase is Phase.DATA for e in data)
    steps = {e.steps for e in data}
    # the dataset's own steps, building the model, counting the transitions
    assert steps == {len(MEMORY_STEPS) + 2}
    assert [e.step for e in data] == list(range(1, len(MEMORY_STEPS) + 3))
    assert [e.detail for e in data[:len(MEMORY_STEPS)]] == list(MEMORY_STEPS)
    assert all(user_facing(e.detail) for e in data)
    report = [e for e in data if e.messages]
    assert len(report) == 1 and any("split leave-last" in m for m in report[0].messages)
    # the whole preparation comes before the first training step
    assert events[first_other].phase is Phase.TRAIN


def test_validation_reports_batches_then_its_result(run):
    ws, events, res = run
    n_valid = len(build_dataset(ws, "nyc60", "leave-last", RUN.max_len).parts["valid"])
    batches = -(-n_valid // 256)
    for epoch in (1, 2):
        valid = [e for e in events if e.phase is Phase.VALID and e.epoch == epoch]
        inside, end = valid[:-1], valid[-1]
        assert [e.step for e in inside] == list(range(1, batches + 1))
        assert {e.steps for e in inside} == {batches}
        assert all(e.valid is None and user_facing(e.detail) for e in inside)
        assert end.valid == pytest.approx(res.history[epoch - 1]["valid ndcg@10"])
        assert end.steps == 0 and end.loss is not None
        # validation follows the epoch's last training step
        pos = events.index(inside[0])
        before = events[pos - 1]
        assert before.phase is Phase.TRAIN and before.step == before.steps
        assert before.epoch == epoch


def test_calibration_and_final_evaluation_report_what_they_try(run):
    _, events, res = run
    last_valid = max(i for i, e in enumerate(events) if e.phase is Phase.VALID)
    tail = events[last_valid + 1:]
    assert tail[-1].phase is Phase.DONE and tail[-1].model_id == res.model_id
    evaluate = tail[:-1]
    assert evaluate and all(e.phase is Phase.EVALUATE for e in evaluate)
    assert all(user_facing(e.detail) for e in evaluate)
    details = list(dict.fromkeys(e.detail for e in evaluate))  # in order of appearance
    tuning = [d for d in details if d.startswith("choosing the")]
    assert tuning == ["choosing the repeat settings on validation",
                      "choosing the markov settings on validation"]
    for d in tuning:  # each setting tried, counted up to all of the grid
        mine = [e for e in evaluate if e.detail == d]
        assert [e.step for e in mine] == list(range(len(mine)))
        assert {e.steps for e in mine} == {len(mine)}
    assert any(d.startswith("weighing the score parts") for d in details)
    order = [d for d in details if d.startswith(("ranking", "saving"))]
    assert order == ["ranking the validation targets", "ranking the test targets",
                     "saving the model"]
    test = [e for e in evaluate if e.detail == "ranking the test targets"]
    assert [e.step for e in test] == list(range(1, test[0].steps + 1))


def test_progress_dicts_stay_compatible(run):
    _, events, _ = run
    step = next(e for e in events if e.phase is Phase.TRAIN)
    assert set(step.to_dict()) == {"phase", "epoch", "step", "steps", "loss", "valid"}
    data = events[0].to_dict()
    assert data["detail"] == MEMORY_STEPS[0] and data["messages"] == []
    assert {e.to_dict()["phase"] for e in events} == {"data", "train", "valid", "evaluate",
                                                      "done"}


@pytest.mark.parametrize("backing", ["memory", "store"])
def test_build_dataset_reports_each_step_before_it_starts(run, backing):
    ws = run[0]
    seen: list[tuple[int, int, str]] = []
    build_dataset(ws, "nyc60", "leave-last", 20, backing=backing,
                  progress=lambda *a: seen.append(a))
    names = MEMORY_STEPS if backing == "memory" else STORE_STEPS
    assert seen == [(i + 1, len(names), n) for i, n in enumerate(names)]


def test_reports_reach_only_the_hook_set_around_them():
    got: list[tuple[int, int, str]] = []
    train_progress.report(1, 2, "nobody listens")  # no hook: nothing happens
    with train_progress.reporting(lambda *a: got.append(a)):
        train_progress.report(1, 3, "inside")
        with train_progress.reporting(None):
            train_progress.report(2, 3, "muted")
    train_progress.report(3, 3, "after")
    assert got == [(1, 3, "inside")]


def test_prepared_batches_rank_as_a_fresh_pass(run):
    ws, _, res = run
    net = ckpt.load(res.path, ws).model
    ds = build_dataset(ws, "nyc60", "leave-last", RUN.max_len)
    prepared = prepare_part(ds, "valid")
    assert prepared is not None and len(prepared.batches) == -(-len(ds.parts["valid"]) // 256)
    fresh = rank_metrics(net, ds, None)
    assert rank_metrics(net, ds, prepared) == fresh
    assert fresh == (res.metrics["valid"]["ndcg@10"], res.metrics["valid"]["mrr"])

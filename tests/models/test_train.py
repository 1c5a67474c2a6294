"""The training loop: reproducible, early stopping, progress, cancel + resume, pre-training."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import pytest
import torch
from trailscope.models.recommenders import registry
from trailscope.models.training import checkpoint as ckpt
from trailscope.models.training.loop import resolve_device, train
from trailscope.models.training.settings import Phase, TrainEvent, TrainSettings, resolve

from tests.models.realdata import real_workspace, slice_dataset
from tests.models.tiny import TinyRec

FAST = TrainSettings(split="leave-last", batch_size=64, max_len=20)


def quiet(_msg: str) -> None:
    """Training log sink: the tests check results, not the log."""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    store = real_workspace(tmp_path_factory.mktemp("train"), "nyc")
    slice_dataset(store, "nyc", "nyc60", 60)
    yield store
    store.close()


@pytest.fixture()
def tiny(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "tiny", TinyRec)
    return "tiny"


def test_device_selection():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_same_seed_same_metrics(ws, tiny):
    run = replace(FAST, epochs=2, seed=3, resume=False)
    a = train(ws, "nyc60", tiny, run, log=quiet)
    b = train(ws, "nyc60", tiny, run, log=quiet)
    c = train(ws, "nyc60", tiny, replace(run, seed=4), log=quiet)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.metrics["test"]["ndcg@10"] == b.metrics["test"]["ndcg@10"]
    assert a.metrics["test"]["mrr"] == b.metrics["test"]["mrr"]
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]
    assert set(a.history[0]) == {"epoch", "loss", "valid ndcg@10", "seconds"}


def test_progress_and_early_stopping(ws, tiny):
    events: list[TrainEvent] = []
    res = train(ws, "nyc60", tiny, replace(FAST, epochs=6, lr=0.0, patience=2, resume=False),
                progress=events.append, log=quiet)
    # lr 0: validation never improves after epoch 1 -> stops after 1 + patience epochs
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    phases = [e.phase for e in events]
    assert phases[0] == Phase.DATA and phases[-1] == Phase.DONE and Phase.VALID in phases
    step = next(e for e in events if e.phase == Phase.TRAIN)
    assert set(step.to_dict()) == {"phase", "epoch", "step", "steps", "loss", "valid"}
    assert step.to_dict()["phase"] == "train" and step.loss is not None
    assert all(e.steps == step.steps for e in events if e.phase == Phase.TRAIN)
    assert max(e.step for e in events if e.phase == Phase.TRAIN) == step.steps
    assert events[-1].model_id == res.model_id == events[-1].to_dict()["model_id"]
    assert "messages" in events[0].to_dict()


def test_cancel_then_resume_matches_an_uninterrupted_run(ws, tiny):
    run = replace(FAST, epochs=3, patience=10, seed=7)
    full = train(ws, "nyc60", tiny, replace(run, resume=False), log=quiet)

    cancel = threading.Event()

    def stop_in_epoch_2(p: TrainEvent) -> None:
        if p.phase == Phase.TRAIN and p.epoch == 2 and p.step == 2:
            cancel.set()

    cut = train(ws, "nyc60", tiny, run, progress=stop_in_epoch_2, cancel=cancel, log=quiet)
    assert cut.cancelled and len(cut.history) == 1
    assert cut.path is not None and cut.path.exists()               # best epoch kept
    assert ckpt.read_info(cut.path)["cancelled"] is True
    partial = list(ckpt.models_dir(ws, "nyc60").glob("_resume-tiny-*.pt"))
    assert len(partial) == 1

    resumed = train(ws, "nyc60", tiny, run, log=quiet)
    assert resumed.resumed_from_epoch == 1 and not resumed.cancelled
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.metrics["test"]["ndcg@10"] == full.metrics["test"]["ndcg@10"]
    assert not partial[0].exists()                                  # finished: state removed


def test_pretraining_phase_runs_first(ws, tiny):
    events: list[TrainEvent] = []
    run = replace(FAST, epochs=1, resume=False)
    train(ws, "nyc60", tiny, replace(run, pretrain_epochs=1), progress=events.append,
          log=quiet)
    assert Phase.PRETRAIN not in [e.phase for e in events]        # the config did not ask
    events.clear()
    res = train(ws, "nyc60", tiny, replace(run, pretrain_epochs=2),
                TinyRec.Config(pretrain=True), progress=events.append, log=quiet)
    phases = [e.phase for e in events]
    assert phases.index(Phase.PRETRAIN) < phases.index(Phase.TRAIN)
    assert {e.epoch for e in events if e.phase == Phase.PRETRAIN} == {1, 2}
    assert res.model_id and ckpt.read_info(res.path)["config"]["pretrain"] is True


def test_baseline_through_train(ws):
    res = train(ws, "nyc60", "markov", FAST, log=quiet)
    assert res.history == [] and res.path.exists()
    assert 0 < res.metrics["test"]["ndcg@10"] < 1
    assert "slices" in res.metrics["test"] and "hour" in res.metrics["test"]["slices"]


@pytest.mark.parametrize("name,overrides", [
    ("gru", {"hidden": 16}),
    ("st-transformer", {"hidden": 16, "n_layers": 1, "n_heads": 2, "pretrain": True}),
])
def test_neural_smoke(ws, name, overrides):
    events: list[TrainEvent] = []
    settings, config = resolve(name, {"epochs": 1, "resume": False, "pretrain_epochs": 1,
                                      **overrides}, FAST)
    res = train(ws, "nyc60", name, settings, config, progress=events.append, log=quiet)
    assert math.isfinite(res.history[0]["loss"])
    assert 0 <= res.metrics["test"]["ndcg@10"] <= 1
    if overrides.get("pretrain"):
        phases = [e.phase for e in events]
        assert phases.index(Phase.PRETRAIN) < phases.index(Phase.TRAIN)
    loaded = ckpt.load(res.path, ws)
    assert loaded.model.name == name


def test_result_to_json(ws):
    import json

    out = train(ws, "nyc60", "pop", FAST, log=quiet).to_json()
    json.dumps(out)
    assert out["metrics"]["ndcg@10"] > 0 and "slices" not in out["metrics"]
    assert any("repeat rate" in m for m in out["messages"])


def test_temporal_split_reports_next_window(ws):
    res = train(ws, "nyc60", "repeat", replace(FAST, split="temporal"), log=quiet)
    nw = res.metrics["next_window"]
    assert nw["users"] > 5 and 0 < nw["recall@10"] <= 1 and 0 < nw["precision@10"] <= 1


def test_settings_resolve_and_reject_typos():
    settings, config = resolve("sasrec", {"hidden": 32, "epochs": 3, "lr": 1e-3})
    assert settings == TrainSettings(epochs=3, lr=1e-3) and config.hidden == 32
    with pytest.raises(ValueError, match=r"'hiden'.*valid settings: .*hidden.*epochs"):
        resolve("sasrec", {"hiden": 3})
    assert resolve("pop", {}, FAST)[0] == FAST
    # no name is both a training setting and a model setting (one mapping holds both)
    from trailscope.models.training.settings import field_names

    for cls in registry.MODELS.values():
        assert not set(field_names(TrainSettings)) & set(field_names(cls.Config)), cls.name


def test_train_keyword_overrides_are_checked(ws):
    with pytest.raises(ValueError, match="valid settings"):
        train(ws, "nyc60", "pop", FAST, log=quiet, epochz=1)

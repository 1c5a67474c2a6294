"""Online updates (models.training.online) on the real NYC slice: a model trained on the
early events is continued on the later ones, appended to the same dataset.

The events are appended through ``trailscope.analytics.append`` when it exists, else
inserted into the dataset's table directly (what an append does to the events).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from trailscope.analytics import schema
from trailscope.analytics.store import Store
from trailscope.app.cli.main import main as cli
from trailscope.app.localserver import LOG, local_server
from trailscope.app.services import jobs
from trailscope.app.services import models as model_services
from trailscope.app.services import workspace as services
from trailscope.models import api
from trailscope.models.data.dataset import build_dataset
from trailscope.models.recommenders.registry import MODELS, get_class
from trailscope.models.training import checkpoint as ckpt
from trailscope.models.training import online
from trailscope.models.training.evaluate import evaluate_model

from tests.conftest import NYC
from tests.models.realdata import load, save_frame

ENCODER = {"hidden": 16, "use_transitions": False, "use_history": False}  # weights only


def append_events(store: Store, name: str, frame: pd.DataFrame) -> None:
    """Append ``frame``'s events to dataset ``name``."""
    try:
        from trailscope.analytics.append import append
    except ImportError:
        con = store.cursor()
        con.register("late_events", frame[list(schema.COLUMNS)])
        casts = ", ".join(f"CAST({c} AS {schema.DUCKDB_TYPES[c]})" for c in schema.COLUMNS)
        con.execute(f"INSERT INTO {store.table(name)} SELECT {casts} FROM late_events")
        con.close()
        return
    append(store, name, frame)


USERS = 150  # of the slice's 361: a few seconds per training on a loaded machine


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> pd.DataFrame:
    """The events of the NYC slice's first ``USERS`` users, as the importer stores them."""
    with Store(tmp_path_factory.mktemp("nyc") / "trailscope.duckdb") as s:
        load(s, NYC, "all")
        df = s.events("all")
    return df[df[schema.USER].isin(sorted(df[schema.USER].unique())[:USERS])]


def split_at(events: pd.DataFrame, q: float = 0.85) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = events[schema.TS].quantile(q)
    return events[events[schema.TS] < cut], events[events[schema.TS] >= cut]


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """TRAILSCOPE_HOME of the test (the CLI and the services open their store there)."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("TRAILSCOPE_HOME", str(path))
    return path


def test_vocab_tables_follow_the_vocabularies(events, tmp_path):
    """Every table the probe finds has one row per id (+ padding + extra rows) on real data,
    and the id-indexed embeddings of every model are among them."""
    with Store(tmp_path / "w.duckdb") as store:
        save_frame(store, "nyc", events)
        ds = build_dataset(store, "nyc")
    sizes = {"item": ds.meta.n_items, "category": ds.meta.n_categories,
             "behavior": ds.meta.n_behaviors}
    for name, cls in MODELS.items():
        net = cls(ds.meta, cls.Config())
        tables = online.vocab_tables(cls, net.config, ds.meta.max_len)
        sd = net.state_dict()
        for key, (vocab, extra) in tables.items():
            assert sd[key].shape[0] == sizes[vocab] + 1 + extra, (name, key)
        if hasattr(net, "item_emb"):
            assert tables["item_emb.weight"][0] == "item", name
    st = online.vocab_tables(get_class("st-transformer"),
                             get_class("st-transformer").Config(), 50)
    assert st["item_emb.weight"] == ("item", 1)          # padding, items, the mask token
    assert st["cat_emb.weight"] == ("category", 1)
    assert st["beh_emb.weight"] == ("behavior", 0)


def test_update_learns_the_new_events_or_keeps_the_parent(events, home):
    early, late = split_at(events)
    with Store() as store:
        save_frame(store, "nyc", early)
        parent = api.train(store, "nyc", "st-transformer", epochs=1, log=lambda m: None,
                           **ENCODER)
        info = ckpt.read_info(parent.path)
        assert info["dataset_rows"] == len(early)
        assert info["trained_until"] == early[schema.TS].max().timestamp()

        # unchanged data: the parent seen through the new index scores as the parent
        ds0 = build_dataset(store, "nyc")
        loaded = ckpt.load(parent.path, store)
        view = online.ParentView(loaded.model, online.vocab_map(loaded.meta, ds0.meta),
                                 ds0.meta)
        same = evaluate_model(view, ds0, "valid", with_slices=False)["ndcg@10"]
        assert same == pytest.approx(parent.metrics["valid"]["ndcg@10"], abs=1e-6)

        append_events(store, "nyc", late)
        before = {i["model_id"] for i in ckpt.list_checkpoints(store, "nyc")}
        res = api.update(store, "nyc", "st-transformer", epochs=1, log=lambda m: None)
        assert res.parent == parent.model_id
        assert res.since == info["trained_until"]
        assert res.train_targets > 0
        after = {i["model_id"] for i in ckpt.list_checkpoints(store, "nyc")}
        if res.kept_new:
            assert res.valid_new >= res.valid_parent
            assert after - before == {res.model_id}
            side = ckpt.read_info(res.path)
            assert side["parent"] == parent.model_id
            assert side["valid_parent"] == pytest.approx(res.valid_parent)
            assert side["valid_new"] == pytest.approx(side["metrics"]["valid"]["ndcg@10"])
            assert side["dataset_rows"] == len(early) + len(late)
            new = ckpt.load(res.path, store)
            only_late = set(late[schema.ITEM]) - set(early[schema.ITEM])
            learnt = only_late & set(new.meta.item_ids)
            assert learnt and not learnt & set(loaded.meta.item_ids)
            row = next(m for m in api.list_models(store, "nyc") if m["model_id"] == res.model_id)
            assert row["parent"] == parent.model_id and not row["stale"]
            user = new.meta.extra["user_ids"][0]
            assert api.recommend(store, "nyc", user, model_id=res.model_id)["items"]
        else:
            assert res.valid_new < res.valid_parent and after == before
            assert res.model_id == parent.model_id

        # a learning rate that wrecks the encoder: the parent is kept, nothing is written
        bad = api.update(store, "nyc", "st-transformer", from_id=parent.model_id, epochs=1,
                         lr=0.3, log=lambda m: None)
        assert not bad.kept_new and bad.valid_new < bad.valid_parent
        assert bad.model_id == parent.model_id
        assert any("kept the parent" in m for m in bad.messages)
        assert {i["model_id"] for i in ckpt.list_checkpoints(store, "nyc")} == after
        assert bad.valid_parent == pytest.approx(res.valid_parent)  # the same validation

        with pytest.raises(ValueError, match="'hidden' cannot change in an update"):
            api.update(store, "nyc", "st-transformer", hidden=32, log=lambda m: None)
        with pytest.raises(ValueError, match="is not a time"):
            api.update(store, "nyc", "st-transformer", since="last tuesday",
                       log=lambda m: None)


def test_warm_start_carries_each_ids_rows(events, tmp_path):
    """Rows follow their ids (whose index moves as new ids sort in); new ids keep the
    model's own initialisation."""
    early, late = split_at(events)
    with Store(tmp_path / "w.duckdb") as store:
        save_frame(store, "old", early)
        save_frame(store, "new", pd.concat([early, late]))
        old_ds, new_ds = build_dataset(store, "old"), build_dataset(store, "new")
    cls = get_class("st-transformer")
    config = cls.Config(**ENCODER)
    torch.manual_seed(1)
    parent = cls(old_ds.meta, config)
    fresh = cls(new_ds.meta, config)
    init = fresh.item_emb.weight.detach().clone()
    vmap = online.vocab_map(old_ds.meta, new_ds.meta)
    notes = online.warm_start(parent, fresh, vmap)
    assert "new item ids" in notes[0]
    w_old, w_new = parent.item_emb.weight.detach(), fresh.item_emb.weight.detach()
    old_index = {v: i + 1 for i, v in enumerate(old_ds.meta.item_ids)}
    moved = 0
    for k, item in enumerate(new_ds.meta.item_ids, start=1):
        if item in old_index:
            assert torch.equal(w_new[k], w_old[old_index[item]])
            moved += old_index[item] != k
        else:
            assert torch.equal(w_new[k], init[k])
    assert moved > 0                                        # the mapping, not the identity
    assert torch.equal(w_new[-1], w_old[-1])                # the mask token's row
    tables = online.vocab_tables(cls, config, new_ds.meta.max_len)
    old_params = dict(parent.named_parameters())
    for name, p in fresh.named_parameters():                # every other weight as it was
        if name not in tables:
            assert torch.equal(p, old_params[name]), name
    assert vmap.new_ids("item") == int(np.sum(vmap.item[1:] == 0)) > 0


def test_cli_continue_and_its_errors(events, home, capsys):
    early, late = split_at(events)
    with Store() as store:
        save_frame(store, "nyc", early)
        parent = api.train(store, "nyc", "markov", log=lambda m: None)
        # the parent found is named by its id, so no caller lists the checkpoints again
        assert online.parent_checkpoint(store, "nyc", "markov") == (parent.model_id,
                                                                    Path(parent.path))
        append_events(store, "nyc", late)
    assert cli(["train", "nyc", "--model", "markov", "--continue", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parent"] == parent.model_id
    assert out["kept_new"] == (out["valid_new"] >= out["valid_parent"])
    for argv, says in (
            (["--continue", "--split", "temporal"], "--split cannot change with --continue"),
            (["--continue", "--since", "soon"], "'soon' is not a time"),
            (["--since", "2012-10-01"], "--since and --from go with --continue"),
            (["--continue", "--from", "markov-nope"], "no model 'markov-nope'"),
            (["--continue", "--set", "smoothing=2"], "unknown setting")):
        assert cli(["train", "nyc", "--model", "markov", *argv]) == 1
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and str(home) not in err
    assert cli(["serve", "--update-every", "15x"]) == 1
    assert "'15x' is not an interval" in capsys.readouterr().err


def test_intervals():
    assert model_services.parse_interval("15m") == 900
    assert model_services.parse_interval("1h") == 3600
    assert model_services.parse_interval("900s") == 900
    assert model_services.parse_interval("1.5m") == 90
    for bad in ("15", "m", "15 minutes", "-1s", "0.2s", ""):
        with pytest.raises(ValueError, match="interval|second"):
            model_services.parse_interval(bad, "--update-every")


def test_scheduler_updates_a_dataset_with_new_events(events, home):
    early, late = split_at(events)
    services.close_store()
    try:
        store = services.get_store()
        save_frame(store, "nyc", early)
        parent = api.train(store, "nyc", "markov", log=lambda m: None)
        updater = model_services.Updater(3600)
        assert updater.tick() == []                      # no new events: nothing to do
        append_events(store, "nyc", late)
        started = updater.tick()
        assert len(started) == 1
        snap = jobs.wait(started[0], timeout=120)
        assert snap["status"] == jobs.DONE, snap
        assert snap["summary"]["parent"] == parent.model_id
        assert updater.tick() == []                      # tried on these events already
        models = api.list_models(store, "nyc")
        if snap["summary"]["kept_new"]:
            assert models[0]["parent"] == parent.model_id
    finally:
        services.close_store()


def test_serve_updates_on_a_schedule(events, home):
    """``trailscope serve --update-every 1s`` continues the default model of a dataset
    whose events grew: a new checkpoint names it as its parent (or the log says it was
    kept), with no request to the server."""
    early, late = split_at(events)
    with Store() as store:
        save_frame(store, "nyc", early)
        parent = api.train(store, "nyc", "markov", log=lambda m: None)
        append_events(store, "nyc", late)
    log_path = home / LOG
    with local_server(home, args=["--update-every", "1s"]):
        deadline = time.monotonic() + 90
        folder = home / "models" / "nyc"
        while True:
            children = [json.loads(p.read_text()) for p in folder.glob("*.json")]
            done = [c for c in children if c.get("parent") == parent.model_id]
            if done or "online update of 'nyc': kept the parent" in log_path.read_text():
                break
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
    if done:
        assert done[0]["valid_new"] >= done[0]["valid_parent"]
        assert done[0]["dataset_rows"] == len(early) + len(late)

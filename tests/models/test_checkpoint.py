"""Checkpoints (round trip, fingerprint refusal) and the service API on real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from trailscope.analytics import schema
from trailscope.models import api
from trailscope.models.data.dataset import build_dataset
from trailscope.models.data.history import UnknownUser
from trailscope.models.recommenders import registry
from trailscope.models.training import checkpoint as ckpt

from tests.models.realdata import real_workspace, slice_dataset
from tests.models.tiny import TinyRec

QUIET = {"log": lambda _m: None}
ITEM_KEYS = {"item_id", "score", "category", "lat", "lon"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    store = real_workspace(tmp_path_factory.mktemp("ckpt"), "nyc", "ml")
    slice_dataset(store, "nyc", "nyc80", 80)
    if store.exists("ml"):  # MovieLens: complete file only, loaded when $TRAILSCOPE_DATA exists
        slice_dataset(store, "ml", "ml80", 80)
    yield store
    store.close()


def _same_scores(a, b, ds) -> None:
    batch = next(ds.batches("test", 32))
    a.eval()
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a.score(batch), b.score(batch))


def test_markov_round_trip_and_layout(ws):
    res = api.train(ws, "nyc80", model="markov", **QUIET)
    assert res.path.parent == ws.path.parent / "models" / "nyc80"
    assert res.path.stem == res.model_id and res.model_id.startswith("markov-")
    side = json.loads(res.path.with_suffix(".json").read_text())
    assert side["fingerprint"] == ws.fingerprint("nyc80") and side["split"] == "leave-last"
    # the settings chosen on validation are the checkpoint's config
    chosen = res.metrics["chosen"]
    # the reading of the counts, and its own setting (pseudo-count or links per item)
    assert set(chosen) in ({"link_share", "min_transitions", "bandwidth_km"},
                           {"link_share", "link_count", "bandwidth_km"})
    assert side["config"] == {**side["config"], **chosen} and side["config"]["tune"] is True
    assert api.evaluate(ws, "nyc80", res.model_id)[0]["chosen"] == chosen
    assert api.list_models(ws, "nyc80")[0]["chosen"] == chosen
    loaded = ckpt.load(res.path, ws)
    ds = build_dataset(ws, "nyc80", "leave-last")
    assert loaded.meta.item_ids == ds.meta.item_ids
    fresh = registry.build_model("markov", ds.meta, **chosen)
    fresh.fit_counts(list(ds.batches("train", 512)))
    _same_scores(loaded.model, fresh, ds)


def test_neural_round_trip(ws, monkeypatch):
    monkeypatch.setitem(registry.MODELS, "tiny", TinyRec)
    res = api.train(ws, "nyc80", model="tiny", epochs=1, batch_size=64, max_len=20,
                    hidden=12, resume=False, **QUIET)
    loaded = ckpt.load(res.path, ws)
    assert loaded.model.config == TinyRec.Config(hidden=12)
    assert loaded.meta.max_len == 20
    ds = build_dataset(ws, "nyc80", "leave-last", max_len=20)
    again = api.evaluate(ws, "nyc80", res.model_id, recompute=True)[0]
    assert again["ndcg@10"] == pytest.approx(res.metrics["test"]["ndcg@10"])
    assert loaded.model.emb.weight.shape == (ds.meta.n_items + 1, 12)


def test_weights_of_another_version_are_refused(ws, monkeypatch):
    monkeypatch.setitem(registry.MODELS, "tiny", TinyRec)
    res = api.train(ws, "nyc80", model="tiny", epochs=1, batch_size=64, max_len=20,
                    hidden=12, resume=False, **QUIET)
    blob = torch.load(res.path, weights_only=True)
    blob["state_dict"]["item_bias"] = torch.zeros(3)  # a weight this version does not have
    torch.save(blob, res.path)
    with pytest.raises(ckpt.CheckpointError, match="other weights.*item_bias.*retrain"):
        ckpt.load(res.path, ws)


def test_fingerprint_change_is_refused(ws):
    slice_dataset(ws, "nyc", "moving", 30)
    res = api.train(ws, "moving", model="pop", **QUIET)
    assert api.list_models(ws, "moving")[0]["stale"] is False
    slice_dataset(ws, "nyc", "moving", 31)                   # re-import: different data
    with pytest.raises(ckpt.CheckpointError, match="fingerprint.*Retrain"):
        ckpt.load(res.path, ws)
    assert api.list_models(ws, "moving")[0]["stale"] is True
    assert api.evaluate(ws, "moving") == []                  # stale models are left out
    with pytest.raises(ckpt.CheckpointError, match="changed since"):
        api.recommend(ws, "moving", "1", model_id=res.model_id)
    with pytest.raises(ckpt.CheckpointError, match="no trained model"):
        api.recommend(ws, "moving", "1")
    with pytest.raises(ckpt.CheckpointError, match="no model 'nope'"):
        api.evaluate(ws, "moving", "nope")


def test_evaluate_rows_and_default_model(ws):
    api.train(ws, "nyc80", model="pop", **QUIET)
    api.train(ws, "nyc80", model="repeat", **QUIET)
    rows = api.evaluate(ws, "nyc80")
    keys = {"model", "model_id", "split", "hr@1", "hr@5", "hr@10", "hr@20", "ndcg@5",
            "ndcg@10", "ndcg@20", "mrr", "coverage@10", "popularity@10", "train_seconds",
            "slices"}
    assert rows and all(keys <= set(r) for r in rows)
    assert {"hour", "weekday", "activity", "cold"} <= set(rows[0]["slices"])
    best = max(rows, key=lambda r: r["ndcg@10"])
    out = api.recommend(ws, "nyc80", "1", k=5)
    assert out["model_id"] == best["model_id"]


def test_recommend_shape_position_and_errors(ws):
    res = api.train(ws, "nyc80", model="markov", **QUIET)
    out = api.recommend(ws, "nyc80", "1", k=7, model_id=res.model_id)
    assert out["user"] == "1" and out["model"] == "markov" and len(out["items"]) == 7
    assert all(set(i) == ITEM_KEYS for i in out["items"])
    scores = [i["score"] for i in out["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["lat"] is not None and 40 < i["lat"] < 41.5 for i in out["items"])
    assert any(i["category"] for i in out["items"])
    # a current position far from the user's last place changes the fallback's suggestions
    here = api.recommend(ws, "nyc80", "1", k=7, model_id=res.model_id, lat=40.58, lon=-73.81,
                         at="2013-01-05 09:00")
    assert here["at"] == "2013-01-05T09:00:00"
    assert [i["item_id"] for i in here["items"]] != [i["item_id"] for i in out["items"]]
    with pytest.raises(UnknownUser, match="not among the 80 users"):
        api.recommend(ws, "nyc80", "no-such-user", model_id=res.model_id)
    with pytest.raises(ValueError, match="both lat and lon"):
        api.recommend(ws, "nyc80", "1", lat=40.7)


def test_recommend_breaks_ties_by_item_index_also_at_the_kth_place(ws):
    """Popularity counts tie often: the top-k is the k best scores, equal ones in item index
    order (torch.topk's order of ties was arbitrary), the same on every call."""
    res = api.train(ws, "nyc80", model="pop", tune=False, **QUIET)   # plain counts
    loaded = api.load(ws, "nyc80", res.model_id)
    counts = loaded.model.counts.numpy().astype(float)[1:]
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    # places k where the k-th and the (k+1)-th best scores tie
    tied = [k for k in range(1, 101) if counts[order[k - 1]] == counts[order[k]]]
    assert len(tied) >= 2, "the slice no longer has tied counts in its top 100"
    for k in (1, *tied[:3]):
        out = api.recommend(ws, "nyc80", "1", k=k, model_id=res.model_id, loaded=loaded)
        want = [loaded.meta.item_ids[i] for i in order[:k]]
        assert [i["item_id"] for i in out["items"]] == want
        assert [i["score"] for i in out["items"]] == pytest.approx([counts[i] for i in order[:k]])


@pytest.mark.full_data
def test_recommend_excludes_seen_movies(ws):
    res = api.train(ws, "ml80", model="markov", **QUIET)
    user = ws.query_df(f"SELECT min({schema.USER}) AS u FROM {ws.table('ml80')}")["u"][0]
    out = api.recommend(ws, "ml80", user, k=20, model_id=res.model_id)
    seen = set(ws.events("ml80", where=f"{schema.USER} = ?", params=[user])[schema.ITEM])
    assert len(out["items"]) == 20 and not seen & {i["item_id"] for i in out["items"]}
    assert all(i["lat"] is None for i in out["items"])


def _fields(batch) -> dict:
    return {k: v for k, v in vars(batch).items() if isinstance(v, torch.Tensor)}


def test_user_history_reads_the_latest_events_and_equals_the_whole_history(ws, monkeypatch):
    """A recommendation reads the user's 2 x max_len latest events, not their whole history,
    and builds the batch the whole history gives; ``seen`` still lists every known item."""
    from trailscope.models.data import history

    res = api.train(ws, "nyc80", model="markov", **QUIET)
    meta = api.load(ws, "nyc80", res.model_id).meta
    counts = ws.query_df(f"SELECT {schema.USER} AS u, count(*) AS n FROM {ws.table('nyc80')} "
                         "GROUP BY 1 ORDER BY n DESC")
    heavy, light = str(counts["u"].iloc[0]), str(counts["u"].iloc[-1])
    assert counts["n"].iloc[0] > 2 * meta.max_len  # the read must be cut for this user
    reads = []
    real = ws.user_events
    monkeypatch.setattr(ws, "user_events", lambda *a, **kw: reads.append(
        (a[2], kw.get("newest"), len((got := real(*a, **kw))[a[2][0]]))) or got)
    for user in (heavy, light):
        whole = ws.events("nyc80", where=f"{schema.USER} = ?", params=[user])
        want = history.history_batch(whole, meta, user)
        got = history.user_history(ws, "nyc80", user, meta, seen=True)
        for key, value in _fields(want.batch).items():
            torch.testing.assert_close(_fields(got.batch)[key], value, msg=key)
        assert got.skipped == want.skipped
        assert set(got.items.tolist()) == set(want.items.tolist())
    # heavy: 2 x max_len latest rows, then every item id (seen); light: one read, not cut
    assert [(len(c), n, r) for c, n, r in reads] == [
        (len(history.COLUMNS), 2 * meta.max_len, 2 * meta.max_len),
        (1, None, int(counts["n"].iloc[0])),
        (len(history.COLUMNS), 2 * meta.max_len, int(counts["n"].iloc[-1]))]


def test_user_history_reads_on_past_items_the_model_does_not_know(ws):
    """When the latest events are of items the model never saw (posted after training), the
    history reads further back for the known ones, says how many it skipped, and recommends
    as of the latest event."""
    from trailscope.analytics.append import append, validate
    from trailscope.models.data import history

    slice_dataset(ws, "nyc", "nycnew", 30)
    res = api.train(ws, "nycnew", model="markov", **QUIET)
    meta = api.load(ws, "nycnew", res.model_id).meta
    user = meta.extra["user_ids"][0]
    before = history.user_history(ws, "nycnew", user, meta)
    last = ws.query_df(f"SELECT max({schema.TS}) AS t FROM {ws.table('nycnew')}")["t"][0]
    n_new = 2 * meta.max_len + 5
    append(ws, "nycnew", validate([
        {"user_id": user, "item_id": f"brand-new-{i}", "lat": 40.7, "lon": -74.0,
         "ts": str(last + pd.Timedelta(minutes=i + 1))} for i in range(n_new)]))
    after = history.user_history(ws, "nycnew", user, meta)
    torch.testing.assert_close(after.batch.item_seq, before.batch.item_seq)
    assert after.skipped == before.skipped + n_new
    out = api.recommend(ws, "nycnew", user, model_id=res.model_id)
    assert out["unknown_items_skipped"] == after.skipped
    assert out["history_used"] == int(before.batch.len)
    # as of the user's last action, though its item is new to the model
    assert out["at"] == (last + pd.Timedelta(minutes=n_new)).isoformat()


def test_user_events_spelling_nulls_and_missing_dataset(ws):
    """Store.user_events: newest-first cut, oldest-first order, another spelling of the name,
    NULLs as NaN / None, and the registry's message for a dataset that does not exist."""
    from trailscope.analytics.store import DatasetNotFound

    user = str(ws.query_df(f"SELECT min({schema.USER}) AS u FROM {ws.table('nyc80')}")["u"][0])
    cols = [schema.ITEM, schema.TS, schema.LAT, schema.CATEGORY]
    every = ws.user_events("nyc80", user, cols)
    latest = ws.user_events("NYC80", user, cols, newest=3)
    assert (every[schema.TS][:-1] <= every[schema.TS][1:]).all()
    assert latest[schema.ITEM].tolist() == every[schema.ITEM][-3:].tolist()
    nulls = ws.user_events("nyc80", user, [f"NULL::DOUBLE AS {schema.LAT}",
                                           f"NULL::VARCHAR AS {schema.CATEGORY}"], newest=2)
    assert np.isnan(nulls[schema.LAT]).all() and nulls[schema.CATEGORY].tolist() == [None, None]
    with pytest.raises(DatasetNotFound, match="no dataset named 'nope'"):
        ws.user_events("nope", user, cols)

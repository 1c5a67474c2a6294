"""Count baselines: behaviour on constructed batches, ordering on real NYC and MovieLens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trailscope.models.base import Batch, DataMeta
from trailscope.models.data.dataset import build_dataset
from trailscope.models.recommenders.markov import MarkovRec
from trailscope.models.recommenders.pop import PopRec
from trailscope.models.recommenders.registry import MODELS, build_model
from trailscope.models.recommenders.repeat import RepeatRec, history_counts
from trailscope.models.training.evaluate import evaluate_model
from trailscope.models.training.tuning import grid_keys, grid_parts

from tests.models.realdata import real_workspace

DAY = 86400.0


def _meta(n: int = 6, coords: bool = False) -> DataMeta:
    lat = tuple(40.0 + 0.01 * i for i in range(n)) if coords else ()
    lon = tuple(-74.0 for _ in range(n)) if coords else ()
    return DataMeta(n_items=n, n_users=3, n_categories=0, n_behaviors=1, max_len=4,
                    item_ids=tuple(str(i) for i in range(1, n + 1)), item_lat=lat,
                    item_lon=lon, item_popularity=(5, 1, 1, 1, 9, 1)[:n],
                    has_coordinates=coords)


def _batch(items: list[list[int]], times: list[list[float]] | None = None,
           target_time: list[float] | None = None, next_items: list[list[int]] | None = None,
           meta: DataMeta | None = None) -> Batch:
    b, n = len(items), len(items[0])
    item_seq = torch.tensor(items)
    t = torch.tensor(times, dtype=torch.float64) if times else (item_seq > 0).double() * 1e9
    coords = meta.item_coords() if meta is not None else None
    geo = item_seq > 0 if coords is not None and meta.has_coordinates else torch.zeros(b, n,
                                                                                    dtype=bool)
    lat = torch.zeros(b, n)
    lon = torch.zeros(b, n)
    if geo.any():
        lat = torch.where(geo, torch.tensor(coords[:, 0], dtype=torch.float32)[item_seq], 0.0)
        lon = torch.where(geo, torch.tensor(coords[:, 1], dtype=torch.float32)[item_seq], 0.0)
    zeros = torch.zeros(b, n, dtype=torch.long)  # context the count baselines never read
    return Batch(user=torch.ones(b, dtype=torch.long), item_seq=item_seq, time_seq=t,
                 lat_seq=lat, lon_seq=lon, geo_mask=geo, hour_seq=zeros, weekday_seq=zeros,
                 cat_seq=zeros, beh_seq=zeros, target=torch.ones(b, dtype=torch.long),
                 target_time=torch.tensor(target_time or [2e9] * b, dtype=torch.float64),
                 target_hour=zeros[:, 0], target_weekday=zeros[:, 0],
                 target_seq=torch.tensor(next_items) if next_items else zeros,
                 len=(item_seq > 0).sum(1))


def test_registry_names():
    for name in ("pop", "repeat", "markov"):
        assert name in MODELS and MODELS[name].name == name and not MODELS[name].trainable
    with pytest.raises(ValueError, match="valid settings: half_life_days"):
        build_model("pop", _meta(), half_lfe=3)
    with pytest.raises(KeyError, match="available"):
        build_model("nope", _meta())


def test_pop_counts_and_decay():
    meta = _meta()
    s = PopRec(meta).score(_batch([[0, 1, 2]]))
    assert torch.isneginf(s[0, 0]) and s[0, 1:].argmax().item() + 1 == 5     # most popular
    # decay: item 2 seen 3 times long ago, item 3 once yesterday
    day0, now = 1e9, 1e9 + 100 * DAY
    batch = _batch([[1, 1, 1, 1]], times=[[day0, day0, day0, now - DAY]], target_time=[now],
                   next_items=[[2, 2, 2, 3]])
    plain, decayed = PopRec(meta), PopRec(meta, PopRec.Config(half_life_days=7))
    plain.fit_counts([batch])
    decayed.fit_counts([batch])
    sd = decayed.score(batch)[0]
    assert sd[3] > sd[2]                        # recent beats frequent-but-old
    assert plain.score(batch)[0, 5] > plain.score(batch)[0, 3]   # meta counts: no decay


def test_repeat_prefers_recent_history_then_popularity():
    meta = _meta()
    now = 1e9 + 10 * DAY
    batch = _batch([[0, 2, 3, 4]], times=[[0, 1e9, 1e9 + 9 * DAY, 1e9 + 5 * DAY]],
                   target_time=[now])
    s = RepeatRec(meta).score(batch)[0]
    order = torch.argsort(s[1:], descending=True).tolist()
    ranked = [i + 1 for i in order]
    assert ranked[:3] == [3, 4, 2]               # history by recency
    assert ranked[3:5] == [5, 1]                 # then by popularity (9, 5)


def test_markov_transitions_and_nearby_fallback():
    meta = _meta(coords=True)
    # 1 -> 2 three times, 1 -> 3 once; item 4 never seen as a predecessor
    fit = _batch([[1, 1, 1, 1]], next_items=[[2, 2, 2, 3]], meta=meta)
    m = MarkovRec(meta, MarkovRec.Config(min_transitions=1.0, bandwidth_km=0.5))
    m.fit_counts([fit])
    s = m.score(_batch([[0, 0, 0, 1]], meta=meta))[0]
    assert s[2] > s[3] > s[4]
    # from item 4 (no transitions) the fallback prefers places near item 4, despite item 1
    # and 5 being the most popular overall: item 3/5 are 1.1 km away, item 1 3.3 km
    s4 = m.score(_batch([[0, 0, 0, 4]], meta=meta))[0]
    assert s4[5] > s4[1] and s4[3] > s4[1]
    # score_near anchors the fallback at the given position: next to item 1
    near = m.score_near(_batch([[0, 0, 0, 4]], meta=meta), 40.0, -74.0)[0]
    assert near[1:].argmax().item() + 1 == 1


def test_markov_link_reading_weighs_counts_against_popularity():
    meta = _meta()                                  # popularity (5, 1, 1, 1, 9, 1)
    # out of item 1: item 2 five times, item 3 twice, item 5 (the most popular) twice
    fit = _batch([[1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]],
                 next_items=[[2, 2, 2, 2], [2, 3, 3, 5], [0, 0, 0, 5]])
    additive = MarkovRec(meta, MarkovRec.Config(min_transitions=1.0))
    links = MarkovRec(meta, MarkovRec.Config(link_share=0.5, link_count=1.2))
    for m in (additive, links):
        m.fit_counts([fit])
    a = additive.score(_batch([[0, 0, 0, 1]]))[0]
    s = links.score(_batch([[0, 0, 0, 1]]))[0]
    assert torch.isclose(s[1:].sum(), torch.tensor(1.0))        # a distribution
    # additive smoothing: counts decide, popularity only breaks the 3-vs-5 tie
    assert a[2] > a[5] > a[3]
    # links: two moves to a rarely drawn item are read as a link, nearly as sure as five;
    # two moves to the most popular item are what popularity alone explains
    assert s[3] > s[5] and s[2] - s[3] < (a[2] - a[3]) / 2
    # items never reached from 1 keep the popularity order
    assert s[1] > s[4] and torch.isclose(s[4], s[6])


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    store = real_workspace(tmp_path_factory.mktemp("base"), "nyc", "ml")
    yield store
    store.close()


def _fit_eval(ds, name: str) -> dict:
    model = build_model(name, ds.meta)
    model.fit_counts(list(ds.batches("train", 1024)))
    return evaluate_model(model, ds, "test", with_slices=False)


@pytest.mark.parametrize("split", ["leave-last", "trajectory"])
def test_nyc_ordering(real, split):
    ds = build_dataset(real, "nyc", split)
    res = {name: _fit_eval(ds, name) for name in ("pop", "repeat", "markov")}
    print(f"\nNYC {split}: " + "; ".join(
        f"{n} ndcg@10 {r['ndcg@10']:.4f} hr@1 {r['hr@1']:.4f} hr@10 {r['hr@10']:.4f} "
        f"mrr {r['mrr']:.4f}" for n, r in res.items()))
    assert res["repeat"]["ndcg@10"] > 2 * res["pop"]["ndcg@10"]
    assert res["markov"]["ndcg@10"] > 2 * res["pop"]["ndcg@10"]
    assert res["pop"]["coverage@10"] < res["markov"]["coverage@10"]      # pop shows 10 items
    assert res["pop"]["popularity@10"] > res["markov"]["popularity@10"]


@pytest.mark.full_data
def test_movielens_ordering(real):
    ds = build_dataset(real, "ml", "leave-last")
    assert ds.exclude_seen                                   # MovieLens: no repeats
    res = {name: _fit_eval(ds, name) for name in ("pop", "repeat", "markov")}
    print("\nML-100K leave-last: " + "; ".join(
        f"{n} ndcg@10 {r['ndcg@10']:.4f} hr@10 {r['hr@10']:.4f}" for n, r in res.items()))
    assert res["markov"]["ndcg@10"] > res["pop"]["ndcg@10"]
    assert res["pop"]["ndcg@10"] > 0.01                      # far above random (1/1349)
    # with seen items excluded, "repeat" has nothing of its own left: it is popularity
    assert res["repeat"]["ndcg@10"] == pytest.approx(res["pop"]["ndcg@10"])


def test_repeat_whole_history_reaches_past_the_batch(real):
    ds = build_dataset(real, "nyc", "leave-last", max_len=8)   # most histories are longer
    model = RepeatRec(ds.meta, RepeatRec.Config(half_life_hours=None, window=None, tune=False))
    model.fit_counts(list(ds.batches("train", 1024)))
    assert model.calibrate(ds) is None                         # no tuning, histories kept
    for part in ("valid", "test"):
        ex = ds.parts[part]
        hist, seen = history_counts(ds.batch(ex), ds.meta.n_items, None, None, model.memory)
        rows, items = ds.history_items(ex)                     # every earlier event
        want = torch.zeros_like(hist)
        want.index_put_((torch.from_numpy(rows), torch.from_numpy(items)),
                        torch.ones(len(rows)), accumulate=True)
        assert (ex.pos - ex.start > 8).mean() > 0.5
        torch.testing.assert_close(hist, want)
        torch.testing.assert_close(seen, (want > 0).float())
        # a window of 20 counts exactly the 20 most recent events
        h20, _ = history_counts(ds.batch(ex), ds.meta.n_items, 20, None, model.memory)
        n = np.minimum(ex.pos - ex.start, 20)
        assert torch.equal(h20.sum(1), torch.from_numpy(n).float())


def test_count_models_choose_their_settings_on_validation(real):
    ds = build_dataset(real, "nyc", "leave-last")
    for name in ("pop", "repeat", "markov"):
        model = build_model(name, ds.meta)
        model.fit_counts(list(ds.batches("train", 1024)))
        default = evaluate_model(model, ds, "valid", with_slices=False)["ndcg@10"]
        note = model.calibrate(ds)
        chosen = model.chosen_settings()
        parts = grid_parts(model.grid)
        assert note.startswith(f"{name} tuned on validation") and set(chosen) <= set(
            grid_keys(model.grid))
        # the chosen values are one point of one part of the grid
        assert any(all(getattr(model.config, k) in part[k] for k in part) for part in parts)
        tuned = evaluate_model(model, ds, "valid", with_slices=False)["ndcg@10"]
        assert tuned >= default
        # nothing in the grid does better on validation: one setting changed at a time
        for part in parts:
            here = {k: getattr(model.config, k) for k in part}
            for key, values in part.items():
                for v in values:
                    other = build_model(name, ds.meta, **{**chosen, **here, key: v,
                                                          "tune": False})
                    other.fit_counts(list(ds.batches("train", 1024)))
                    other.calibrate(ds)
                    assert evaluate_model(other, ds, "valid",
                                          with_slices=False)["ndcg@10"] <= tuned

"""Explanations (models/explain*.py): completeness, a planted signal, attention, deletion,
baselines, and the store-level API on a real NYC slice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from trailscope.analytics import schema
from trailscope.models.base import Batch, DataMeta
from trailscope.models.explain.attribution import explain, integrated_gradients, score_fn
from trailscope.models.explain.deletion import remove_events
from trailscope.models.explain.types import ATTRIBUTION, GROUP_COLUMNS, GROUPS, real_positions
from trailscope.models.recommenders.registry import build_model

from tests.models.neural_synth import make_batch, make_meta, train_steps

NEURAL = ("st-transformer", "sasrec", "gru")
SMALL = {"st-transformer": {"hidden": 16, "pretrain": False}, "sasrec": {"hidden": 16},
         "gru": {"hidden": 16}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these models are tiny, and on a shared 2-core machine a second
    thread makes them over ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def synth() -> tuple[DataMeta, list]:
    meta = make_meta(max_len=8)
    return meta, [make_batch(meta, 16, seed=s) for s in range(3)]


@pytest.fixture(scope="module")
def trained(synth) -> dict:
    meta, batches = synth
    out = {}
    for name in NEURAL:
        torch.manual_seed(0)
        m = build_model(name, meta, **SMALL[name])
        train_steps(m, batches, 25)
        out[name] = m.eval()
    return out


def _one(meta: DataMeta, seed: int) -> dict:
    return make_batch(meta, 1, seed=seed, min_len=5).rows(slice(0, 1))


@pytest.mark.parametrize("name", NEURAL)
def test_attributions_sum_to_score_difference_within_delta(trained, synth, name) -> None:
    meta, _ = synth
    model = trained[name]
    for seed in (5, 6):
        batch = _one(meta, seed)
        item = int(batch.target[0])
        ig = integrated_gradients(model, batch, item, n_steps=32)
        total = sum(float(v.sum()) for v in ig.per_group.values())
        diff = ig.score - ig.baseline_score
        # completeness: sum = f(x) - f(baseline) + delta, and the delta is kept small
        assert abs(total - (diff + ig.delta)) < 1e-3 * max(1.0, abs(diff))
        assert abs(ig.delta) <= 0.01 * abs(diff) + 1e-5 or ig.n_steps == 256
        # f(x) is the model's own score, computed independently of the hooks
        with torch.no_grad():
            direct = float(score_fn(model, item)(batch)[0])
        assert ig.score == pytest.approx(direct, abs=1e-4)
        assert abs(diff) > 1e-3  # removing the evidence changes the score


def test_feature_groups_present_only_where_the_model_has_them(trained, synth) -> None:
    meta, _ = synth
    batch = _one(meta, 7)
    item = int(batch.target[0])
    st = integrated_gradients(trained["st-transformer"], batch, item)
    assert {"hour", "weekday", "category", "item_lookup", "rel_dist", "candidate"} <= set(st.sites)
    for g in GROUPS:
        assert np.abs(st.per_group[g]).sum() > 0, g
    for name in ("sasrec", "gru"):
        ig = integrated_gradients(trained[name], batch, item)
        assert ig.sites == ["item"]
        assert all(np.all(ig.per_group[g] == 0) for g in ("time", "distance", "category"))
        assert np.abs(ig.per_group["item"]).sum() > 0


# -- planted signal -----------------------------------------------------------------------
N_KEYS, N_NOISE, L = 5, 24, 8


def _planted(n: int, seed: int) -> tuple[dict, np.ndarray]:
    """Rows of L events: one "key" item (1..5) at a random position among noise items
    (6..29); the next item is key + 29 (30..34), whatever the noise. Returns the batch and
    each row's key position (0 = oldest event)."""
    rng = np.random.default_rng(seed)
    items = rng.integers(N_KEYS + 1, N_KEYS + N_NOISE + 1, size=(n, L))
    where = rng.integers(0, L, size=n)
    keys = rng.integers(1, N_KEYS + 1, size=n)
    items[np.arange(n), where] = keys
    target = keys + N_KEYS + N_NOISE
    t = 1_334_000_000.0 + np.cumsum(rng.uniform(600, 7200, size=(n, L)), axis=1)
    tgt_seq = np.zeros((n, L), dtype=np.int64)
    tgt_seq[:, -1] = target
    batch = Batch(
        user=torch.ones(n, dtype=torch.long), item_seq=torch.from_numpy(items),
        time_seq=torch.from_numpy(t), lat_seq=torch.zeros(n, L),
        lon_seq=torch.zeros(n, L), geo_mask=torch.zeros(n, L, dtype=torch.bool),
        hour_seq=torch.from_numpy(((t // 3600) % 24 + 1).astype(np.int64)),
        weekday_seq=torch.from_numpy(((t // 86400 + 3) % 7 + 1).astype(np.int64)),
        cat_seq=torch.zeros(n, L, dtype=torch.long), beh_seq=torch.ones(n, L, dtype=torch.long),
        target=torch.from_numpy(target), target_time=torch.from_numpy(t[:, -1] + 3600),
        target_hour=torch.full((n,), 12), target_weekday=torch.full((n,), 3),
        target_seq=torch.from_numpy(tgt_seq), len=torch.full((n,), L),
    )
    return batch, where


@pytest.mark.parametrize("name", ["sasrec", "st-transformer"])
def test_planted_signal_gets_most_attribution(name) -> None:
    n_items = 2 * N_KEYS + N_NOISE
    meta = DataMeta(n_items=n_items, n_users=1, n_categories=1, n_behaviors=1, max_len=L,
                    item_ids=tuple(f"{i:02d}" for i in range(1, n_items + 1)))
    torch.manual_seed(0)
    over = {"hidden": 32, "dropout": 0.0}
    if name == "st-transformer":
        over.update(pretrain=False, use_candidate_distance=False)
    model = build_model(name, meta, **over)
    train_steps(model, [_planted(128, s)[0] for s in range(8)], 150, lr=5e-3)
    model.eval()
    test, where = _planted(12, seed=99)
    hits, top_ok, drops = 0, 0, []
    for r in range(12):
        b = test.rows(slice(r, r + 1))
        item = int(b.target[0])
        ex = explain(model, meta, b, item, n_steps=32, deletion_k=1, n_random=6, seed=r)
        top_ok += ex.counterfactual["rank_before"] == 1
        hits += int(ex.events[ATTRIBUTION].to_numpy().argmax()) == int(where[r])
        drops.append((ex.counterfactual["rank_drop_top"], ex.counterfactual["rank_drop_random"]))
    assert top_ok >= 10, f"{name} did not learn the planted rule ({top_ok}/12 ranked first)"
    assert hits >= 10, f"{name}: the key event got the most attribution in only {hits}/12"
    # deleting the most attributed event costs far more ranks than deleting a random one
    top_drop, random_drop = np.mean([d[0] for d in drops]), np.mean([d[1] for d in drops])
    assert top_drop >= 1.0 and top_drop > 3 * random_drop


def test_attention_weights_are_distributions_over_past_events(trained, synth) -> None:
    meta, _ = synth
    batch = _one(meta, 8)
    ex = explain(trained["sasrec"], meta, batch, int(batch.target[0]))
    att = ex.attention
    n = len(real_positions(batch))
    cfg = trained["sasrec"].config
    assert len(att) == cfg.n_layers * cfg.n_heads * n
    sums = att.groupby(["layer", "head"])["weight"].sum()
    assert np.allclose(sums.to_numpy(), 1.0, atol=1e-5)  # causal: the last query sees all
    assert ex.attention_matrix().shape == (cfg.n_layers * cfg.n_heads, n)
    gru = explain(trained["gru"], meta, batch, int(batch.target[0]))
    assert gru.attention is None and "rank_drop_attention" not in gru.counterfactual


def test_remove_events_rebuilds_left_padded_history(synth) -> None:
    meta, _ = synth
    batch = _one(meta, 9)
    pos = real_positions(batch)
    out = remove_events(batch, [np.array([0, len(pos) - 1])])
    kept = batch.item_seq[0, pos[1:-1]]
    assert torch.equal(out.item_seq[0, -len(kept):], kept)
    assert int((out.item_seq[0] > 0).sum()) == len(pos) - 2 == int(out.len[0])
    assert torch.equal(out.target_seq[0, -len(kept):-1], kept[1:])


def test_summary_names_the_top_events(trained, synth) -> None:
    meta, _ = synth
    batch = _one(meta, 10)
    ex = explain(trained["st-transformer"], meta, batch, int(batch.target[0]))
    top = ex.events.sort_values(ATTRIBUTION, ascending=False).iloc[0]
    assert ex.summary.startswith("Recommended mainly because of your")
    assert f"({top[schema.ITEM]})" in ex.summary
    assert " away" in ex.summary  # synthetic items have coordinates
    assert np.allclose(ex.events[list(GROUP_COLUMNS.values())].sum(axis=1),
                       ex.events[ATTRIBUTION])


def test_baselines_explain_themselves(synth) -> None:
    meta, batches = synth
    batch = _one(meta, 11)
    hist = batch.item_seq[0][batch.item_seq[0] > 0].tolist()
    for name in ("pop", "repeat", "markov"):
        m = build_model(name, meta)
        m.fit_counts(batches)
        item = hist[-2] if name == "repeat" else int(m.score(batch)[0].argmax())
        ex = explain(m, meta, batch, item)
        assert ex.method == "counts" and ex.delta == 0.0
        assert ex.total == pytest.approx(ex.score - ex.baseline_score, abs=1e-6)
        assert ex.summary
        if name == "pop":
            assert ex.total == 0 and ex.details["popularity"] == float(m.counts[item])
        if name == "repeat":
            mine = ex.events[schema.ITEM] == meta.item_ids[item - 1]
            assert ex.details["your_events"] == int(mine.sum()) >= 1
            assert (ex.events.loc[~mine, ATTRIBUTION] == 0).all()
            assert (ex.events.loc[mine, ATTRIBUTION] > 1.0 / mine.sum()).all()
        if name == "markov":
            prev = torch.cat([b.item_seq[b.target_seq > 0] for b in batches])
            nxt = torch.cat([b.target_seq[b.target_seq > 0] for b in batches])
            expect = int(((prev == hist[-1]) & (nxt == item)).sum())
            assert ex.details["transitions"] == expect
            assert (ex.events[ATTRIBUTION].to_numpy()[:-1] == 0).all()


# -- the store-level API on real data -------------------------------------------------------
@pytest.fixture(scope="module")
def nyc(tmp_path_factory):
    from trailscope.models.api import train

    from tests.models.realdata import real_workspace, slice_dataset

    store = real_workspace(tmp_path_factory.mktemp("explain_nyc"), "nyc")
    slice_dataset(store, "nyc", "nyc40", 40)
    res = train(store, "nyc40", model="st-transformer", epochs=1, pretrain_epochs=0,
                hidden=16, batch_size=128, max_len=20, log=lambda _m: None)
    yield store, res.model_id
    store.close()


def test_explain_user_on_nyc(nyc) -> None:
    from trailscope.models.api import recommend
    from trailscope.models.explain.user import explain_user

    store, model_id = nyc
    user = str(store.query_df(f"SELECT min({schema.USER}) AS u FROM {store.table('nyc40')}")
               ["u"].iloc[0])
    steps: list[float] = []
    ex = explain_user(store, "nyc40", user, model_id=model_id,
                      progress=lambda f, _m: steps.append(f))
    recs = recommend(store, "nyc40", user, k=10, model_id=model_id)
    assert ex.item_id == recs["items"][0]["item_id"]
    assert ex.score == pytest.approx(recs["items"][0]["score"], rel=1e-4, abs=1e-4)
    assert steps[-1] == 1.0 and steps == sorted(steps)
    assert ex.provenance["dataset_fingerprint"] == store.fingerprint("nyc40")
    assert ex.provenance["model_id"] == model_id and "ndcg@10" in ex.provenance["metrics"]
    data = json.loads(json.dumps(ex.to_json()))
    assert {"user", "item", "model", "score", "delta", "events", "groups", "summary"} <= set(data)
    assert set(data["groups"]) == set(GROUPS)
    assert len(data["events"]) == len(ex.events) <= 20
    assert sum(e["attribution"] for e in data["events"]) == pytest.approx(
        data["score"] - data["baseline_score"] + data["delta"], abs=1e-3)
    # explaining another recommended item by id
    other = recs["items"][3]["item_id"]
    assert explain_user(store, "nyc40", user, other, model_id=model_id).item_id == other
    with pytest.raises(ValueError, match="not among"):
        explain_user(store, "nyc40", user, "no-such-item", model_id=model_id)


def test_transition_prior_is_reported_apart_from_the_attributions(synth) -> None:
    from trailscope.models.recommenders.pop import transitions

    meta, batches = synth
    torch.manual_seed(0)
    m = build_model("st-transformer", meta, **SMALL["st-transformer"])
    m.fit_counts(batches)
    train_steps(m, batches, 5)
    m.blend_weights.copy_(torch.tensor([0.5, 0.7, 0.3]))
    m.eval()
    prev, nxt, _ = transitions(batches)
    batch = _one(meta, 10)
    last = int(batch.item_seq[0, -1])
    followers = nxt[prev == last]
    assert len(followers), "the synthetic draw should hold transitions out of the last item"
    item = int(torch.mode(followers).values)
    ex = explain(m, meta, batch, item, counterfactual=False)
    d = ex.details["blend"]
    assert d["weights"] == pytest.approx({"encoder": 0.5, "transitions": 0.7, "history": 0.3})
    t = d["transitions"]
    assert t["count"] == int((followers == item).sum()) > 0
    assert t["from_last"] == len(followers)
    with torch.no_grad():
        # the Markov part's log-probability of the item after the last one
        want = 0.7 * float(m.prior.score(batch)[0, item].log())
    assert t["term"] == pytest.approx(want, rel=1e-5)
    assert d["history"]["your_events"] == int((batch.item_seq[0] == item).sum())
    assert "encoder weight 0.50), the first-order prior (weight 0.70)" in ex.summary
    assert f"{t['count']} of {t['from_last']} times" in ex.summary
    # the prior is constant along the integration path: completeness still holds
    total = float(ex.events[ATTRIBUTION].sum())
    assert abs(total - (ex.score - ex.baseline_score)) <= abs(ex.delta) + 1e-4


def test_an_encoder_without_weight_gets_no_attribution(synth) -> None:
    meta, batches = synth
    torch.manual_seed(0)
    m = build_model("st-transformer", meta, **SMALL["st-transformer"])
    m.fit_counts(batches)
    m.blend_weights.copy_(torch.tensor([0.0, 1.0, 0.5]))
    m.eval()
    batch = _one(meta, 10)
    item = int(batch.item_seq[0, -2])  # in the history: the history part is non-zero
    ex = explain(m, meta, batch, item, counterfactual=False)
    assert ex.score == pytest.approx(float(m.score(batch)[0, item]), rel=1e-5)
    assert ex.events[ATTRIBUTION].abs().sum() == 0 and ex.delta == 0
    assert "your own history (weight 0.50" in ex.summary
    # the history ranks it, so the summary credits it and never says nothing pushed it up
    had = int((batch.item_seq[0] == item).sum())
    assert ex.summary.startswith(
        f"Recommended because you had it {had} time{'' if had == 1 else 's'} before")
    assert "Nothing in this history" not in ex.summary and "(s)" not in ex.summary

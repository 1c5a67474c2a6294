"""Evaluation protocol: full ranking, seen-item masking, slices, next-window task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from trailscope.analytics import schema
from trailscope.models.base import Batch, DataMeta, Recommender
from trailscope.models.data.dataset import build_dataset
from trailscope.models.training.evaluate import (
    activity_labels,
    evaluate_model,
    next_window_metrics,
    score_examples,
)

from tests.models.realdata import save_frame


class Fixed(Recommender):
    """Scores from a rule, for testing the evaluator."""

    name = "fixed"
    trainable = False

    def __init__(self, meta: DataMeta, rule: str) -> None:
        super().__init__(meta, None)
        self.rule = rule

    def score(self, batch: Batch) -> torch.Tensor:
        b, n = batch.target.shape[0], self.meta.n_items + 1
        if self.rule == "constant":
            s = torch.zeros(b, n)
        elif self.rule == "oracle-3":        # target ranked 3rd: two items strictly above it
            s = torch.zeros(b, n)
            s.scatter_(1, batch.target.view(-1, 1), 1.0)
            above = (batch.target.view(-1, 1) % (n - 1)) + 1          # some other item
            above2 = (above % (n - 1)) + 1
            s.scatter_(1, above, 2.0)
            s.scatter_(1, above2, 3.0)
        elif self.rule == "history":        # the user's own last items first
            s = torch.zeros(b, n)
            s.scatter_(1, batch.item_seq, 5.0)
        else:
            raise ValueError(self.rule)
        return self.mask_padding(s)


@pytest.fixture()
def ds(store):
    rng = np.random.default_rng(1)
    rows = []
    for u in range(40):
        for e in range(12 + u):                               # activity grows with u
            rows.append({schema.USER: f"u{u:02d}", schema.ITEM: f"i{rng.integers(0, 30)}",
                         schema.TS: pd.Timestamp("2024-03-01")
                         + pd.Timedelta(hours=int(u * 3 + e * 7))})
    save_frame(store, "ev", pd.DataFrame(rows))
    return build_dataset(store, "ev", "leave-last", min_user=1, min_item=1,
                         exclude_seen=False)


def test_oracle_rank_three(ds):
    out = evaluate_model(Fixed(ds.meta, "oracle-3"), ds, "test")
    assert out["n"] == 40
    assert out["hr@1"] == 0.0 and out["hr@5"] == 1.0
    assert out["ndcg@10"] == pytest.approx(0.5)            # 1 / log2(4)
    assert out["mrr"] == pytest.approx(1 / 3)


def test_constant_scores_rank_last(ds):
    out = evaluate_model(Fixed(ds.meta, "constant"), ds, "test", with_slices=False)
    n = ds.meta.n_items
    assert n > 20
    assert out["hr@20"] == 0.0 and out["mrr"] == pytest.approx(1 / n)


def test_exclude_seen_masks_the_whole_history(ds):
    model = Fixed(ds.meta, "history")
    allowed = score_examples(model, ds, ds.parts["test"], exclude_seen=False)
    masked = score_examples(model, ds, ds.parts["test"], exclude_seen=True)
    ev, ex = ds.events, ds.parts["test"]
    for r in range(len(ex)):
        hist = set(ev.item[ex.start[r]:ex.pos[r]].tolist())
        assert not hist & set(masked.top[r].tolist())                # nothing seen is shown
        if ev.item[ex.pos[r]] in hist:
            assert masked.ranks[r] == ds.meta.n_items               # a repeat cannot be hit
            assert allowed.ranks[r] <= len(hist)


def test_slices_partition_the_examples(ds):
    zones = np.array(["pad"] + [f"z{i % 3}" for i in range(ds.meta.n_items)], dtype=object)
    out = evaluate_model(Fixed(ds.meta, "oracle-3"), ds, "test", zones=zones)
    sl = out["slices"]
    assert set(sl) == {"hour", "weekday", "activity", "cold", "zone"}
    for name, groups in sl.items():
        assert sum(g["n"] for g in groups.values()) == out["n"], name
        for g in groups.values():
            assert g["ndcg@10"] == pytest.approx(0.5)
    assert set(sl["zone"]) <= {"z0", "z1", "z2"}
    assert len(sl["activity"]) == 4
    lows = [int(k.split("-")[0]) for k in sl["activity"]]
    assert lows == sorted(lows)
    with pytest.raises(ValueError, match="one entry per item"):
        evaluate_model(Fixed(ds.meta, "constant"), ds, "test", zones=zones[:-1])


def test_cold_users_are_those_with_short_training_history(store):
    rows = [{schema.USER: f"u{u}", schema.ITEM: f"i{e % 4}",
             schema.TS: pd.Timestamp("2024-01-01") + pd.Timedelta(hours=e)}
            for u in range(6) for e in range(5 + 3 * u)]
    save_frame(store, "cw", pd.DataFrame(rows))
    ds = build_dataset(store, "cw", "leave-last", min_user=1, min_item=1)
    out = evaluate_model(Fixed(ds.meta, "constant"), ds, "test")
    # training lengths: 3, 6, 9, ... -> only u0 (3 < 5) is cold
    assert out["slices"]["cold"]["cold"]["n"] == 1 and out["slices"]["cold"]["warm"]["n"] == 5


def test_next_window_task(store):
    rng = np.random.default_rng(2)
    rows = [{schema.USER: f"u{u}", schema.ITEM: f"i{rng.integers(0, 8)}",
             schema.TS: pd.Timestamp("2024-01-01") + pd.Timedelta(hours=int(rng.integers(0, 2000)))}
            for u in range(30) for _ in range(30)]
    save_frame(store, "nw", pd.DataFrame(rows))
    ds = build_dataset(store, "nw", "temporal", min_user=1, min_item=1)
    out = next_window_metrics(Fixed(ds.meta, "history"), ds, days=7, ks=(5,))
    assert out["users"] > 10
    assert 0 < out["precision@5"] <= 1 and 0 < out["recall@5"] <= 1
    p, r = out["precision@5"], out["recall@5"]
    assert min(p, r) <= out["f1@5"] <= max(p, r)
    ll = build_dataset(store, "nw", "leave-last", min_user=1, min_item=1)
    with pytest.raises(ValueError, match="split='temporal'"):
        next_window_metrics(Fixed(ll.meta, "history"), ll)


def test_activity_bins_label_every_user_even_with_equal_histories():
    assert activity_labels(np.full(5, 28)).tolist() == ["28-28"] * 5
    mixed = activity_labels(np.array([1, 2, 3, 4, 50, 60, 70, 80]))
    assert None not in mixed.tolist() and len(set(mixed.tolist())) == 4

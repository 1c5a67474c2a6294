"""The plain-language summaries (models/explain/text.py) on explanations built from a real
NYC user's check-ins: plurals, and what the text credits when the blend gives the sequence
encoder no weight (the counts, never "nothing pushed it up")."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.models.explain import text
from trailscope.models.explain.types import (
    ATTRIBUTION,
    EVENT_COLUMNS,
    GROUP_COLUMNS,
    GROUPS,
    HOUR,
    ITEM_INDEX,
    POSITION,
    Explanation,
)

from tests.conftest import NYC


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """The first 8 check-ins of the first user of the committed NYC slice, as the events
    frame of an explanation (no attribution yet)."""
    raw = pd.read_csv(NYC, nrows=400)
    mine = raw[raw["user_id"] == raw["user_id"].iloc[0]].head(8).reset_index(drop=True)
    ts = pd.to_datetime(mine["utc_time_minute"])
    ev = pd.DataFrame({POSITION: np.arange(len(mine)), ITEM_INDEX: np.arange(1, len(mine) + 1),
                       schema.ITEM: mine["stan_poi_id"].astype(str), schema.TS: ts,
                       HOUR: ts.dt.hour, schema.CATEGORY: mine["venue_category"],
                       schema.BEHAVIOR: "visit", schema.LAT: mine["latitude"],
                       schema.LON: mine["longitude"], ATTRIBUTION: 0.0})
    for col in GROUP_COLUMNS.values():
        ev[col] = 0.0
    assert len(ev) >= 4
    return ev[list(EVENT_COLUMNS)]


def _explanation(events: pd.DataFrame, item: str, blend: dict | None = None,
                 counterfactual: dict | None = None) -> Explanation:
    groups = {g: float(events[GROUP_COLUMNS[g]].sum()) for g in GROUPS}
    ex = Explanation(model="st-transformer", method="integrated-gradients", item_index=1,
                     item_id=item, score=1.0, baseline_score=1.0, delta=0.0, events=events,
                     groups=groups, counterfactual=counterfactual,
                     details={"blend": blend} if blend else {})
    ex.summary = text.finish_summary(ex)
    return ex


def _blend(encoder: float, *, had: int, count: int, from_last: int, last: str) -> dict:
    return {"weights": {"encoder": encoder, "transitions": 1.0, "history": 0.5},
            "transitions": {"term": -2.5, "count": count, "from_last": from_last,
                            "last_item": last},
            "history": {"term": 2.94 if had else 0.0, "your_events": had}}


def test_count_of_pluralises() -> None:
    assert text.count_of(1, "time") == "1 time"
    assert text.count_of(3, "time") == "3 times"
    assert text.count_of(0, "event") == "0 events"
    assert text.count_of(2000, "training event") == "2,000 training events"
    assert text.count_of(2, "city", "cities") == "2 cities"


@pytest.mark.parametrize("had", [1, 3])
def test_no_encoder_weight_credits_the_history(history, had) -> None:
    item = str(history[schema.ITEM].iloc[1])
    last = str(history[schema.ITEM].iloc[-1])
    ex = _explanation(history, item, _blend(0.0, had=had, count=0, from_last=5, last=last))
    s = ex.summary
    assert "Nothing in this history" not in s and "not from these events" not in s
    assert "Besides these events" not in s
    want = "1 time" if had == 1 else f"{had} times"
    assert s.startswith(f"Recommended because you had it {want} before.")
    assert "no weight" in s and "your own history (weight 0.50) adds +2.94" in s
    assert "(s)" not in s


def test_no_encoder_weight_credits_the_transitions(history) -> None:
    item, last = str(history[schema.ITEM].iloc[2]), str(history[schema.ITEM].iloc[-1])
    ex = _explanation(history, item, _blend(0.0, had=0, count=1, from_last=1, last=last))
    assert ex.summary.startswith(f"Recommended because after {last}, your last event, users "
                                 "went to it 1 of 1 time in training.")
    assert "first-order prior (weight 1.00) adds -2.50" in ex.summary
    both = _explanation(history, item, _blend(0.0, had=2, count=4, from_last=9, last=last))
    assert both.summary.startswith("Recommended because you had it 2 times before and after "
                                   f"{last}, your last event, users went to it 4 of 9 times")


def test_no_encoder_weight_and_no_counts_names_the_fallback(history) -> None:
    item, last = str(history[schema.ITEM].iloc[3]), str(history[schema.ITEM].iloc[-1])
    ex = _explanation(history, item, _blend(0.0, had=0, count=0, from_last=6, last=last))
    assert ex.summary.startswith(f"No one went from {last} to {item} in training")
    assert "fallback" in ex.summary and "Recommended because" not in ex.summary


def test_with_encoder_weight_the_events_and_the_counts_are_told_apart(history) -> None:
    item, last = str(history[schema.ITEM].iloc[1]), str(history[schema.ITEM].iloc[-1])
    ev = history.copy()
    ev.loc[2, [ATTRIBUTION, GROUP_COLUMNS["item"]]] = 0.8
    ex = _explanation(ev, item, _blend(0.5, had=3, count=2, from_last=7, last=last))
    assert ex.summary.startswith("Recommended mainly because of your")
    assert f"({ev[schema.ITEM].iloc[2]})" in ex.summary
    assert "Besides these events (encoder weight 0.50)" in ex.summary
    assert "you had this item 3 times" in ex.summary and "2 of 7 times" in ex.summary
    # no event pushed it up, but the history did: no "nothing pushed it up"
    none_up = _explanation(history, item, _blend(0.5, had=1, count=0, from_last=7, last=last))
    assert none_up.summary.startswith(f"No single event in this history pushed {item} up")
    assert "you had this item 1 time)" in none_up.summary
    assert "Nothing in this history" not in none_up.summary
    # without any count-based part the old sentence stands
    plain = _explanation(history, item)
    assert plain.summary.startswith(f"Nothing in this history pushed {item} up")


def test_the_deletion_sentence_says_which_events_went(history) -> None:
    cf = {"k": 3, "rank_before": 2, "rank_after_top": 9, "rank_after_random": 4.2,
          "n_random": 8}
    item = str(history[schema.ITEM].iloc[1])
    tied = _explanation(history, item, counterfactual=cf)
    assert "Without its 3 most recent events the item moves from rank 2 to 9" in tied.summary
    ev = history.copy()
    ev.loc[0, [ATTRIBUTION, GROUP_COLUMNS["time"]]] = 0.3
    ranked = _explanation(ev, item, counterfactual={**cf, "k": 1})
    assert "Without its 1 most important event the item" in ranked.summary
    assert "(removing 1 random event: rank 4 on average)" in ranked.summary


def test_the_deletion_rows_name_what_each_removed(history) -> None:
    cf = {"k": 1, "rank_before": 2, "score_before": 0.5, "rank_after_top": 9,
          "score_after_top": 0.1, "rank_after_attention": 3, "score_after_attention": 0.4,
          "rank_after_random": 4.25, "score_after_random": 0.3, "n_random": 8}
    item = str(history[schema.ITEM].iloc[1])
    rows = text.deletion_rows(_explanation(history, item, counterfactual=cf))
    assert rows == [("full history", 2, 0.5),
                    ("without the 1 most recent event", 9, 0.1),
                    ("without the 1 event with the most attention", 3, 0.4),
                    ("without 1 random event (mean of 8 draws)", 4.25, 0.3)]
    ev = history.copy()
    ev.loc[0, [ATTRIBUTION, GROUP_COLUMNS["time"]]] = 0.3
    three = {k: v for k, v in cf.items() if "attention" not in k} | {"k": 3, "n_random": 1}
    labels = [r[0] for r in text.deletion_rows(_explanation(ev, item, counterfactual=three))]
    assert labels == ["full history", "without the 3 most attributed events",
                      "without 3 random events (mean of 1 draw)"]
    assert text.deletion_rows(_explanation(history, item, counterfactual={"k": 0})) == []


@pytest.mark.parametrize(("model", "details", "want"), [
    ("repeat", {"your_events": 1, "last_time": "2012-04-03T18:00:00"}, "you had it 1 time "),
    ("repeat", {"your_events": 4, "last_time": "2012-04-03T18:00:00"}, "you had it 4 times "),
    ("markov", {"transitions": 1, "transitions_from_last": 1, "last_item": "a"}, "1 of 1 time "),
    ("pop", {"popularity": 1.0, "rank": 1}, "popular: 1 training event,"),
    ("pop", {"popularity": 1234.0, "rank": 1}, "popular: 1,234 training events,"),
])
def test_count_models_pluralise(history, model, details, want) -> None:
    ex = Explanation(model=model, method="counts", item_index=1, item_id="x", score=1.0,
                     baseline_score=0.0, delta=0.0, events=history,
                     groups=dict.fromkeys(GROUPS, 0.0), details=details)
    s = text.finish_summary(ex)
    assert want in s and not re.search(r"\(s\)|\(es\)", s)

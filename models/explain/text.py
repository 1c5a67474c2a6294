"""Plain-language summaries of explanations ("recommended mainly because of your evening
visits to X and Y, 0.4 km away").

Built only from the numbers in the explanation: the events with the largest positive
attribution, their local time of day, their distance to the recommended item, the feature
groups' shares and the deletion test. The text is plain (no markup); callers escape it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ...analytics import schema
from ..base import ScorePart
from .types import ATTRIBUTION, GROUPS, HOUR, Explanation

GROUP_WORDS = {"item": "which places/items they were", "time": "when they happened",
               "distance": "how far they were", "category": "their categories"}
_NOUNS = {"visit": "visits", "pv": "views", "cart": "cart adds", "fav": "favourites",
          "buy": "purchases", "rate": "ratings"}


def time_of_day(hour: int) -> str:
    """Local hour (0..23) -> morning / afternoon / evening / night."""
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 22:
        return "evening"
    return "night"


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0088 * math.asin(math.sqrt(min(1.0, max(0.0, a))))


def _label(row: pd.Series) -> str:
    cat = row.get(schema.CATEGORY)
    item = str(row[schema.ITEM])
    return f"{cat} ({item})" if isinstance(cat, str) and cat else f"item {item}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _km(x: float) -> str:
    return f"{x:.1f} km" if x >= 0.1 else f"{x * 1000:.0f} m"


def count_of(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with ``noun`` in the right number: "1 time", "3 times", "2,000 events"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def encoder_weight(ex: Explanation) -> float:
    """The blend weight of the sequence encoder, whose inputs the attributions cover (1 for a
    model without count-based parts)."""
    d = ex.details.get("blend")
    return float(d["weights"].get(ScorePart.ENCODER, 1.0)) if d else 1.0


def _credited(ex: Explanation) -> list[str]:
    """What the count-based parts with weight say for the item, in the user's words
    ("you had it 3 times before"); empty when they hold no count for it."""
    d = ex.details.get("blend") or {}
    w = d.get("weights", {})
    out = []
    h = d.get(ScorePart.HISTORY)
    if h and w.get(ScorePart.HISTORY, 0) > 0 and h["your_events"]:
        out.append(f"you had it {count_of(h['your_events'], 'time')} before")
    t = d.get(ScorePart.TRANSITIONS)
    if t and w.get(ScorePart.TRANSITIONS, 0) > 0 and t["count"]:
        out.append(f"after {t['last_item']}, your last event, users went to it "
                   f"{t['count']} of {count_of(t['from_last'], 'time')} in training")
    return out


def evidence_sentence(ex: Explanation, top: int = 2) -> str:
    """The first sentence: the events that pushed the item up most (with an encoder the blend
    gives no weight: what the count-based parts credit instead)."""
    if encoder_weight(ex) == 0:
        return _countparts_lead(ex)
    ev = ex.events
    pos = ev[ev[ATTRIBUTION] > 0].sort_values(ATTRIBUTION, ascending=False)
    pos = pos.drop_duplicates(schema.ITEM).head(top)
    if pos.empty:
        if _credited(ex):
            return (f"No single event in this history pushed {ex.item_id} up through the "
                    "sequence model.")
        return (f"Nothing in this history pushed {ex.item_id} up: its score comes from the "
                "model's general preferences, not from these events.")
    nouns = {_NOUNS.get(str(b), "events") for b in pos[schema.BEHAVIOR].dropna()} or {"events"}
    noun = nouns.pop() if len(nouns) == 1 else "events"
    periods = [time_of_day(int(h)) for h in pos[HOUR]]
    labels = [_label(r) for _, r in pos.iterrows()]
    if len(set(periods)) == 1:
        text = f"your {periods[0]} {noun} to {_join(labels)}"
    else:
        text = f"your {noun} to " + _join([f"{lab} ({p})" for lab, p in
                                            zip(labels, periods, strict=True)])
    if ex.item_lat is not None and ex.item_lon is not None:
        d = [_haversine_km(la, lo, ex.item_lat, ex.item_lon)
             for la, lo in zip(pos[schema.LAT], pos[schema.LON], strict=True)
             if np.isfinite(la) and np.isfinite(lo)]
        if d:
            text += f", {_km(float(np.mean(d)))} away"
    return f"Recommended mainly because of {text}."


def _countparts_lead(ex: Explanation) -> str:
    """The first sentence when the blend gives the encoder no weight: the score is the
    count-based parts' alone, so they, not single events, say why."""
    said = _credited(ex)
    if said:
        return "Recommended because " + _join(said) + "."
    d = ex.details.get("blend") or {}
    t = d.get(ScorePart.TRANSITIONS)
    if t and d["weights"].get(ScorePart.TRANSITIONS, 0) > 0:
        return (f"No one went from {t['last_item']} to {ex.item_id} in training and you have "
                "not had it before: it is recommended as a popular place nearby (the "
                "first-order prior's fallback).")
    return (f"You have not had {ex.item_id} before: it ranks where the model's count-based "
            "parts leave it, not because of anything in this history.")


def groups_sentence(ex: Explanation) -> str:
    """Which feature groups carried the evidence (shares of the absolute total)."""
    mag = {g: abs(ex.groups.get(g, 0.0)) for g in GROUPS}
    total = sum(mag.values())
    if total <= 0:
        return ""
    ranked = [g for g in sorted(mag, key=mag.get, reverse=True) if mag[g] / total >= 0.05]
    parts = [f"{GROUP_WORDS[g]} {100 * mag[g] / total:.0f}%" for g in ranked[:3]]
    return "Of the evidence in these events, " + _join(parts) + "."


def deleted_kind(ex: Explanation) -> str:
    """Which events the deletion test removed first: the "most important" ones, or with no
    attribution at all (every event ties) the "most recent" ones (deletion.py breaks ties
    toward the more recent event)."""
    ev = ex.events
    tied = len(ev) and not ev[ATTRIBUTION].to_numpy().any()
    return "most recent" if tied else "most important"


def deletion_rows(ex: Explanation) -> list[tuple[str, float, float | None]]:
    """The deletion test as rows of (history, rank of the item, score), worded for a reader:
    "full history", "without the 3 most attributed events" (or "most recent" when nothing is
    attributed), "... with the most attention", "without 3 random events (mean of 8 draws)".
    The page's table and chart and the report all show these rows; empty without a test."""
    cf = ex.counterfactual
    if not cf or not cf.get("k"):
        return []
    k, kind = cf["k"], deleted_kind(ex).replace("important", "attributed")
    rows = [("full history", cf["rank_before"], cf.get("score_before")),
            (f"without the {count_of(k, kind + ' event')}", cf["rank_after_top"],
             cf.get("score_after_top"))]
    if "rank_after_attention" in cf:
        rows.append((f"without the {count_of(k, 'event')} with the most attention",
                     cf["rank_after_attention"], cf.get("score_after_attention")))
    if "rank_after_random" in cf:
        draws = f" (mean of {count_of(cf['n_random'], 'draw')})" if cf.get("n_random") else ""
        rows.append((f"without {count_of(k, 'random event')}{draws}",
                     cf["rank_after_random"], cf.get("score_after_random")))
    return rows


def counterfactual_sentence(ex: Explanation) -> str:
    cf = ex.counterfactual
    if not cf or not cf.get("k"):
        return ""
    removed = count_of(cf["k"], deleted_kind(ex) + " event")
    text = (f"Without its {removed} the item moves from rank {cf['rank_before']} to "
            f"{cf['rank_after_top']}")
    if "rank_after_random" in cf:
        text += (f" (removing {count_of(cf['k'], 'random event')}: rank "
                 f"{cf['rank_after_random']:.0f} on average)")
    return text + "."


def counts_summary(ex: Explanation) -> str:
    """Summaries of the count baselines, from their own counts."""
    d = ex.details
    if ex.model == "pop":
        events = count_of(round(float(d.get("popularity", 0))), "training event")
        return (f"Recommended because it is popular: {events}, rank {d.get('rank')} overall. "
                "This model ignores your history.")
    if ex.model == "repeat":
        if not d.get("your_events"):
            return ("Recommended as a popular fallback: you have not had this item before, and "
                    "this model ranks your own past items first.")
        hl = d.get("half_life_hours")
        weigh = (f"recent repeats weigh most (half-life {hl:.0f} h)" if hl is not None
                 else "every past repeat counts alike")
        return (f"Recommended because you had it {count_of(d['your_events'], 'time')} before, most "
                f"recently {str(d.get('last_time', ''))[:16].replace('T', ' ')}; {weigh}.")
    if ex.model == "markov":
        if d.get("transitions"):
            return (f"Recommended because after {d.get('last_item')}, your last event, users "
                    f"went to this item {d['transitions']} of "
                    f"{count_of(d['transitions_from_last'], 'time')} in training.")
        return (f"No one went from {d.get('last_item')} to this item in training; it is "
                "recommended as a popular place nearby (the fallback).")
    return ""


def prior_sentence(ex: Explanation) -> str:
    """The ST-Transformer's count-based parts, when the blend gives them weight: each part's
    weighted term in the score (and, beside the encoder, the counts behind it)."""
    d = ex.details.get("blend")
    if not d:
        return ""
    w = d["weights"]
    alone = encoder_weight(ex) == 0  # the lead sentence already gave the counts
    said = []
    t = d.get(ScorePart.TRANSITIONS)
    if t and w.get(ScorePart.TRANSITIONS, 0) > 0:
        text = (f"the first-order prior (weight {w[ScorePart.TRANSITIONS]:.2f}) adds "
                f"{t['term']:+.2f}")
        if t["count"] and not alone:
            text += (f" (after {t['last_item']}, your last event, users went to this item "
                     f"{t['count']} of {count_of(t['from_last'], 'time')} in training)")
        said.append(text)
    h = d.get(ScorePart.HISTORY)
    if h and w.get(ScorePart.HISTORY, 0) > 0 and h["your_events"]:
        had = "" if alone else f"; you had this item {count_of(h['your_events'], 'time')}"
        said.append(f"your own history (weight {w[ScorePart.HISTORY]:.2f}{had}) adds "
                    f"{h['term']:+.2f}")
    if not said:
        return ""
    if alone:
        return ("This model gives its sequence encoder no weight, so no single event is "
                "credited: in its score " + "; ".join(said) + ".")
    return (f"Besides these events (encoder weight {w[ScorePart.ENCODER]:.2f}), " + "; ".join(said)
            + ".")


def finish_summary(ex: Explanation) -> str:
    """The explanation's summary: evidence, feature groups and the deletion test."""
    if ex.method == "counts":
        return counts_summary(ex)
    parts = [evidence_sentence(ex), groups_sentence(ex), prior_sentence(ex),
             counterfactual_sentence(ex)]
    return " ".join(p for p in parts if p)

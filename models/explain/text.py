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


def evidence_sentence(ex: Explanation, top: int = 2) -> str:
    """The first sentence: the events that pushed the item up most."""
    ev = ex.events
    pos = ev[ev[ATTRIBUTION] > 0].sort_values(ATTRIBUTION, ascending=False)
    pos = pos.drop_duplicates(schema.ITEM).head(top)
    if pos.empty:
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


def groups_sentence(ex: Explanation) -> str:
    """Which feature groups carried the evidence (shares of the absolute total)."""
    mag = {g: abs(ex.groups.get(g, 0.0)) for g in GROUPS}
    total = sum(mag.values())
    if total <= 0:
        return ""
    ranked = [g for g in sorted(mag, key=mag.get, reverse=True) if mag[g] / total >= 0.05]
    parts = [f"{GROUP_WORDS[g]} {100 * mag[g] / total:.0f}%" for g in ranked[:3]]
    return "Of the evidence in these events, " + _join(parts) + "."


def counterfactual_sentence(ex: Explanation) -> str:
    cf = ex.counterfactual
    if not cf or not cf.get("k"):
        return ""
    text = (f"Without its {cf['k']} most important events the item moves from rank "
            f"{cf['rank_before']} to {cf['rank_after_top']}")
    if "rank_after_random" in cf:
        text += (f" (removing {cf['k']} random events: rank {cf['rank_after_random']:.0f} "
                 "on average)")
    return text + "."


def counts_summary(ex: Explanation) -> str:
    """Summaries of the count baselines, from their own counts."""
    d = ex.details
    if ex.model == "pop":
        return (f"Recommended because it is popular: {d.get('popularity', 0):,.0f} training "
                f"events, rank {d.get('rank')} overall. This model ignores your history.")
    if ex.model == "repeat":
        if not d.get("your_events"):
            return ("Recommended as a popular fallback: you have not had this item before, and "
                    "this model ranks your own past items first.")
        hl = d.get("half_life_hours")
        weigh = (f"recent repeats weigh most (half-life {hl:.0f} h)" if hl is not None
                 else "every past repeat counts alike")
        return (f"Recommended because you had it {d['your_events']} time(s) before, most "
                f"recently {str(d.get('last_time', ''))[:16].replace('T', ' ')}; {weigh}.")
    if ex.model == "markov":
        if d.get("transitions"):
            return (f"Recommended because after {d.get('last_item')}, your last event, users "
                    f"went to this item {d['transitions']} of {d['transitions_from_last']} "
                    "times in training.")
        return (f"No one went from {d.get('last_item')} to this item in training; it is "
                "recommended as a popular place nearby (the fallback).")
    return ""


def prior_sentence(ex: Explanation) -> str:
    """The ST-Transformer's count-based parts, when the blend gives them weight."""
    d = ex.details.get("blend")
    if not d:
        return ""
    w = d["weights"]
    said = []
    t = d.get(ScorePart.TRANSITIONS)
    if t and w.get(ScorePart.TRANSITIONS, 0) > 0:
        text = (f"the first-order prior (weight {w[ScorePart.TRANSITIONS]:.2f}) adds "
                f"{t['term']:+.2f}")
        if t["count"]:
            text += (f" (after {t['last_item']}, your last event, users went to this item "
                     f"{t['count']} of {t['from_last']} times in training)")
        said.append(text)
    h = d.get(ScorePart.HISTORY)
    if h and w.get(ScorePart.HISTORY, 0) > 0 and h["your_events"]:
        said.append(f"your own history (weight {w[ScorePart.HISTORY]:.2f}; you had this item "
                    f"{h['your_events']} time(s)) adds {h['term']:+.2f}")
    if not said:
        return ""
    return (f"Besides these events (encoder weight {w[ScorePart.ENCODER]:.2f}), " + "; ".join(said)
            + ".")


def finish_summary(ex: Explanation) -> str:
    """The explanation's summary: evidence, feature groups and the deletion test."""
    if ex.method == "counts":
        return counts_summary(ex)
    parts = [evidence_sentence(ex), groups_sentence(ex), prior_sentence(ex),
             counterfactual_sentence(ex)]
    return " ".join(p for p in parts if p)

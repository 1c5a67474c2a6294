"""Explanations made of counts: the count baselines, and the ST-Transformer's count parts.

The count baselines explain themselves (``CountModel.count_evidence``):

* ``pop``: the item's training popularity; the user's history plays no part.
* ``repeat``: 1 for "you had it before" plus a recency weight per past occurrence (on top of
  a tiny popularity fallback); each occurrence gets its weight, the 1 is shared among them.
* ``markov``: (transitions last -> item + beta * fallback) / (transitions from last + beta);
  everything above the fallback alone belongs to the last event.

Each is exact: the per-event attributions sum to score - baseline score (delta 0), the
baseline being the score without any history.

The ST-Transformer's count-based score parts (``ScorePart.TRANSITIONS``, ``HISTORY``) do not
depend on any attributed layer; :func:`blend_details` reports them apart.
"""

from __future__ import annotations

from typing import Any

import torch

from ..base import Batch, DataMeta, Recommender, ScorePart
from ..recommenders.pop import CountModel
from .types import ATTRIBUTION, GROUP_COLUMNS, GROUPS, Explanation, events_frame, real_positions


def _rank(scores: torch.Tensor, item: int) -> int:
    s = scores.float().clone()
    s[0] = float("-inf")
    return int((s > s[item]).sum()) + 1


@torch.no_grad()
def explain_counts(model: Recommender, meta: DataMeta, batch: Batch, item: int) -> Explanation:
    """Explanation of a count baseline's score of ``item`` for the one-row ``batch``."""
    if not isinstance(model, CountModel):
        raise ValueError(f"no count explanation for model {model.name!r}; count models "
                         "explained here are pop, repeat and markov")
    batch = batch.rows(slice(0, 1))
    model.eval()
    scores = model.score(batch)[0].float()
    score = float(scores[item])
    events = events_frame(batch, meta)
    evidence = model.count_evidence(batch, item, real_positions(batch))
    attr = evidence.per_event
    events[ATTRIBUTION] = attr
    events[GROUP_COLUMNS["item"]] = attr
    groups = {g: 0.0 for g in GROUPS}
    groups["item"] = float(attr.sum())
    return Explanation(model=model.name, method="counts", item_index=item,
                       item_id=meta.item_ids[item - 1], score=score,
                       baseline_score=score - float(attr.sum()), delta=0.0, events=events,
                       groups=groups, details={"rank": _rank(scores, item), **evidence.details})


@torch.no_grad()
def blend_details(model: Recommender, meta: DataMeta, batch: Batch,
                  item: int) -> dict[str, Any] | None:
    """The count-based parts of the model's score of ``item`` (None without any).

    Integrated Gradients attribute the encoder's part only: the transition prior and the
    history part depend on item identities, times and training counts, not on an embedding,
    so they are constant along the integration path. This reports them apart: the blend's
    weights, each part's weighted term in the score, and the counts behind them.
    """
    parts = model.parts
    if len(parts) == 1:
        return None
    batch = batch.rows(slice(0, 1))
    scores = dict(zip(parts, model.score_parts(batch), strict=True))
    out: dict[str, Any] = {"weights": {p.value: model.part_weight(p) for p in parts}}

    def term(part: ScorePart) -> float:
        return model.part_weight(part) * float(scores[part][0, item])

    last = int(batch.item_seq[0, -1])
    if ScorePart.TRANSITIONS in scores:
        observed = model.explain_layers().transition_counts
        if observed is None:
            raise ValueError(f"model {model.name!r} has a transitions part but declares no "
                             "transition_counts in explain_layers()")
        count, from_last = observed(last, item)
        out["transitions"] = {"term": term(ScorePart.TRANSITIONS), "count": count,
                              "from_last": from_last,
                              "last_item": meta.item_ids[last - 1] if last > 0 else None}
    if ScorePart.HISTORY in scores:
        seq = batch.item_seq[0, -meta.max_len:]
        out["history"] = {"term": term(ScorePart.HISTORY),
                          "your_events": int((seq == item).sum())}
    return out

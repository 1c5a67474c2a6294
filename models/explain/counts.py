"""The count baselines explain themselves: their scores are sums of counts we can show.

* ``pop``: the item's training popularity; the user's history plays no part.
* ``repeat``: 1 for "you had it before" plus a recency weight per past occurrence (on top of
  a tiny popularity fallback); each occurrence gets its weight, the 1 is shared among them.
* ``markov``: (transitions last -> item + beta * fallback) / (transitions from last + beta);
  everything above the fallback alone belongs to the last event.

Each is exact: the per-event attributions sum to score - baseline score (delta 0), the
baseline being the score without any history.
"""

from __future__ import annotations

import numpy as np
import torch

from ...analytics import schema
from ..base import Batch, DataMeta, Recommender
from .batch import events_frame, real_positions
from .types import ATTRIBUTION, GROUP_COLUMNS, GROUPS, Explanation

SECONDS_PER_HOUR = 3600.0


def _rank(scores: torch.Tensor, item: int) -> int:
    s = scores.float().clone()
    s[0] = float("-inf")
    return int((s > s[item]).sum()) + 1


@torch.no_grad()
def explain_counts(model: Recommender, meta: DataMeta, batch: Batch, item: int) -> Explanation:
    """Explanation of a count baseline's score of ``item`` for the one-row ``batch``."""
    batch = {k: v[:1] for k, v in batch.items()}
    model.eval()
    scores = model.score(batch)[0].float()
    score = float(scores[item])
    events = events_frame(batch, meta)
    pos = real_positions(batch)
    attr = np.zeros(len(pos))
    details: dict = {"rank": _rank(scores, item)}
    if model.name == "repeat":
        items = batch["item_seq"][0, pos].cpu().numpy()
        age = (batch["target_time"][0] - batch["time_seq"][0, pos]).clamp(min=0.0)
        w = torch.pow(0.5, age / (model.config.half_life_hours * SECONDS_PER_HOUR)).float()
        w = w.cpu().numpy().astype(float)
        mine = items == item
        if mine.any():
            attr = np.where(mine, w + 1.0 / mine.sum(), 0.0)
        details.update(your_events=int(mine.sum()), recency_weight=float(w[mine].sum()),
                       half_life_hours=float(model.config.half_life_hours),
                       last_time=(events.loc[mine, schema.TS].max().isoformat() if mine.any()
                                  else None))
    elif model.name == "markov":
        last = batch["item_seq"][:, -1]
        counts = model._transition_counts(last)[0]
        geo = batch["geo_mask"][:, -1]
        nan = torch.full_like(batch["lat_seq"][:, -1], float("nan"))
        lat = torch.where(geo, batch["lat_seq"][:, -1], nan)
        lon = torch.where(geo, batch["lon_seq"][:, -1], nan)
        fb = model._fallback(lat, lon)[0]
        if len(pos):
            attr[-1] = score - float(fb[item])
        details.update(transitions=int(counts[item]), transitions_from_last=int(counts.sum()),
                       last_item=meta.item_ids[int(last[0]) - 1] if int(last[0]) > 0 else None,
                       fallback=float(fb[item]), beta=float(model.config.min_transitions))
    elif model.name == "pop":
        counts = getattr(model, "counts", None)
        details.update(popularity=float(counts[item]) if counts is not None else score)
    else:
        raise ValueError(f"no count explanation for model {model.name!r}; count models "
                         "explained here are pop, repeat and markov")
    events[ATTRIBUTION] = attr
    events[GROUP_COLUMNS["item"]] = attr
    groups = {g: 0.0 for g in GROUPS}
    groups["item"] = float(attr.sum())
    return Explanation(model=model.name, method="counts", item_index=item,
                       item_id=meta.item_ids[item - 1], score=score,
                       baseline_score=score - float(attr.sum()), delta=0.0, events=events,
                       groups=groups, details=details)


@torch.no_grad()
def blend_details(model: Recommender, meta: DataMeta, batch: Batch, item: int) -> dict | None:
    """The count-based parts of the ST-Transformer's score of ``item`` (None without any).

    Integrated Gradients attribute the encoder's part only: the transition prior and the
    history part depend on item identities, times and training counts, not on an embedding,
    so they are constant along the integration path. This reports them apart: the blend's
    weights, each part's weighted term in the score, and the counts behind them.
    """
    names = getattr(model, "part_names", ("encoder",))
    if len(names) == 1:
        return None
    batch = {k: v[:1] for k, v in batch.items()}
    parts = model.score_parts(batch)
    out: dict = {"weights": {n: model.part_weight(n) for n in names}}
    last = batch["item_seq"][:1, -1]
    if "transitions" in names:
        c = model.transitions.counts
        start, end = int(c.ptr[last[0]]), int(c.ptr[last[0] + 1])
        cols, vals = c.col[start:end], c.val[start:end]
        out["transitions"] = {
            "term": model.part_weight("transitions") * float(parts[names.index("transitions")]
                                                             [0, item]),
            "count": int(vals[cols == item].sum()), "from_last": int(vals.sum()),
            "last_item": meta.item_ids[int(last[0]) - 1] if int(last[0]) > 0 else None}
    if "history" in names:
        seq = batch["item_seq"][0, -meta.max_len:]
        out["history"] = {
            "term": model.part_weight("history") * float(parts[names.index("history")][0, item]),
            "your_events": int((seq == item).sum())}
    return out

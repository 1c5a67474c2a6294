"""The result of explaining one recommendation, shared by every explanation method.

An :class:`Explanation` holds tidy frames (one row per past event, one row per attention
weight) and plain dicts, so the app draws it and the CLI prints it without knowing how it
was computed (Integrated Gradients for neural models, counts for the baselines).
:func:`events_frame` turns the explained history into that per-event frame.

A history batch has one row (B = 1), left-padded like every batch (models/base.py); "event
j" is the j-th real event of that row, oldest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...analytics import schema
from ..base import FEATURE_GROUPS, Batch, DataMeta

#: Feature groups every explanation reports (absent groups are 0).
GROUPS: tuple[str, ...] = FEATURE_GROUPS
#: Per-event frame columns holding each group's attribution.
GROUP_COLUMNS: dict[str, str] = {g: f"attr_{g}" for g in GROUPS}
ATTRIBUTION = "attribution"
POSITION = "position"
ITEM_INDEX = "item_index"
HOUR = "hour"
#: Columns of ``Explanation.events``, oldest event first.
EVENT_COLUMNS: tuple[str, ...] = (
    POSITION, ITEM_INDEX, schema.ITEM, schema.TS, HOUR, schema.CATEGORY, schema.BEHAVIOR,
    schema.LAT, schema.LON, ATTRIBUTION, *GROUP_COLUMNS.values())
#: Columns of ``Explanation.attention`` (weights of the scoring position over past events).
ATTENTION_COLUMNS: tuple[str, ...] = ("layer", "head", POSITION, "weight")


def _num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Explanation:
    """Why ``model`` scores ``item_id`` as it does for one user's history."""

    model: str                     # registry name, e.g. "st-transformer"
    method: str                    # "integrated-gradients" or "counts"
    item_index: int
    item_id: str
    score: float                   # f(x): the model's score of the item
    baseline_score: float          # f(baseline): the score with every attributed group padded
    delta: float                   # sum(attributions) - (score - baseline_score)
    events: pd.DataFrame           # EVENT_COLUMNS, oldest first
    groups: dict[str, float]       # total attribution per group in GROUPS
    n_steps: int = 0
    attention: pd.DataFrame | None = None   # ATTENTION_COLUMNS; None for models without it
    counterfactual: dict[str, Any] | None = None
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # method-specific facts (counts)
    user: str | None = None
    model_id: str | None = None
    item_category: str | None = None
    item_lat: float | None = None
    item_lon: float | None = None
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)
    recommendations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> float:
        """Sum of all per-event attributions (= score - baseline_score + delta)."""
        return float(self.events[ATTRIBUTION].sum()) if len(self.events) else 0.0

    def attention_matrix(self) -> np.ndarray | None:
        """(layer x head, event) weights of the scoring position, rows ordered by layer, head."""
        if self.attention is None or self.attention.empty:
            return None
        wide = self.attention.pivot_table(index=["layer", "head"], columns=POSITION,
                                          values="weight", aggfunc="sum")
        return wide.to_numpy(dtype=float)

    def to_json(self) -> dict[str, Any]:
        """The CLI's ``--json`` object: user, item, model, score, delta, events, groups,
        summary (plus model_id, method, baseline_score and the counterfactual result)."""
        ev = self.events
        ts = pd.to_datetime(ev[schema.TS]) if len(ev) else pd.Series([], dtype="datetime64[us]")
        events = [{"item_id": str(i), "ts": t.isoformat() if pd.notna(t) else None,
                   "attribution": _num(a)}
                  for i, t, a in zip(ev[schema.ITEM], ts, ev[ATTRIBUTION], strict=True)]
        return {"user": self.user, "item": self.item_id, "model": self.model,
                "model_id": self.model_id, "method": self.method, "score": _num(self.score),
                "baseline_score": _num(self.baseline_score), "delta": _num(self.delta),
                "events": events, "groups": {g: _num(self.groups.get(g, 0.0)) for g in GROUPS},
                "counterfactual": self.counterfactual, "summary": self.summary}


def empty_events() -> pd.DataFrame:
    """An events frame with the right columns and no rows."""
    return pd.DataFrame({c: [] for c in EVENT_COLUMNS})


def real_positions(batch: Batch) -> np.ndarray:
    """Column indices of the real events of row 0, oldest first."""
    return np.flatnonzero(batch.item_seq[0].cpu().numpy() > 0)


def _name(vocab: tuple, idx: int) -> str | None:
    return str(vocab[idx - 1]) if 0 < idx <= len(vocab) else None


def events_frame(batch: Batch, meta: DataMeta) -> pd.DataFrame:
    """Row 0's real events as a frame (oldest first) with zero attribution columns."""
    pos = real_positions(batch)
    row = {k: getattr(batch, k)[0].cpu().numpy() for k in Batch.SEQ_FIELDS}
    items = row["item_seq"][pos]
    cats = tuple(meta.extra.get("category_names", ()))
    behs = tuple(meta.extra.get("behavior_names", ()))
    geo = row["geo_mask"][pos].astype(bool)
    ts = pd.to_datetime(np.round(row["time_seq"][pos] * 1e6).astype("int64"), unit="us")
    out = pd.DataFrame({
        POSITION: np.arange(len(pos), dtype=np.int64),
        ITEM_INDEX: items.astype(np.int64),
        schema.ITEM: [meta.item_ids[i - 1] if 0 < i <= len(meta.item_ids) else str(i)
                      for i in items],
        schema.TS: ts,
        HOUR: (row["hour_seq"][pos] - 1).astype(np.int64),
        schema.CATEGORY: [_name(cats, int(c)) for c in row["cat_seq"][pos]],
        schema.BEHAVIOR: [_name(behs, int(b)) for b in row["beh_seq"][pos]],
        schema.LAT: np.where(geo, row["lat_seq"][pos].astype(np.float64), np.nan),
        schema.LON: np.where(geo, row["lon_seq"][pos].astype(np.float64), np.nan),
        ATTRIBUTION: np.zeros(len(pos)),
    })
    for col in GROUP_COLUMNS.values():
        out[col] = 0.0
    out[schema.CATEGORY] = out[schema.CATEGORY].astype("string")
    out[schema.BEHAVIOR] = out[schema.BEHAVIOR].astype("string")
    return out

"""The one contract every next-item model follows (RecBole-style, without its trainer).

A :class:`Batch` is a dataclass of tensors built by ``models.data``. Sequences are
left-padded: position ``L-1`` is the most recent event, index 0 is padding everywhere.

``score(batch)`` returns (B, n_items + 1) scores over ALL items; column 0 (padding) is -inf.
Whether already-seen items are masked is the evaluator's job, not the model's.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn


@dataclass
class Batch:
    """A batch of left-padded histories (B = batch size, L = sequence length)."""

    user: torch.Tensor            # (B,) long: user index (1..n_users)
    item_seq: torch.Tensor        # (B, L) long: item indices, 0 = padding
    time_seq: torch.Tensor        # (B, L) float64: unix seconds (0 where padded)
    lat_seq: torch.Tensor         # (B, L) float32: latitude (0 where unknown; see geo_mask)
    lon_seq: torch.Tensor         # (B, L) float32: longitude
    geo_mask: torch.Tensor        # (B, L) bool: True where the event has coordinates
    hour_seq: torch.Tensor        # (B, L) long: local hour + 1 (1..24), 0 = padding
    weekday_seq: torch.Tensor     # (B, L) long: local weekday + 1 (1..7, Monday = 1), 0 = pad
    cat_seq: torch.Tensor         # (B, L) long: category index, 0 = padding/unknown
    beh_seq: torch.Tensor         # (B, L) long: behaviour index, 0 = padding
    target: torch.Tensor          # (B,) long: the next item (what is scored at evaluation)
    target_time: torch.Tensor     # (B,) float64: unix seconds of the next event ("at T")
    target_hour: torch.Tensor     # (B,) long: same encoding as hour_seq
    target_weekday: torch.Tensor  # (B,) long: same encoding as weekday_seq
    target_seq: torch.Tensor      # (B, L) long: next item after each position, 0 = none
    len: torch.Tensor             # (B,) long: number of real events in item_seq

    #: the (B, L) fields: cropped, reordered and re-padded together
    SEQ_FIELDS: ClassVar[tuple[str, ...]] = (
        "item_seq", "time_seq", "lat_seq", "lon_seq", "geo_mask", "hour_seq", "weekday_seq",
        "cat_seq", "beh_seq", "target_seq")

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every field by name (a shallow view, not a copy)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """A new batch with ``fn`` applied to every tensor."""
        return Batch(**{k: fn(v) for k, v in self.tensors().items()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on ``device``; a shallow copy, with no torch call, when it is there
        already (a torch call lets other threads take the GIL: see models.api.recommend)."""
        device = torch.device(device)
        if all(t.device == device for t in self.tensors().values()):
            return self.copy()
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def rows(self, index: slice | torch.Tensor) -> Batch:
        """The rows ``index`` of every tensor (``batch.rows(slice(0, 1))``: the first row)."""
        return self.map(lambda t: t[index])

    def expand(self, n: int) -> Batch:
        """Row 0 repeated ``n`` times (views, no copies)."""
        return self.map(lambda t: t[:1].expand(n, *t.shape[1:]))

    def copy(self) -> Batch:
        """A shallow copy whose fields can be reassigned without touching this batch."""
        return dataclasses.replace(self)

    def crop(self, max_len: int) -> Batch:
        """Keep the most recent ``max_len`` positions of every sequence (left padding stays
        left); the batch itself when it is not longer."""
        if self.item_seq.shape[1] <= max_len:
            return self
        out = self.copy()
        for name in self.SEQ_FIELDS:
            setattr(out, name, getattr(self, name)[:, -max_len:])
        out.len = self.len.clamp(max=max_len)
        return out

    @property
    def size(self) -> int:
        """B, the number of rows."""
        return int(self.item_seq.shape[0])

#: Feature groups every explanation reports, in this order (absent groups are 0).
FEATURE_GROUPS: tuple[str, ...] = ("item", "time", "distance", "category")


class ScorePart(StrEnum):
    """A part of a model's score; ``score`` is their blend (models.training.blend).

    Every model has the encoder part (its own score); the ST-Transformer may add count-based
    parts, which its explanations report apart from the attributions.
    """

    ENCODER = "encoder"            # the trained network (with any distance-to-candidate bias)
    TRANSITIONS = "transitions"    # first-order prior from the training transitions
    HISTORY = "history"            # the user's own recent items, recency-weighted


@dataclass(frozen=True)
class EmbeddingInput:
    """An embedding layer whose output carries one feature group of the past events."""

    name: str                      # reported in Explanation.details["layers"]
    group: str                     # one of FEATURE_GROUPS
    layer: nn.Module               # called once per forward pass on a (B, L) index tensor
    # "position": output row j is batch column j; "input": rows follow the layer's own input
    # (the model reorders or crops before the lookup), mapped back through its non-zero ids
    order: Literal["position", "input"] = "position"


@dataclass(frozen=True)
class ItemLookup:
    """Item embeddings that enter without a module call: ``table()[item_seq] * scale`` is
    added into the input of ``entry`` (the ST-Transformer's text-fused item table)."""

    table: Callable[[], torch.Tensor]
    scale: float
    entry: nn.Module               # the first module the summed (B, L, D) input goes through


@dataclass(frozen=True)
class ExplainLayers:
    """What a model's explanations attribute, declared by the model (the way Captum's
    ``LayerIntegratedGradients`` is handed its layers): models.explain never looks a layer
    up by name, so renaming a field breaks here, loudly, not in a silent zero attribution.
    """

    embeddings: tuple[EmbeddingInput, ...] = ()
    item_lookup: ItemLookup | None = None
    # pairwise attention biases (nn.st_features.RelationBias in "bias" mode: ``term`` and
    # ``combine``); ``relation_groups`` maps each of its tables to a feature group
    relations: nn.Module | None = None
    relation_groups: tuple[tuple[str, str], ...] = ()
    candidate: nn.Module | None = None   # distance-to-candidate score bias (B, n_items)
    attention: tuple[nn.Module, ...] = ()  # nn.layers.Attention modules, first layer first
    # (last item, item) -> (training transitions last -> item, all from last), for the
    # TRANSITIONS score part
    transition_counts: Callable[[int, int], tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        groups = [e.group for e in self.embeddings] + [g for _, g in self.relation_groups]
        bad = [g for g in groups if g not in FEATURE_GROUPS]
        if bad:
            raise ValueError(f"unknown feature groups {bad}; use one of {FEATURE_GROUPS}")

    def modules(self) -> dict[str, nn.Module]:
        """Every declared module by a readable name (checked by tests/models)."""
        out = {e.name: e.layer for e in self.embeddings}
        if self.item_lookup is not None:
            out["item_lookup.entry"] = self.item_lookup.entry
        if self.relations is not None:
            out["relations"] = self.relations
        if self.candidate is not None:
            out["candidate"] = self.candidate
        out.update({f"attention.{i}": a for i, a in enumerate(self.attention)})
        return out


@dataclass(frozen=True)
class DataMeta:
    """What a model needs to know about the data it is built for (stored in checkpoints)."""

    n_items: int                      # item indices run 1..n_items
    n_users: int
    n_categories: int                 # category indices run 1..n_categories
    n_behaviors: int
    max_len: int
    item_ids: tuple[str, ...] = ()    # item_ids[i - 1] is the external id of index i
    item_lat: tuple[float, ...] = ()  # per item index - 1; NaN when unknown
    item_lon: tuple[float, ...] = ()
    item_category: tuple[int, ...] = ()  # category index per item index - 1
    item_popularity: tuple[int, ...] = ()  # training counts per item index - 1
    has_coordinates: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def _positions(self) -> dict[str, dict[str, int]]:
        return {}  # index_of's maps, built on first use (this meta's vocabularies never change)

    def index_of(self, vocabulary: str) -> dict[str, int]:
        """{id: 1-based index} of ``item_ids`` or of a list in ``extra`` (``user_ids``,
        ``category_names``, ``behavior_names``), built once per meta: a request for one
        user's history looks a few ids up, not the whole vocabulary (2.6 ms at 100k items)."""
        got = self._positions.get(vocabulary)
        if got is None:
            values = (self.item_ids if vocabulary == "item_ids"
                      else self.extra.get(vocabulary, ()))
            got = self._positions.setdefault(
                vocabulary, {v: i for i, v in enumerate(values, start=1)})
        return got

    def item_coords(self) -> np.ndarray:
        """(n_items + 1, 2) lat/lon array with row 0 = NaN padding."""
        out = np.full((self.n_items + 1, 2), np.nan)
        if self.item_lat:
            out[1:, 0] = self.item_lat
            out[1:, 1] = self.item_lon
        return out


class Recommender(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``score``; trainable ones ``loss``.

    Non-neural models (``trainable = False``) compute what they need in ``fit_counts`` from
    the training batches and are never passed to an optimiser.
    """

    name: ClassVar[str] = "base"
    trainable: ClassVar[bool] = True
    #: the parts of ``score`` (``score_parts`` returns one score per part, in this order)
    parts: tuple[ScorePart, ...] = (ScorePart.ENCODER,)

    def __init__(self, meta: DataMeta, config: Any) -> None:
        super().__init__()
        self.meta = meta
        self.config = config

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} is not trained by gradient descent")

    def score(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def pretrain_loss(self, batch: Batch) -> torch.Tensor:
        """A self-supervised loss trained before ``loss`` when ``wants_pretraining``."""
        raise NotImplementedError(f"{self.name} has no pre-training objective")

    @property
    def wants_pretraining(self) -> bool:
        """Whether train() runs ``pretrain_loss`` epochs first. Default: no."""
        return False

    def fit_counts(self, batches: list[Batch]) -> None:
        """Non-neural models: build statistics from training batches. Default: nothing."""

    def calibrate(self, ds: Any, device: torch.device | str = "cpu") -> str | None:
        """After training (best weights loaded): fit what must be fitted on held-out data,
        from ``ds``'s validation part. Returns a line for the training log. Default: nothing.
        """
        return None

    def chosen_settings(self) -> dict[str, Any]:
        """Settings ``calibrate`` chose on validation data, by name (the training log, the
        checkpoint's metrics and the bench show them). Default: none."""
        return {}

    def score_near(self, batch: Batch, lat: float, lon: float) -> torch.Tensor:
        """Scores given the user's current position. Default: the position is not used
        (the distance-aware baselines anchor their fallback there)."""
        return self.score(batch)

    def score_parts(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """(B, n_items + 1) score of each of ``parts``. Default: the score is the one part."""
        return (self.score(batch),)

    def part_weight(self, part: ScorePart) -> float:
        """The blend weight of ``part`` in ``score`` (0 for a part the model lacks)."""
        return 1.0 if part == ScorePart.ENCODER else 0.0

    def explain_layers(self) -> ExplainLayers:
        """The layers Integrated Gradients attribute and the attention shown. Default: none
        (count models explain themselves through ``count_evidence``)."""
        return ExplainLayers()

    @staticmethod
    def mask_padding(scores: torch.Tensor) -> torch.Tensor:
        scores[:, 0] = float("-inf")
        return scores

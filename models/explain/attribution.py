"""Why a model recommends an item: Captum Layer Integrated Gradients on its declared layers.

``explain(model, meta, batch, item)`` explains the score of ``item`` for the one-row history
``batch`` (models.data.history.history_batch). Neural models get Integrated Gradients
through a plain scoring function ``f(batch) -> score of item`` (:func:`score_fn`), attributed
at the outputs of the layers the model declares in ``explain_layers()``
(models.base.ExplainLayers), by feature group of the past events:

========== ===================================================================================
group      declared layers (an absent group is 0)
========== ===================================================================================
item       the item embedding of each past event (for the ST-Transformer the lookup in
           ``item_table()``, tapped where it enters the encoder: ``ItemLookup``)
time       hour and weekday embeddings, the gap-to-next-event embedding, and the pairwise
           time-gap attention biases
distance   the pairwise distance attention biases and the distance-to-candidate score bias
category   the category embedding of each past event
========== ===================================================================================

The baseline is padding: every attributed layer outputs what padding gives (zero rows for
embeddings with ``padding_idx=0``, a zero bias for the relation tables), while the sequence
structure (which positions are real, positions, behaviours, the target slot) stays as it is.
So f(baseline) is the score with all that evidence removed, and by completeness the
attributions sum to f(x) - f(baseline) up to the reported convergence delta. Captum only
ever evaluates the forward function at the input and at the baseline; each attributed layer
is multiplied by a per-row presence flag (1 = input, 0 = baseline) through forward hooks
and Captum interpolates between the two. Pairwise terms are split evenly between their two
events; the distance-to-candidate bias goes to the event that gave the last known position.
The ST-Transformer's count-based score parts (``ScorePart.TRANSITIONS``, ``HISTORY``; see
models.training.blend) do not depend on any attributed layer, so they are reported apart,
with their counts (``details["blend"]``).

Count baselines (pop, repeat, markov) explain themselves (models.explain.counts).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from torch import nn

from ..base import Batch, DataMeta, ExplainLayers, Recommender, ScorePart
from .attention import attention_frame, attention_importance
from .counts import blend_details, explain_counts
from .deletion import deletion_test
from .text import finish_summary
from .types import ATTRIBUTION, GROUP_COLUMNS, GROUPS, Explanation, events_frame, real_positions

__all__ = ["Explanation", "explain", "integrated_gradients", "score_fn", "IGResult"]


def score_fn(model: Recommender, item: int) -> Callable[[Batch], torch.Tensor]:
    """The plain scoring function explained: ``f(batch) -> (B,)`` score of ``item``."""

    def f(batch: Batch) -> torch.Tensor:
        return model.score(batch)[:, item].float()

    return f


class _Tap(nn.Module):
    """Identity layer placed where a feature enters the model without a module call, so
    Captum has a layer output to interpolate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@dataclass
class _Site:
    name: str
    group: str
    layer: nn.Module      # the layer Captum attributes at
    kind: str             # "seq" | "input_order" | "pair" | "candidate"


class _Flag:
    """Per-row presence (1 = input, 0 = padding baseline) read by the hooks."""

    value: torch.Tensor | None = None

    def like(self, out: torch.Tensor) -> torch.Tensor:
        v = self.value
        if v is None or v.shape[0] != out.shape[0]:
            raise RuntimeError("explanation hooks ran outside the explained forward pass")
        return v.to(out.dtype).view(-1, *([1] * (out.dim() - 1)))


class _Instrument:
    """Forward hooks that scale each declared layer's output by the presence flag."""

    def __init__(self, layers: ExplainLayers) -> None:
        self.layers = layers
        self.flag = _Flag()
        self.taps: dict[str, _Tap] = {}
        self.inputs: dict[str, torch.Tensor] = {}   # last index input of each embedding site
        self.fired: set[str] = set()
        self.items: torch.Tensor | None = None      # item_seq of the running batch
        self.sites = self._sites()

    def _tap(self, name: str) -> _Tap:
        if name not in self.taps:
            self.taps[name] = _Tap()
        return self.taps[name]

    def _sites(self) -> list[_Site]:
        """One site per declared layer; those that never run are dropped later."""
        lay, out = self.layers, []
        for e in lay.embeddings:
            out.append(_Site(e.name, e.group, e.layer,
                             "input_order" if e.order == "input" else "seq"))
        if lay.item_lookup is not None:
            out.append(_Site("item_lookup", "item", self._tap("item_lookup"), "seq"))
        if lay.relations is not None:
            for table, group in lay.relation_groups:
                name = f"rel_{table}"
                out.append(_Site(name, group, self._tap(name), "pair"))
        if lay.candidate is not None:
            out.append(_Site("candidate", "distance", self._tap("candidate"), "candidate"))
        return out

    @contextmanager
    def hooks(self, sites: list[_Site]) -> Iterator[None]:
        lay, handles = self.layers, []
        names = {s.name for s in sites}

        def scaled(name: str):
            def hook(_mod: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
                self.fired.add(name)
                self.inputs[name] = args[0]
                return out * self.flag.like(out)
            return hook

        for s in sites:
            if s.kind in ("seq", "input_order") and not isinstance(s.layer, _Tap):
                handles.append(s.layer.register_forward_hook(scaled(s.name)))
        if "item_lookup" in names:
            handles.append(lay.item_lookup.entry.register_forward_pre_hook(self._item_lookup_hook))
        if lay.relations is not None and any(s.kind == "pair" for s in sites):
            handles.append(lay.relations.register_forward_hook(self._relation_hook))
        if "candidate" in names:
            handles.append(lay.candidate.register_forward_hook(self._candidate_hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _item_lookup_hook(self, _mod: nn.Module, args: tuple) -> tuple:
        # the model adds table()[items] * scale into x before the entry module; swap that
        # term for its tapped, flag-scaled copy (x - e + tap(e * flag) == x at 1)
        x, lookup = args[0], self.layers.item_lookup
        if self.items is None or x.dim() != 3 or x.shape[:2] != self.items.shape:
            return args
        self.fired.add("item_lookup")
        e = torch.nn.functional.embedding(self.items, lookup.table()) * lookup.scale
        return (x - e + self.taps["item_lookup"](e * self.flag.like(e)), *args[1:])

    def _relation_hook(self, mod: nn.Module, args: tuple, _out: list) -> list:
        # recompute RelationBias.forward with each relation's term tapped and flag-scaled
        ids, mask_bias = args[0], args[1]
        total = None
        for name, b in ids.items():
            tap = f"rel_{name}"
            self.fired.add(tap)
            term = mod.term(name, b)  # (B, L, L, n_layers * H)
            term = self.taps[tap](term * self.flag.like(term))
            total = term if total is None else total + term
        if total is None:
            return _out
        return mod.combine(total, mask_bias)

    def _candidate_hook(self, _mod: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
        self.fired.add("candidate")
        return self.taps["candidate"](out * self.flag.like(out))


@dataclass
class IGResult:
    """Integrated Gradients of one item's score over one history."""

    per_group: dict[str, np.ndarray]   # group -> (n_events,) attributions, oldest first
    score: float
    baseline_score: float
    delta: float
    sites: list[str]                   # the layers attributed
    n_steps: int                       # integration steps used (see ``rtol``)


def _site_to_events(site: _Site, attr: torch.Tensor, inst: _Instrument, batch: Batch,
                    pos: np.ndarray) -> np.ndarray:
    """Map one layer's attribution tensor (1, ...) to (n_events,)."""
    a = attr[0].detach().double()
    if site.kind == "seq":
        return a.sum(-1).cpu().numpy()[pos]
    if site.kind == "input_order":   # e.g. GRU4Rec rotates rows before the lookup
        idx = inst.inputs[site.name][0].cpu().numpy()
        per = a.sum(-1).cpu().numpy()
        return per[np.flatnonzero(idx > 0)][-len(pos):] if len(pos) else per[:0]
    if site.kind == "pair":
        m = a.sum(-1).cpu().numpy()  # (L, L): query i, key j
        return (0.5 * (m.sum(0) + m.sum(1)))[pos]
    out = np.zeros(len(pos))         # candidate bias: the last event with a known position
    if len(pos):
        geo = batch.geo_mask[0].cpu().numpy()[pos]
        j = int(np.flatnonzero(geo)[-1]) if geo.any() else len(pos) - 1
        out[j] = float(a.sum())
    return out


def integrated_gradients(model: Recommender, batch: Batch, item: int, n_steps: int = 32,
                         max_steps: int = 256, rtol: float = 0.01) -> IGResult:
    """Layer Integrated Gradients of ``score_fn(model, item)`` for the history ``batch``.

    Starts with ``n_steps`` and doubles them (up to ``max_steps``) while the convergence delta
    exceeds ``rtol`` of |f(x) - f(baseline)|: the padding baseline sends LayerNorms through
    near-zero inputs, where the path bends sharply and a coarse integral drifts.
    """
    if n_steps < 2:
        raise ValueError(f"n_steps must be >= 2, got {n_steps}")
    model.eval()
    batch = batch.rows(slice(0, 1))
    f = score_fn(model, item)
    if model.part_weight(ScorePart.ENCODER) == 0:
        # the blend gave the encoder no weight: nothing in the score depends on the
        # attributed layers, every attribution is 0 (the count parts are reported apart)
        with torch.no_grad():
            score = float(f(batch)[0])
        pos = real_positions(batch)
        return IGResult({g: np.zeros(len(pos)) for g in GROUPS}, score, score, 0.0, [], 0)
    inst = _Instrument(model.explain_layers())
    sites = inst.sites
    inst.items = batch.item_seq
    with inst.hooks(sites), torch.no_grad():  # dry run: which layers does this model use?
        inst.flag.value = torch.ones(1, device=batch.item_seq.device)
        f(batch)
    sites = [s for s in sites if s.name in inst.fired]
    if not sites:
        raise ValueError(f"model {model.name!r} has no embedding layers to attribute to; "
                         "only neural sequence models (st-transformer, sasrec, gru) and the "
                         "count baselines can be explained")

    def forward(present: torch.Tensor) -> torch.Tensor:
        n = present.shape[0]
        inst.flag.value = present.view(n)
        inst.items = batch.item_seq[:1].expand(n, -1)
        return f(batch.expand(n))

    dev = batch.item_seq.device
    one, zero = torch.ones(1, 1, device=dev), torch.zeros(1, 1, device=dev)
    with warnings.catch_warnings():  # "multiple layers": ours are parallel, none feeds another
        warnings.simplefilter("ignore", UserWarning)
        lig = LayerIntegratedGradients(forward, [s.layer for s in sites])
    with inst.hooks(sites):
        with torch.no_grad():
            score, base = (float(forward(x)[0]) for x in (one, zero))
        steps = n_steps
        while True:
            attrs, delta = lig.attribute(one, baselines=zero, n_steps=steps,
                                         return_convergence_delta=True)
            d = float(delta.reshape(-1)[0])
            if abs(d) <= rtol * abs(score - base) + 1e-6 or steps * 2 > max_steps:
                break
            steps *= 2
    pos = real_positions(batch)
    per_group = {g: np.zeros(len(pos)) for g in GROUPS}
    for site, attr in zip(sites, attrs, strict=True):
        per_group[site.group] += _site_to_events(site, attr, inst, batch, pos)
    return IGResult(per_group, score, base, d, [s.name for s in sites], steps)


def _item_facts(meta: DataMeta, item: int) -> tuple[str | None, float | None, float | None]:
    cats = tuple(meta.extra.get("category_names", ()))
    c = meta.item_category[item - 1] if len(meta.item_category) >= item else 0
    coords = meta.item_coords()[item]
    lat, lon = (float(coords[0]), float(coords[1])) if np.isfinite(coords).all() else (None,
                                                                                     None)
    return (str(cats[c - 1]) if 0 < c <= len(cats) else None), lat, lon


def explain(model: Recommender, meta: DataMeta, batch: Batch, item: int, *,
            n_steps: int = 32, max_steps: int = 256, rtol: float = 0.01,
            deletion_k: int = 3, n_random: int = 8,
            exclude: np.ndarray | None = None, seed: int = 0,
            counterfactual: bool = True) -> Explanation:
    """Explain the score of item index ``item`` for the one-row history ``batch``.

    Neural models: Integrated Gradients per event and group, attention weights (transformers),
    and the deletion test (remove the ``deletion_k`` most attributed events vs. random ones
    and re-rank, ``exclude`` = items left out of the ranking). Baselines: their counts.
    ``n_steps``/``max_steps``/``rtol``: see :func:`integrated_gradients`.
    """
    if not 0 < item <= meta.n_items:
        raise ValueError(f"item index {item} is outside 1..{meta.n_items}")
    if int((batch.item_seq[0] > 0).sum()) == 0:
        raise ValueError("the history is empty: there is nothing to explain")
    t0 = time.perf_counter()
    cat, lat, lon = _item_facts(meta, item)
    if not model.trainable:
        ex = explain_counts(model, meta, batch, item)
    else:
        ig = integrated_gradients(model, batch, item, n_steps, max_steps, rtol)
        events = events_frame(batch, meta)
        for g in GROUPS:
            events[GROUP_COLUMNS[g]] = ig.per_group[g]
        events[ATTRIBUTION] = sum(ig.per_group[g] for g in GROUPS)
        ex = Explanation(model=model.name, method="integrated-gradients", item_index=item,
                         item_id=meta.item_ids[item - 1], score=ig.score,
                         baseline_score=ig.baseline_score, delta=ig.delta, events=events,
                         groups={g: float(ig.per_group[g].sum()) for g in GROUPS},
                         n_steps=ig.n_steps, details={"layers": ig.sites})
        blend = blend_details(model, meta, batch, item)
        if blend is not None:  # constant along the IG path: reported apart
            ex.details["blend"] = blend
        ex.attention = attention_frame(model, batch)
        if counterfactual and len(events) > 1:
            att = attention_importance(ex.attention, len(events))
            ex.counterfactual = deletion_test(model, batch, item, events[ATTRIBUTION].to_numpy(),
                                              k=deletion_k, n_random=n_random, exclude=exclude,
                                              seed=seed, attention=att)
    ex.item_category, ex.item_lat, ex.item_lon = cat, lat, lon
    ex.summary = finish_summary(ex)
    ex.seconds = time.perf_counter() - t0
    return ex

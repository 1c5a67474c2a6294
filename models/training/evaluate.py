"""Evaluation protocol: full ranking over all items, sliced by time, activity and coldness.

``evaluate_model(model, ds, "test")`` scores every example of a split part against ALL items
(ties pessimistic, see models.metrics), optionally masking items the user already had
(``ds.exclude_seen``: the mask covers the user's whole history, not only the last ``L``),
and returns the summary metrics plus ``slices``: by local hour and weekday of the target,
by zone of the target item (when ``zones`` is given), by user activity (quantile bins of
training history length) and cold vs warm users.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..base import Batch, Recommender
from ..data.dataset import SeqDataset
from ..data.splits import Examples
from . import metrics as mt

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
COLD_THRESHOLD = 5       # users with fewer training events than this are "cold"
ACTIVITY_BINS = 4
#: ``progress(batches done, batches in all)`` after each scored batch
BatchProgress = Callable[[int, int], None]


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training step and the evaluation on ``device``: bf16 on a
    CUDA device that computes it natively (Ampere and later), else None (float32). Never
    fp16: the training step has no gradient scaler, so small fp16 gradients would flush to
    zero; and CPU bf16 is slower and less accurate."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    with torch.cuda.device(device):
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native else None


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to :func:`amp_dtype` (training and evaluation both run under it); a no-op
    where that is float32."""
    dtype = amp_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


@dataclass(frozen=True)
class Ranked:
    """Per-example output of one scoring pass."""

    examples: Examples
    ranks: np.ndarray   # (N,) pessimistic 1-based rank of the target among all items
    top: np.ndarray     # (N, TOP_K) best item indices, best first; 0 = no item (masked)


#: ``prepare_part`` keeps a part's batches only up to this many history slots (examples x
#: ``max_len``; about 60 bytes each): beyond, each pass builds them again
PREPARED_SLOTS = 4_000_000


@dataclass(frozen=True)
class Prepared:
    """A part's batches and each batch's seen items (row, item) to mask, built once (on the
    device that ranks them) to be ranked again and again: every epoch's validation, and
    tuning, which ranks the same validation examples under dozens of settings (the very same
    batch objects, so a model may keep what a batch costs it whatever its settings)."""

    examples: Examples
    batch_size: int
    batches: tuple[tuple[Batch, tuple[torch.Tensor, torch.Tensor] | None], ...]


def _batches(ds: SeqDataset, ex: Examples, excl: bool, batch_size: int,
             device: torch.device,
             ) -> Iterator[tuple[Batch, tuple[torch.Tensor, torch.Tensor] | None]]:
    for i in range(0, len(ex), batch_size):
        sub = ex.subset(np.arange(i, min(i + batch_size, len(ex))))
        seen = None
        if excl:
            rows, items = ds.history_items(sub)
            seen = (torch.from_numpy(rows).to(device), torch.from_numpy(items).to(device))
        yield ds.batch(sub).to(device, non_blocking=True), seen


def prepare_part(ds: SeqDataset, part: str = "valid", exclude_seen: bool | None = None,
                 batch_size: int = 256, device: torch.device | str = "cpu") -> Prepared | None:
    """``part``'s batches built once on ``device`` (see ``Prepared``); None when they would
    take more than ``PREPARED_SLOTS`` history slots of memory."""
    ex = ds.parts[part]
    if len(ex) * ds.meta.max_len > PREPARED_SLOTS:
        return None
    excl = ds.exclude_seen if exclude_seen is None else exclude_seen
    return Prepared(ex, batch_size,
                    tuple(_batches(ds, ex, excl, batch_size, torch.device(device))))


@torch.no_grad()
def score_examples(model: Recommender, ds: SeqDataset, ex: Examples,
                   exclude_seen: bool | None = None, batch_size: int = 256,
                   device: torch.device | str = "cpu",
                   progress: BatchProgress | None = None, prepared: Prepared | None = None,
                   with_top: bool = True) -> Ranked:
    """Rank each example's target among all items; keep the top ``mt.TOP_K`` items (none
    without ``with_top``); ``progress`` hears of each batch done. ``prepared``: ``ex``'s
    batches built by ``prepare_part`` with the same ``exclude_seen`` and ``batch_size``."""
    device = torch.device(device)
    excl = ds.exclude_seen if exclude_seen is None else exclude_seen
    was_training = model.training
    model.eval()
    ranks, tops = [], []
    k = min(mt.TOP_K, ds.meta.n_items) if with_top else 0
    if prepared is not None:
        batch_size = prepared.batch_size
    n_batches = -(-len(ex) // batch_size)
    batches = prepared.batches if prepared is not None else _batches(ds, ex, excl, batch_size,
                                                                     device)
    for done, (batch, seen) in enumerate(batches, 1):
        batch = batch.to(device, non_blocking=True)  # the same tensors when already there
        with autocast(device):
            scores = model.score(batch)
        scores = scores.float()                                          # (B, n_items + 1)
        scores = scores.masked_fill(torch.isnan(scores), float("-inf"))  # a copy: safe to edit
        scores[:, 0] = float("-inf")
        if seen is not None:
            scores[seen[0].to(device), seen[1].to(device)] = float("-inf")
        r = mt.full_ranks(scores, batch.target, clean_nan=False).clamp(max=ds.meta.n_items)
        ranks.append(r.cpu().numpy())
        if with_top:
            best = scores.topk(k, dim=1)
            # fewer than k rankable items (all else masked): pad with 0, not -inf items
            tops.append(torch.where(torch.isneginf(best.values), 0, best.indices).cpu().numpy())
        else:
            tops.append(np.zeros((len(r), 0), np.int64))
        if progress is not None:
            progress(done, n_batches)
    model.train(was_training)
    if not ranks:
        return Ranked(ex, np.zeros(0, np.int64), np.zeros((0, k), np.int64))
    return Ranked(ex, np.concatenate(ranks), np.concatenate(tops))


def rank_metrics(model: Recommender, ds: SeqDataset, prepared: Prepared | None,
                 part: str = "valid", device: torch.device | str = "cpu",
                 progress: BatchProgress | None = None) -> tuple[float, float]:
    """(NDCG@10, MRR) of ``part`` (``prepared``: its batches, when built), the values
    ``evaluate_model`` reports, without the top-K lists."""
    ex = prepared.examples if prepared is not None else ds.parts[part]
    ranked = score_examples(model, ds, ex, device=device, progress=progress,
                            prepared=prepared, with_top=False)
    return mt.ndcg(ranked.ranks, 10), mt.mrr(ranked.ranks)


def _group(labels: np.ndarray, ranked: Ranked, pop: np.ndarray,
           n_items: int, order: list | None = None) -> dict[str, dict]:
    out: dict[str, dict] = {}
    keys = order if order is not None else sorted(pd.unique(labels).tolist(), key=str)
    for key in keys:
        sel = labels == key
        if sel.any():
            out[str(key)] = mt.summarize(ranked.ranks[sel], ranked.top[sel], pop, n_items)
    return out


def activity_labels(train_len: np.ndarray, bins: int = ACTIVITY_BINS) -> np.ndarray:
    """Quantile bins of training history length, labelled by their ranges (``12-40``)."""
    if train_len.size == 0:
        return np.zeros(0, dtype=object)
    cat = pd.qcut(pd.Series(train_len), q=bins, duplicates="drop")
    labels = np.empty(len(train_len), dtype=object)
    for c in cat.cat.categories:
        sel = (cat == c).to_numpy()
        if sel.any():
            lo, hi = int(train_len[sel].min()), int(train_len[sel].max())
            labels[sel] = f"{lo}-{hi}"
    rest = np.equal(labels, None)  # no bins at all: every user has the same history length
    if rest.any():
        labels[rest] = f"{int(train_len[rest].min())}-{int(train_len[rest].max())}"
    return labels


def slice_metrics(ranked: Ranked, ds: SeqDataset, zones: np.ndarray | None = None,
                  cold_threshold: int = COLD_THRESHOLD) -> dict[str, dict]:
    """Every summary metric per slice: hour, weekday, zone, activity, cold/warm."""
    ev, ex = ds.events, ranked.examples
    pop = np.r_[0, np.asarray(ds.meta.item_popularity)]
    n = ds.meta.n_items
    hist = ds.train_len[ex.user]
    out = {
        "hour": _group(ev.hour[ex.pos] - 1, ranked, pop, n, order=list(range(24))),
        "weekday": _group(np.array(WEEKDAYS)[ev.weekday[ex.pos] - 1], ranked, pop, n,
                          order=list(WEEKDAYS)),
        "activity": _group(activity_labels(hist), ranked, pop, n,
                           order=sorted(set(activity_labels(hist).tolist()),
                                        key=lambda s: int(str(s).split("-")[0]))),
        "cold": _group(np.where(hist < cold_threshold, "cold", "warm"), ranked, pop, n,
                       order=["cold", "warm"]),
    }
    if zones is not None:
        zones = np.asarray(zones)
        if zones.shape[0] != n + 1:
            raise ValueError(f"zones must have one entry per item index (n_items + 1 = {n + 1})"
                             f", got {zones.shape[0]}")
        out["zone"] = _group(zones[ev.item[ex.pos]], ranked, pop, n)
    return out


def evaluate_model(model: Recommender, ds: SeqDataset, part: str = "test",
                   zones: np.ndarray | None = None, exclude_seen: bool | None = None,
                   batch_size: int = 256, device: torch.device | str = "cpu",
                   with_slices: bool = True, progress: BatchProgress | None = None) -> dict:
    """Summary metrics of ``part`` plus ``slices`` (see module docstring); ``progress``
    hears of each batch ranked."""
    ranked = score_examples(model, ds, ds.parts[part], exclude_seen, batch_size, device,
                            progress)
    pop = np.r_[0, np.asarray(ds.meta.item_popularity)]
    out: dict = mt.summarize(ranked.ranks, ranked.top, pop, ds.meta.n_items)
    if with_slices:
        out["slices"] = slice_metrics(ranked, ds, zones)
    return out


def next_window_examples(ds: SeqDataset, days: float = 7.0) -> tuple[Examples, list[set[int]]]:
    """Users with history before the test cut and events in the ``days`` after it.

    Each example's input is the user's history before the cut; its truth is the set of items
    the user interacted with in ``[cut, cut + days)``. Needs a time-cut split (temporal).
    """
    cuts = ds.split_report.cuts
    if len(cuts) < 2:
        raise ValueError(f"the next-window task needs a time-cut split; {ds.name!r} was split "
                         f"{ds.split_report.split!r}: rebuild it with split='temporal'")
    cut = cuts[1]
    ev = ds.events
    users = np.arange(1, ds.meta.n_users + 1)
    lo = ev.user_start[users]
    n = ds.meta.n_users + 1
    # events are sorted by time within each user: position = start + events before the time
    first_after = lo + np.bincount(ev.user[ev.ts < cut], minlength=n)[users]
    end = lo + np.bincount(ev.user[ev.ts < cut + days * 86400.0], minlength=n)[users]
    keep = (first_after > lo) & (end > first_after)
    ex = Examples(users[keep].astype(np.int64), first_after[keep], lo[keep].astype(np.int64))
    truth = [set(ev.item[a:b].tolist()) for a, b in zip(first_after[keep], end[keep], strict=True)]
    return ex, truth


def next_window_metrics(model: Recommender, ds: SeqDataset, days: float = 7.0,
                        ks: tuple[int, ...] = (5, 10, 20), batch_size: int = 256,
                        device: torch.device | str = "cpu",
                        progress: BatchProgress | None = None) -> dict:
    """Precision/Recall/F1@K of top-K lists against the items of each user's next ``days``."""
    ex, truth = next_window_examples(ds, days)
    ranked = score_examples(model, ds, ex, None, batch_size, device, progress)
    out: dict = {"days": days, "users": len(ex)}
    for k in ks:
        res = mt.precision_recall_f1(ranked.top, truth, k)
        res.pop("users")
        out.update(res)
    return out

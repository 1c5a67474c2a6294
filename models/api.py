"""The models service API: what the CLI and the dashboard call.

``train`` (re-exported from models.training.loop), ``update`` (an online update: continue
a trained model on the events since, models.training.online), ``evaluate``, ``list_models``,
``load`` and ``recommend``. Nothing is cached here: ``load`` rebuilds a model from its file on
every call, and a caller that serves many requests (the dashboard's service layer) memoises
the loaded model and hands it to ``recommend(..., loaded=...)``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analytics.store import Store
from .data.dataset import build_dataset
from .data.history import user_history
from .training import checkpoint as ckpt
from .training.evaluate import evaluate_model
from .training.loop import TrainResult, train
from .training.online import UpdateResult, update

__all__ = ["train", "TrainResult", "update", "UpdateResult", "evaluate", "list_models",
           "best_model", "default_model", "load", "recommend"]

METRIC_KEYS = ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr",
               "coverage@10", "popularity@10")


def list_models(store: Store, name: str) -> list[dict[str, Any]]:
    """Trained models of dataset ``name``, newest first.

    Each: model_id, model, split, created, train_seconds, test metrics (flat),
    ``val_ndcg@10`` (validation NDCG@10, None for checkpoints without it), ``cancelled`` (its
    training was cancelled: the best epoch so far was kept), ``stale`` (the dataset changed
    since training: such a model refuses to load), path, config and ``chosen`` (the settings
    chosen on validation), ``parent`` (the model an online update continued; None for a
    model trained from scratch).
    """
    store.info(name)  # raises DatasetNotFound with a helpful message
    fp = store.fingerprint(name)
    out = []
    for info in ckpt.list_checkpoints(store, name):
        metrics = info.get("metrics") or {}
        test = metrics.get("test", {})
        out.append({"model_id": info["model_id"], "model": info["model"],
                    "split": info["split"], "created": info.get("created"),
                    "train_seconds": info.get("train_seconds"),
                    "cancelled": bool(info.get("cancelled")),
                    "stale": info.get("fingerprint") != fp, "path": info["path"],
                    "config": info.get("config", {}), "chosen": chosen_settings(info),
                    "val_ndcg@10": (metrics.get("valid") or {}).get("ndcg@10"),
                    "parent": info.get("parent"),
                    **{k: test.get(k) for k in METRIC_KEYS}})
    return out


def chosen_settings(info: dict[str, Any]) -> dict[str, Any]:
    """The settings the model chose on validation (count parts' windows, half-lives and
    smoothing, blend weights); empty for models that choose none or older checkpoints."""
    return dict((info.get("metrics") or {}).get("chosen") or {})


def _row(info: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    return {"model": info["model"], "model_id": info["model_id"], "split": info["split"],
            **{k: test.get(k) for k in METRIC_KEYS}, "n": test.get("n"),
            "train_seconds": info.get("train_seconds"), "chosen": chosen_settings(info),
            "slices": test.get("slices", {})}


def evaluate(store: Store, name: str, model_id: str = "all",
             recompute: bool = False) -> list[dict[str, Any]]:
    """Test metrics (with slices) of one model or all of a dataset's current models.

    By default the metrics computed at the end of training are returned (stale models, whose
    dataset changed, are left out). ``recompute=True`` reloads each model and re-runs the
    evaluation on the current data.
    """
    fp = store.fingerprint(name)
    if model_id == "all":
        infos = [i for i in ckpt.list_checkpoints(store, name) if i.get("fingerprint") == fp]
    else:
        path = ckpt.find(store, name, model_id)
        infos = [{**ckpt.read_info(path), "path": str(path)}]
    rows = []
    for info in infos:
        if recompute:
            loaded = ckpt.load(Path(info["path"]), store)
            p = info.get("data_params", {})
            ds = build_dataset(store, name, info["split"], p.get("max_len", 50),
                               p.get("min_user", 5), p.get("min_item", 5),
                               p.get("exclude_seen", "auto"))
            test = evaluate_model(loaded.model, ds, "test")
        else:
            test = (info.get("metrics") or {}).get("test", {})
        rows.append(_row(info, test))
    return rows


def best_model(models: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of ``list_models`` to use by default: the current (not stale) model with the
    best validation NDCG@10 (the test part is for reporting, never for choosing), newest
    first on a tie; a cancelled training only when no finished one is current."""
    current = [m for m in models if not m["stale"]]
    pool = [m for m in current if not m["cancelled"]] or current
    if not pool:
        return None
    return max(pool, key=lambda m: -math.inf if m.get("val_ndcg@10") is None
               else m["val_ndcg@10"])


def default_model(store: Store, name: str) -> str:
    """The id of the dataset's default model (:func:`best_model`: best validation NDCG@10,
    cancelled trainings last)."""
    best = best_model(list_models(store, name))
    if best is None:
        raise ckpt.CheckpointError(
            f"no trained model for dataset {name!r}; train one first (e.g. "
            f"`trailscope train {name} --model markov`)")
    return best["model_id"]


def load(store: Store, name: str, model_id: str | None = None) -> ckpt.Loaded:
    """Rebuild model ``model_id`` of dataset ``name`` (default: its best current model) from
    its checkpoint; refuses a model whose dataset changed since training (CheckpointError)."""
    return ckpt.load(ckpt.find(store, name, model_id or default_model(store, name)), store)


def _finite(x: float) -> float | None:
    """Coordinates rounded to 1e-6 degrees (~0.1 m; they are stored as float32)."""
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


@torch.no_grad()
def recommend(store: Store, name: str, user: str, k: int = 10, model_id: str | None = None,
              at: datetime | str | float | None = None, lat: float | None = None,
              lon: float | None = None, *, loaded: ckpt.Loaded | None = None) -> dict[str, Any]:
    """Top-``k`` next items for ``user`` from their full history.

    ``at`` is the time to recommend for (default: the user's last event), which sets the
    target hour/weekday; ``lat``/``lon`` is an optional current position, passed to the
    model's ``score_near`` (only the distance-aware baselines use it). Default model: the
    dataset's default model (:func:`best_model`). ``loaded``: that model already
    loaded (``load``), with ``model_id`` naming it.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if (lat is None) != (lon is None):
        raise ValueError("give both lat and lon for a current position, or neither")
    if loaded is not None and not model_id:
        raise ValueError("recommend(loaded=...) needs the model_id of the loaded model")
    model_id = model_id or default_model(store, name)
    loaded = loaded or load(store, name, model_id)
    model, meta = loaded.model, loaded.meta
    hist = user_history(store, name, user, meta, at, lat, lon,
                        seen=bool(meta.extra.get("exclude_seen")))
    dev = next(iter(model.buffers()), torch.zeros(0)).device
    batch = hist.batch.to(dev)
    if lat is not None:
        scores = model.score_near(batch, float(lat), float(lon))
    else:
        scores = model.score(batch)
    # the rest in numpy: every torch call lets the request's thread give up the GIL, and
    # under load it waits up to the switch interval (5 ms) to get it back
    row = scores[0].float().cpu().numpy().copy()                        # (n_items + 1,)
    row[0] = -np.inf
    if meta.extra.get("exclude_seen"):
        row[hist.items] = -np.inf
    row[np.isnan(row)] = -np.inf
    kk = min(k, meta.n_items)
    cut = row[np.argpartition(-row, kk - 1)[kk - 1]]             # the k-th best score
    better = np.flatnonzero(row > cut)
    top = np.r_[better, np.flatnonzero(row == cut)[:kk - len(better)]]
    top = top[np.lexsort((top, -row[top]))]        # best first; ties by item index, also at k
    cats = meta.extra.get("category_names", ())
    items = []
    for s, i in zip(row[top].tolist(), top.tolist(), strict=True):
        if not math.isfinite(s):
            break
        c = meta.item_category[i - 1] if meta.item_category else 0
        items.append({"item_id": meta.item_ids[i - 1], "score": float(s),
                      "category": cats[c - 1] if c > 0 else None,
                      # the top items' places only (meta.item_coords() builds every item's:
                      # 4.7 ms per request at 100k items)
                      "lat": _finite(meta.item_lat[i - 1]) if meta.item_lat else None,
                      "lon": _finite(meta.item_lon[i - 1]) if meta.item_lon else None})
    return {"user": str(user), "model": model.name, "model_id": model_id,
            "at": datetime.fromtimestamp(hist.at, UTC).replace(tzinfo=None).isoformat(),
            "history_used": int(hist.batch.len.item()),
            "unknown_items_skipped": hist.skipped, "items": items}

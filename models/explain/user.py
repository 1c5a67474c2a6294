"""Explanations from the workspace: a dataset, a user, a trained model, an item.

``explain_user(store, "nyc", "470")`` loads the dataset's best model (or ``model_id``),
builds the user's history through the model's own vocabularies, takes the top
recommendation (or ``item_id``) and explains it (models.explain), adding the provenance a
report needs: dataset and model names, fingerprints and test metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ...analytics.store import Store
from .. import api
from ..data.history import user_history, user_index
from ..training import checkpoint as ckpt
from .attribution import explain
from .types import Explanation

#: test metrics copied into an explanation's provenance
PROVENANCE_METRICS = ("hr@10", "ndcg@10", "mrr", "coverage@10")

Progress = Callable[[float, str], None]


class ExplainError(ValueError):
    """An explanation that cannot be made; the message says why and what to do."""


def item_index(item_ids: tuple[str, ...], item_id: str) -> int:
    """1-based index of ``item_id`` in a model's sorted item vocabulary, 0 if unknown."""
    pos = int(np.searchsorted(np.asarray(item_ids, dtype=object), str(item_id)))
    return pos + 1 if pos < len(item_ids) and item_ids[pos] == str(item_id) else 0


def provenance(store: Store, name: str, info: dict[str, Any]) -> dict[str, Any]:
    """Dataset and model facts for a report: names, fingerprints, split, metrics."""
    test = (info.get("metrics") or {}).get("test", {})
    return {"dataset": name, "dataset_fingerprint": store.fingerprint(name),
            "model_id": info.get("model_id"), "model": info.get("model"),
            "trained_on_fingerprint": info.get("fingerprint"), "split": info.get("split"),
            "created": info.get("created"), "train_seconds": info.get("train_seconds"),
            "metrics": {k: test.get(k) for k in PROVENANCE_METRICS if k in test},
            "config": info.get("config", {})}


def explain_user(store: Store, name: str, user: str, item_id: str | None = None,
                 model_id: str | None = None, *, k: int = 10, n_steps: int = 32,
                 deletion_k: int = 3, progress: Progress | None = None,
                 loaded: ckpt.Loaded | None = None,
                 recs: dict[str, Any] | None = None) -> Explanation:
    """Explain why ``model_id`` (default: the dataset's best current model) recommends
    ``item_id`` (default: its top recommendation) to ``user``. ``loaded``: that model
    already loaded (``api.load``; a caller explaining many users loads it once); ``recs``:
    its ``api.recommend(store, name, user, k=k, model_id=model_id)`` answer, when the caller
    already has it (the Explain page shows them before the click)."""
    def step(frac: float, msg: str) -> None:
        if progress is not None:
            progress(frac, msg)

    step(0.05, "loading the model")
    model_id = model_id or api.default_model(store, name)
    loaded = loaded or api.load(store, name, model_id)
    model, meta = loaded.model, loaded.meta
    user_index(meta, user)
    if recs is None or recs.get("model_id") != model_id or str(recs.get("user")) != str(user):
        step(0.15, "recommending")
        recs = api.recommend(store, name, user, k=k, model_id=model_id, loaded=loaded)
    if item_id is None:
        if not recs["items"]:
            raise ExplainError(f"model {model_id} recommends nothing to user {user!r}; "
                               "pick an item with --item")
        item_id = recs["items"][0]["item_id"]
    idx = item_index(meta.item_ids, str(item_id))
    if idx == 0:
        raise ExplainError(f"item {item_id!r} is not among the {meta.n_items} items model "
                           f"{model_id} knows; pick one of its recommendations")
    hist = user_history(store, name, user, meta, seen=bool(meta.extra.get("exclude_seen")))
    dev = next(iter(model.buffers()), None)
    batch = hist.batch.to(dev.device) if dev is not None else hist.batch
    exclude = hist.items if meta.extra.get("exclude_seen") else None
    step(0.3, f"attributing the score of {item_id} ({model.name})")
    ex = explain(model, meta, batch, idx, n_steps=n_steps, deletion_k=deletion_k,
                 exclude=exclude)
    ex.user, ex.model_id = str(user), model_id
    ex.provenance = provenance(store, name, loaded.info)
    ex.recommendations = recs["items"]
    step(1.0, "done")
    return ex

"""Model checkpoints: everything needed to rebuild a model and to refuse stale data.

A checkpoint is ``$TRAILSCOPE_HOME/models/<dataset>/<model>-<timestamp>.pt`` (the folder next
to the workspace's DuckDB file) plus a small ``.json`` sidecar with the same stem, so listing
models never unpickles weights. The model id is the file stem. The ``.pt`` file holds only
plain types and tensors (loaded with ``weights_only=True``): the config as a dict + the class
name, the state dict, DataMeta as a dict (item index = external ids), the split and data
parameters, metrics, history, the dataset name and ``store.fingerprint(dataset)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ...analytics import schema
from ...analytics.schema import check_dataset_name
from ...analytics.store import Store
from ..base import DataMeta, Recommender
from ..recommenders.registry import get_class, make_config

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def models_dir(store: Store, dataset: str) -> Path:
    """Folder of a dataset's checkpoints (created on demand)."""
    check_dataset_name(dataset)
    return store.path.parent / "models" / dataset


def new_model_id(model: str) -> str:
    return f"{model}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"


def _jsonable(x: Any) -> Any:
    """Metrics/history with NaN turned into None so the sidecar is strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def meta_to_dict(meta: DataMeta) -> dict[str, Any]:
    return dataclasses.asdict(meta)


def meta_from_dict(d: dict[str, Any]) -> DataMeta:
    fields = {f.name for f in dataclasses.fields(DataMeta)}
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
    return DataMeta(**tuples)


def data_extent(store: Store, dataset: str) -> dict[str, Any]:
    """What a checkpoint records of the dataset as it was when the model was trained, for
    online updates (models.training.online): ``trained_until``, the time of its last event
    (unix seconds; an update trains on the targets after it), and ``dataset_rows``, its
    stored rows (the update scheduler starts an update when there are more)."""
    cur = store.cursor()
    try:
        rows, last = cur.execute(f"SELECT count(*), epoch_us(max({schema.TS})) "
                                 f"FROM {store.table(dataset)}").fetchone()
    finally:
        cur.close()
    return {"trained_until": None if last is None else last / 1e6, "dataset_rows": int(rows)}


def save(store: Store, dataset: str, model: Recommender, *, split: str,
         data_params: dict[str, Any], metrics: dict[str, Any], history: list[dict],
         train_seconds: float, model_id: str | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write ``<model_id>.pt`` and its ``.json`` sidecar atomically; returns the .pt path.
    The sidecar records :func:`data_extent` as stored now unless ``extra`` gives it (an
    update measures it before reading the events)."""
    folder = models_dir(store, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    model_id = model_id or new_model_id(model.name)
    info = {
        "format": FORMAT, "model_id": model_id, "model": model.name,
        "class": type(model).__qualname__, "config": dataclasses.asdict(model.config),
        "dataset": dataset, "fingerprint": store.fingerprint(dataset), "split": split,
        "data_params": data_params, "metrics": _jsonable(metrics),
        "history": _jsonable(history), "train_seconds": float(train_seconds),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **data_extent(store, dataset), **(extra or {}),
    }
    blob = {**info, "meta": meta_to_dict(model.meta),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    path = folder / f"{model_id}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    tmp_side = side.with_suffix(".json.tmp")
    tmp_side.write_text(json.dumps(info, indent=1, default=str))
    os.replace(tmp_side, side)
    return path


def read_info(path: Path) -> dict[str, Any]:
    """The sidecar of a checkpoint (no weights)."""
    return json.loads(Path(path).with_suffix(".json").read_text())


def list_checkpoints(store: Store, dataset: str) -> list[dict[str, Any]]:
    """Sidecars of a dataset's checkpoints (the registry of its saved models), newest first,
    each with its ``path``; the model id is the file's stem, whatever the sidecar says."""
    folder = models_dir(store, dataset)
    out = []
    for side in sorted(folder.glob("*.json"), reverse=True):
        pt = side.with_suffix(".pt")
        if pt.exists():
            info = json.loads(side.read_text())
            info["model_id"] = pt.stem
            info["path"] = str(pt)
            out.append(info)
    return sorted(out, key=lambda i: i.get("created", ""), reverse=True)


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def find(store: Store, dataset: str, model_id: str) -> Path:
    """The checkpoint of ``model_id``, which must be one of the dataset's saved models
    (:func:`list_checkpoints`: a ``.pt`` file with its ``.json`` sidecar): the id is looked up
    among the folder's file names, never joined into a path, so an id such as ``../other/x``
    names no file outside the dataset's folder. Reads no sidecar (every recommendation asks)."""
    folder = models_dir(store, dataset)
    try:
        with os.scandir(folder) as entries:
            names = {e.name for e in entries}
    except FileNotFoundError:
        names = set()
    if isinstance(model_id, str) and f"{model_id}.pt" in names and f"{model_id}.json" in names:
        return folder / f"{model_id}.pt"
    ids = [i["model_id"] for i in list_checkpoints(store, dataset)] if names else []
    listed = ", ".join(ids[:10]) + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")
    raise CheckpointError(f"no model {_shown(str(model_id))} for dataset {dataset!r}; trained "
                          f"models: {listed or 'none (train one first)'}")


@dataclass
class Loaded:
    model: Recommender
    meta: DataMeta
    info: dict[str, Any]   # everything but the weights and meta


def load(path: str | Path, store: Store, device: torch.device | str = "cpu",
         check_fingerprint: bool = True) -> Loaded:
    """Rebuild a model from ``path``; refuses if its dataset changed since training."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path.name} does not exist; list the trained "
                              "models with `trailscope evaluate NAME`")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} has checkpoint format {blob.get('format')}, this "
                              f"TrailScope reads format {FORMAT}; retrain the model")
    dataset = blob["dataset"]
    if check_fingerprint:
        if not store.exists(dataset):
            raise CheckpointError(f"model {path.stem} was trained on dataset {dataset!r}, "
                                  "which is not in this workspace; import it again first")
        now = store.fingerprint(dataset)
        if now != blob["fingerprint"]:
            raise CheckpointError(
                f"model {path.stem} was trained on dataset {dataset!r} with fingerprint "
                f"{blob['fingerprint']}, but the dataset now has fingerprint {now}: it was "
                "re-imported or changed since. Retrain the model on the current data.")
    cls = get_class(blob["model"])
    meta = meta_from_dict(blob["meta"])
    model = cls(meta, make_config(cls, blob["config"]))
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:  # missing/unexpected weights: saved by another version
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CheckpointError(
            f"model {path.stem} was saved by a version of {blob['model']} with other weights "
            f"than this TrailScope's ({first}); retrain the model") from exc
    model.to(torch.device(device))
    model.eval()
    info = {k: v for k, v in blob.items() if k not in ("state_dict", "meta")}
    info["path"] = str(path)
    return Loaded(model, meta, info)

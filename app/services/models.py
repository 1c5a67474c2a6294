"""The models part of the service layer: what the Models and Explain pages call (models.api
through app/services/jobs.py and app/services/cache.py).

Pages never import models/ directly. Everything reads and trains through the process-wide
``services.get_store()``; training runs as a background job (kind ``train``). Trained models
are loaded once and memoised in ``cache.MODELS`` (:func:`loaded_model`), keyed by the
checkpoint file's version and the dataset's import stamp. Errors a user can fix come out as
:class:`services.ServiceError` (or the model layer's own ``CheckpointError``/``UnknownUser``)
with a message saying what to change.
"""

from __future__ import annotations

import array
import bisect
import dataclasses
import logging
import re
import sys
import threading
from typing import Any

import pandas as pd

from ...analytics import schema
from . import cache, jobs
from . import workspace as services
from .workspace import ServiceError

SPLITS: tuple[str, ...] = ("leave-last", "temporal", "trajectory")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
LIMITS: dict[str, tuple[int, int]] = {"epochs": (1, 500), "max_len": (2, 500),
                                      "hidden": (8, 1024), "patience": (1, 1000),
                                      "processes": (1, 64)}
MAX_USERS = 100    # users one list or search of a model's users returns at most
INTERVAL_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600}

log = logging.getLogger(__name__)


def _class(name: str) -> Any:
    from ...models.recommenders import registry

    try:
        return registry.get_class(name)
    except KeyError as exc:
        raise ServiceError(str(exc.args[0])) from None


def model_choices() -> list[dict[str, Any]]:
    """Every registered model: name, trainable and its Config defaults."""
    from ...models.recommenders import registry

    out = []
    for name, cls in registry.MODELS.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls.Config)
                    if f.default is not dataclasses.MISSING}
        out.append({"name": name, "trainable": bool(cls.trainable), "defaults": defaults,
                    "has_hidden": "hidden" in defaults,
                    "pretrains": bool(defaults.get("pretrain"))})
    return out


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _bounded(what: str, value: Any) -> int:
    lo, hi = LIMITS[what]
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ServiceError(f"{what.replace('_', ' ')} must be a whole number between {lo} and "
                           f"{hi}; got {value!r}") from None
    if not lo <= v <= hi:
        raise ServiceError(f"{what.replace('_', ' ')} must be between {lo} and {hi}; got {v}")
    return v


def start_training(dataset: str | None, model: str | None, split: str = "leave-last",
                   epochs: Any = 10, max_len: Any = 50, hidden: Any = None,
                   device: str = "auto", patience: Any = 3, processes: Any = 1,
                   **train_kwargs: Any) -> str:
    """Validate the settings and start a background training job; returns the job id.
    ``processes`` > 1: PyTorch DDP in that many processes (models.training.distributed)."""
    if not dataset:
        raise ServiceError("no dataset selected: import one on the Data page first")
    services.dataset_info(dataset)  # DatasetNotFound with a helpful message
    if not model:
        raise ServiceError("pick a model to train")
    cls = _class(model)
    if split not in SPLITS:
        raise ServiceError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if device not in DEVICES:
        raise ServiceError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cuda" and not cuda_available():
        raise ServiceError("device 'cuda' needs a CUDA GPU and this server has none; "
                           "choose 'auto' or 'cpu'")
    if hidden not in (None, "") and "hidden" in {f.name for f in dataclasses.fields(cls.Config)}:
        train_kwargs["hidden"] = _bounded("hidden", hidden)
    values = {"split": split, "epochs": _bounded("epochs", epochs),
              "max_len": _bounded("max_len", max_len), "device": device,
              "patience": _bounded("patience", patience if patience else 3), **train_kwargs}
    job = jobs.training_job(services.get_store(), dataset, model, **values)
    procs = _bounded("processes", processes if processes else 1)
    if procs > 1:  # PyTorch DDP through torchrun: the same job, its target runs the processes
        from ...models.training.distributed import DistributedError, launch_target

        job = dataclasses.replace(
            job, target=launch_target(services.get_store(), dataset, model, values, procs),
            meta={**job.meta, "processes": procs}, expected=(*job.expected, DistributedError))
    try:
        return jobs.start(job)
    except jobs.QueueFull as exc:
        raise ServiceError(str(exc)) from exc


def active_job(dataset: str | None) -> dict[str, Any] | None:
    """The newest queued or running job of ``dataset``, if any."""
    if not dataset:
        return None
    found = jobs.jobs(active_only=True, kind="train", dataset=dataset)
    return found[0] if found else None


def job_snapshot(job_id: str) -> dict[str, Any]:
    """The job's state (jobs.JobRunner.snapshot); KeyError if the job is unknown."""
    return jobs.snapshot(job_id)


def cancel_job(job_id: str) -> bool:
    """Ask a job to stop (keeps the best checkpoint so far); KeyError if unknown."""
    return jobs.cancel(job_id)


# -- online updates --------------------------------------------------------------------------
def parse_interval(text: str, what: str = "interval") -> float:
    """Seconds of an interval written as a number and a unit: ``15m``, ``1h``, ``900s``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh])\s*", str(text or "").lower())
    if not m:
        raise ValueError(f"{what} {text!r} is not an interval: give a number and a unit s, m or "
                         "h, e.g. 15m, 1h or 900s")
    seconds = float(m.group(1)) * INTERVAL_UNITS[m.group(2)]
    if seconds < 1:
        raise ValueError(f"{what} {text!r} is shorter than a second; give e.g. 15m")
    return seconds


def update_job(store: Any, dataset: str, model_id: str, since: Any = None,
               **overrides: Any) -> jobs.Job:
    """A training job continuing ``model_id`` on the events stored since it was trained (or
    ``since``), with training-setting ``overrides`` (``models.api.update``); its ``meta`` names
    the parent, so it cannot be deleted meanwhile."""
    from ...models import api
    from ...models.training import checkpoint as ckpt
    from ...models.training.online import ONLINE_EPOCHS

    model = ckpt.read_info(ckpt.find(store, dataset, model_id))["model"]
    trainable = bool(_class(model).trainable)

    def target(progress: jobs.Progress, cancel: threading.Event, logger: Any) -> Any:
        res = api.update(store, dataset, model, from_id=model_id, since=since,
                         progress=lambda ev: progress(ev.to_dict()), cancel=cancel, log=logger,
                         **overrides)
        # the server's log says what each scheduled update did (its last line: saved or kept)
        print(f"online update of {dataset!r}: {res.messages[-1]}", file=sys.stderr, flush=True)
        return res

    def summary(res: Any) -> dict[str, Any]:
        out = res.to_json()
        out.pop("history", None)
        return out

    return jobs.Job(target=target, label=f"update {model} on {dataset}",
                    meta={"dataset": dataset, "model": model, "model_id": model_id,
                          "update": True},
                    plan={"train": ONLINE_EPOCHS} if trainable else {}, summarize=summary,
                    expected=user_errors())


class Updater:
    """The server's online-update schedule (``trailscope serve --update-every 15m``): every
    ``every`` seconds, :meth:`tick` starts an update job (:func:`update_job`, through the one
    job runner: the training pool) for each dataset whose default model was trained on fewer
    rows than the dataset holds now, unless a training job of that dataset is queued or
    running. A dataset is tried again only when more rows arrived than at its last try, so an
    update the keep rule refused is not rerun on the same events."""

    def __init__(self, every: float) -> None:
        self.every = float(every)
        self.tried: dict[str, int] = {}     # dataset -> its rows when an update last started
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def due(self, dataset: str) -> tuple[str, int] | None:
        """(model id, rows now) when ``dataset``'s default model is due for an update."""
        from ...models import api
        from ...models.training import checkpoint as ckpt

        store = services.get_store()
        # stale or not: an update is what brings a model onto the events stored now
        rows = [{**m, "stale": False} for m in api.list_models(store, dataset)]
        best = api.best_model(rows)
        if best is None:
            return None
        trained_on = ckpt.read_info(best["path"]).get("dataset_rows")
        now = ckpt.data_extent(store, dataset)["dataset_rows"]
        if trained_on is None or now <= max(int(trained_on), self.tried.get(dataset, 0)):
            return None
        return best["model_id"], now

    def tick(self) -> list[str]:
        """Start the updates that are due; returns their job ids."""
        started = []
        for dataset in services.dataset_names():
            try:
                if jobs.jobs(active_only=True, kind="train", dataset=dataset):
                    continue
                due = self.due(dataset)
                if due is None:
                    continue
                self.tried[dataset] = due[1]
                started.append(jobs.start(update_job(services.get_store(), dataset, due[0])))
            except Exception:  # noqa: BLE001 - one dataset's failure must not stop the others
                log.exception("online update of dataset %r could not start", dataset)
        return started

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.tick()

    def start(self) -> Updater:
        self.thread = threading.Thread(target=self.run, name="online-updates", daemon=True)
        self.thread.start()
        return self

    def close(self, timeout: float) -> None:
        """No tick starts from now on; one under way finishes first (up to ``timeout`` s)."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)


def start_update(dataset: str, model: str, from_id: str | None = None, since: Any = None,
                 **overrides: Any) -> str:
    """Start an online update of dataset ``dataset``'s newest ``model`` (or ``from_id``) as a
    training job (``trailscope train --continue`` handed to a running server); its job id."""
    from ...models.training.checkpoint import CheckpointError
    from ...models.training.online import parent_checkpoint, parse_since

    store = services.get_store()
    try:
        model_id, _ = parent_checkpoint(store, dataset, model, from_id)
        if since is not None:
            parse_since(since)  # a bad time fails here, in words, not inside the job
    except (CheckpointError, ValueError) as exc:
        raise ServiceError(str(exc)) from exc
    return jobs.start(update_job(store, dataset, model_id, since, **overrides))


_updaters: list[Updater] = []


def start_updates(every: float) -> Updater:
    """Start the process's update schedule every ``every`` seconds (a daemon thread)."""
    updater = Updater(every).start()
    _updaters.append(updater)
    return updater


def stop_updates(timeout: float = 5.0) -> None:
    """Stop the update schedules :func:`start_updates` started (a stopping server): no new
    update starts; a tick under way finishes first (up to ``timeout`` seconds)."""
    while _updaters:
        _updaters.pop().close(timeout)


# -- trained models ------------------------------------------------------------------------
def trained_models(dataset: str) -> list[dict[str, Any]]:
    """``models.api.list_models``: every checkpoint of ``dataset``, newest first, with
    flat test metrics and a ``stale`` flag (the dataset changed since training)."""
    from ...models import api

    return api.list_models(services.get_store(), dataset)


def default_row(models: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of :func:`trained_models` the pages preselect (``models.api.best_model``: the
    best validation NDCG@10, a cancelled training only when no finished model is current)."""
    from ...models import api

    return api.best_model(models)


def delete_model(dataset: str, model_id: str) -> str:
    """Delete a trained model's checkpoint and its sidecar; returns the model id. Refuses
    (ServiceError) an unknown id and a model a queued or running job uses (an explanation, a
    report batch), saying what to do."""
    from ...models.training import checkpoint as ckpt

    try:
        path = ckpt.find(services.get_store(), dataset, model_id)  # only listed ids
    except ckpt.CheckpointError as exc:
        raise ServiceError(str(exc)) from None
    busy = [j for j in jobs.jobs(active_only=True, dataset=dataset)
            if j["meta"].get("model_id") == model_id]
    if busy:
        raise ServiceError(f"model {model_id} is in use ({busy[0]['label']}); wait for it to "
                           "finish or cancel it, then delete the model")
    path.unlink(missing_ok=True)        # first: without its .pt a model is no longer listed
    path.with_suffix(".json").unlink(missing_ok=True)
    return path.stem


def model_slices(dataset: str, model_id: str) -> dict[str, Any]:
    """Per-slice test metrics of one model: ``{"hour": {...}, "weekday": ..., ...}``."""
    from ...models import api

    rows = api.evaluate(services.get_store(), dataset, model_id=model_id)
    return dict(rows[0].get("slices") or {}) if rows else {}


def loaded_model(dataset: str, model_id: str, imported_at: Any = None) -> Any:
    """Model ``model_id`` of ``dataset`` rebuilt from its checkpoint (``models.api.load``),
    memoised in ``cache.MODELS`` under the file's version and the dataset's import stamp (so a
    re-imported dataset re-checks the model's fingerprint; appended events do not reload it).
    ``imported_at``: the dataset's import time when the caller has just read it."""
    from ...models import api
    from ...models.training import checkpoint as ckpt

    store = services.get_store()
    key = (cache.file_stamp(ckpt.find(store, dataset, model_id)),
           cache.import_stamp(store, dataset, imported_at))
    return cache.MODELS.get_or_compute(key, lambda: api.load(store, dataset, model_id))


def _model_users(path: Any) -> frozenset[str]:
    """The user ids a checkpoint knows, read from the file without building the model (a
    stale model's users are listed too), memoised per file version."""
    def read() -> frozenset[str]:
        import torch

        blob = torch.load(path, map_location="cpu", weights_only=True)
        return frozenset(str(u) for u in blob["meta"].get("extra", {}).get("user_ids", ()))

    return cache.CHECKPOINT_USERS.get_or_compute(cache.file_stamp(path), read)


@dataclasses.dataclass(frozen=True)
class UserIndex:
    """The users a model can recommend for (those it knows that the dataset holds), most
    active first, searchable by any part of their id. Built once per checkpoint and dataset
    version (:func:`user_index`), so typing in a picker only searches.

    ``folded`` is every id lower-cased, each after a newline, with one at the end; ``starts``
    the offset of each id in it: a search is ``str.find`` over one string (C speed, about 1 ms
    per 100,000 users), ids containing a newline are never matched across."""

    users: tuple[str, ...]
    events: array.array      # int64, one per user
    folded: str
    starts: array.array      # int64, one per user

    @classmethod
    def build(cls, users: list[str], events: list[int]) -> UserIndex:
        folded = [u.lower() for u in users]
        starts, at = array.array("q"), 1
        for u in folded:
            starts.append(at)
            at += len(u) + 1
        return cls(tuple(users), array.array("q", (int(n) for n in events)),
                   "\n" + "\n".join(folded) + "\n" if folded else "\n", starts)

    def __len__(self) -> int:
        return len(self.users)

    def _rows(self, order: list[int]) -> list[dict[str, Any]]:
        return [{"user": self.users[i], "events": self.events[i]} for i in order]

    def _hits(self, pattern: str, limit: int, skip: set[int]) -> list[int]:
        """Indexes of the ids ``pattern`` occurs in, in order, at most ``limit``, leaving out
        (and adding to) ``skip``; a pattern starting with a newline matches an id's start."""
        out: list[int] = []
        lead = 1 if pattern.startswith("\n") else 0
        pos = self.folded.find(pattern)
        while pos != -1 and len(out) < limit:
            i = bisect.bisect_right(self.starts, pos + lead) - 1
            if i not in skip:
                out.append(i)
                skip.add(i)
            if i + 1 >= len(self.starts):
                break
            pos = self.folded.find(pattern, self.starts[i + 1] - lead)  # the next id on
        return out

    def top(self, limit: int = MAX_USERS) -> list[dict[str, Any]]:
        """The ``limit`` most active users: ``[{"user", "events"}]``."""
        return self._rows(list(range(min(int(limit), len(self.users)))))

    def search(self, text: str | None, limit: int = MAX_USERS) -> list[dict[str, Any]]:
        """Users whose id contains ``text`` (case-insensitive): the id itself first, then ids
        starting with it, then the others, each most active first; at most ``limit``. Empty
        text: the most active users."""
        needle = (text or "").strip().lower()
        if not needle:
            return self.top(limit)
        if "\n" in needle:
            return []
        seen: set[int] = set()
        order = self._hits(f"\n{needle}\n", limit, seen)
        order += self._hits(f"\n{needle}", limit - len(order), seen)
        order += self._hits(needle, limit - len(order), seen)
        return self._rows(order)

    def __contains__(self, user: object) -> bool:
        return any(self.users[i] == user
                   for i in self._hits(f"\n{str(user).lower()}\n", len(self.users), set()))


def user_index(dataset: str, model_id: str) -> UserIndex:
    """:class:`UserIndex` of model ``model_id``, memoised in ``cache.CHECKPOINT_USERS`` under
    the checkpoint's file version and the dataset's version (events counted as they are)."""
    from ...models.training import checkpoint as ckpt

    store = services.get_store()
    path = ckpt.find(store, dataset, model_id)

    def build() -> UserIndex:
        known = _model_users(path)
        counts = _user_counts(dataset)
        counts = counts[counts[schema.USER].isin(known)]
        return UserIndex.build(counts[schema.USER].astype(str).tolist(),
                               counts["events"].tolist())

    key = ("index", cache.file_stamp(path), cache.dataset_stamp(store, dataset))
    return cache.CHECKPOINT_USERS.get_or_compute(key, build)


def model_users(dataset: str, model_id: str, limit: int = MAX_USERS) -> list[dict[str, Any]]:
    """The ``limit`` most active users the model can recommend for: ``[{"user", "events"}]``."""
    return user_index(dataset, model_id).top(limit)


def search_model_users(dataset: str, model_id: str, text: str | None,
                       limit: int = MAX_USERS) -> list[dict[str, Any]]:
    """Users of the model whose id contains ``text`` (:meth:`UserIndex.search`)."""
    return user_index(dataset, model_id).search(text, limit)


def known_users(dataset: str, model_id: str) -> frozenset[str]:
    """Every user id checkpoint ``model_id`` knows (whether or not the dataset still holds
    them), memoised per file version: the Live feed's test of whom to offer an explanation."""
    from ...models.training import checkpoint as ckpt

    return _model_users(ckpt.find(services.get_store(), dataset, model_id))


def model_knows_user(dataset: str, model_id: str, user: str | None) -> bool:
    """Whether the model can recommend for ``user`` (known to it and in the dataset)."""
    return bool(user) and user in user_index(dataset, model_id)


@services.memoize_dataset
def _user_counts(dataset: str) -> pd.DataFrame:
    store = services.get_store()
    return store.query_df(
        f"SELECT {schema.USER}, count(*) AS events FROM {store.table(dataset)} "
        f"GROUP BY {schema.USER} ORDER BY events DESC, {schema.USER}")


def recommend(dataset: str, user: str, k: int = 10, model_id: str | None = None,
              at: Any = None, lat: float | None = None,
              lon: float | None = None, imported_at: Any = None) -> dict[str, Any]:
    """``models.api.recommend``: top-``k`` items for ``user`` with score/category/lat/lon,
    from the memoised model (:func:`loaded_model`); ``at``, ``lat``/``lon``: the time and
    position to recommend for (default: the user's last event); ``imported_at``: the
    dataset's import time when the caller has just read it (the HTTP API: one query less)."""
    from ...models import api

    if not user:
        raise ServiceError("pick a user to recommend for")
    try:
        k = 10 if k in (None, "") else int(k)
    except (TypeError, ValueError):
        raise ServiceError(f"K must be a whole number between 1 and 100; got {k!r}") from None
    if not 1 <= k <= 100:
        raise ServiceError(f"K must be between 1 and 100; got {k}")
    store = services.get_store()
    model_id = model_id or default_model(dataset)
    return api.recommend(store, dataset, str(user), k=k, model_id=model_id, at=at, lat=lat,
                         lon=lon, loaded=loaded_model(dataset, model_id, imported_at))


def default_model(dataset: str) -> str:
    """The id of the dataset's best current model (``models.api``'s default)."""
    from ...models import api

    return api.default_model(services.get_store(), dataset)


def recent_events(dataset: str, user: str, n: int = 50) -> pd.DataFrame:
    """The user's ``n`` most recent events, oldest first (for their path on the map)."""
    store = services.get_store()
    df = store.query_df(
        f"SELECT * FROM {store.table(dataset)} WHERE {schema.USER} = ? "
        f"ORDER BY {schema.TS} DESC LIMIT {int(n)}", [str(user)])
    return df.iloc[::-1].reset_index(drop=True)


def has_coordinates(dataset: str) -> bool:
    return bool(services.dataset_info(dataset).has_coordinates)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (shown in an error box)."""
    from ...analytics.store import StoreError
    from ...models.data.history import UnknownUser
    from ...models.training.checkpoint import CheckpointError

    return (ServiceError, StoreError, CheckpointError, UnknownUser, ValueError)

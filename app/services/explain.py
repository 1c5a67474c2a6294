"""The Explain page's services: models, users, recommendations, explanations run in a
background thread with progress, a result cache, and report downloads.

Explanations are cached per (dataset import stamp, model id, user, item), so re-importing a
dataset invalidates them; a job for a cached explanation finishes at once.
"""

from __future__ import annotations

import io
import tempfile
import threading
import uuid
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from . import workspace as services
from .workspace import ServiceError, get_store

#: models the Explain page can explain (neural: Integrated Gradients; baselines: counts)
EXPLAINABLE = ("st-transformer", "sasrec", "gru", "pop", "repeat", "markov")
MAX_BATCH_USERS = 50
_CACHE_SIZE = 64

_cache: OrderedDict[tuple, Any] = OrderedDict()
_jobs: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()


def explainable_models(name: str) -> list[dict[str, Any]]:
    """The dataset's current (not stale) models that can be explained, newest first."""
    from ...models import api

    return [m for m in api.list_models(get_store(), name)
            if not m["stale"] and m["model"] in EXPLAINABLE]


def user_options(name: str, limit: int = 50) -> list[str]:
    """The most active users of a dataset."""
    from ...analytics.schema import USER
    from .users import active_users

    return [str(u) for u in active_users(name, limit)[USER]]


def recommendations(name: str, user: str, model_id: str, k: int = 10) -> dict[str, Any]:
    """Top-``k`` items for ``user`` (models.api.recommend), errors as ServiceError."""
    from ...models import api
    from ...models.data.history import UnknownUser
    from ...models.training.checkpoint import CheckpointError

    try:
        return api.recommend(get_store(), name, user, k=k, model_id=model_id)
    except (UnknownUser, CheckpointError, ValueError) as exc:
        raise ServiceError(str(exc)) from exc


def _key(name: str, model_id: str, user: str, item: str) -> tuple:
    return (name, services._stamp(name), model_id, str(user), str(item))


def cached(name: str, model_id: str, user: str, item: str) -> Any | None:
    """The cached explanation, or None."""
    with _lock:
        return _cache.get(_key(name, model_id, user, item))


def _remember(key: tuple, ex: Any) -> None:
    with _lock:
        _cache[key] = ex
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def start(name: str, user: str, item: str, model_id: str, n_steps: int = 32) -> str:
    """Start explaining in a background thread; returns a job id for :func:`job`."""
    key = _key(name, model_id, user, item)
    job_id = uuid.uuid4().hex
    rec = {"status": "running", "progress": 0.0, "message": "queued", "error": None,
           "request": {"dataset": name, "user": str(user), "item": str(item),
                       "model_id": model_id}}
    with _lock:
        _jobs[job_id] = rec
        hit = _cache.get(key)
    if hit is not None:
        rec.update(status="done", progress=1.0, message="from cache")
        return job_id

    def progress(frac: float, msg: str) -> None:
        rec.update(progress=float(frac), message=msg)

    def run() -> None:
        from ...models.data.history import UnknownUser
        from ...models.explain.user import explain_user
        from ...models.training.checkpoint import CheckpointError

        try:
            ex = explain_user(get_store(), name, user, item, model_id, n_steps=n_steps,
                              progress=progress)
            _remember(key, ex)
            rec.update(status="done", progress=1.0, message=f"done in {ex.seconds:.2f} s")
        except (UnknownUser, CheckpointError, ValueError, KeyError) as exc:
            rec.update(status="error", error=str(exc), message="failed")
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged below
            import logging

            logging.getLogger(__name__).exception("explaining %s failed", rec["request"])
            rec.update(status="error", message="failed",
                       error=f"unexpected error ({type(exc).__name__}); the server log has "
                             "the details. Try another item or model.")

    threading.Thread(target=run, name=f"explain-{job_id[:8]}", daemon=True).start()
    return job_id


def job(job_id: str) -> dict[str, Any]:
    """Snapshot of a job: status (running/done/error), progress 0..1, message, error."""
    with _lock:
        rec = _jobs.get(job_id)
    if rec is None:
        raise ServiceError(f"no explanation job {job_id!r}; click the item again")
    return dict(rec)


def report_bytes(name: str, user: str, item: str, model_id: str, fmt: str) -> bytes:
    """One report (``fmt`` html or pdf) from the cached explanation (computed if missing)."""
    from ..reports import report

    ex = cached(name, model_id, user, item)
    with tempfile.TemporaryDirectory() as tmp:
        data = report.collect(get_store(), name, user, item, model_id, explanation=ex)
        path = report.write(data, Path(tmp) / f"report.{fmt}")
        return path.read_bytes()


def parse_users(text: str | None) -> list[str]:
    """User ids from a text box: one per line or separated by commas/whitespace."""
    raw = (text or "").replace(",", "\n").split()
    users = list(dict.fromkeys(u.strip() for u in raw if u.strip()))
    if not users:
        raise ServiceError("type at least one user id (one per line or comma-separated)")
    if len(users) > MAX_BATCH_USERS:
        raise ServiceError(f"{len(users)} users given; export at most {MAX_BATCH_USERS} at "
                           "a time")
    return users


def batch_zip(name: str, users: list[str], fmt: str, model_id: str) -> tuple[bytes, dict]:
    """A zip of one report per user (plus failures.txt when some fail) and the summary."""
    from ..reports import report

    with tempfile.TemporaryDirectory() as tmp:
        out = report.export_batch(get_store(), name, users, tmp, fmt=fmt, model_id=model_id)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in out["written"]:
                zf.write(p, Path(p).name)
            if out["failed"]:
                zf.writestr("failures.txt", "".join(f"{u}: {why}\n"
                                                    for u, why in out["failed"].items()))
    return buf.getvalue(), out

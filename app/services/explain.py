"""The Explain page's services: models, users, recommendations, explanations and report
batches run as background jobs (app/services/jobs.py, kind ``explain``) with progress and
cancel, and report downloads.

Finished explanations are memoised in ``cache.EXPLANATIONS`` per (dataset import stamp, model
id, user, item), so re-importing a dataset invalidates them; a job for a memoised explanation
finishes at once. Models come from ``models.loaded_model`` (memoised too), the top-K a page
shows from :func:`recommendations` (memoised per dataset stamp, model, user and K), which the
explanation reuses instead of recommending again.

Where the time of an explanation goes (bench/explain_bench.py ``--phases``): the attribution,
attention and deletion test take well under a second on CPU; building the figures takes a few
tenths more, so the job builds them too (:func:`take` hands the finished panels out once).
Opening the page starts :func:`warm`, which imports the attribution code and loads the model
in the background, so the first click does not pay for either.
"""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from . import cache, jobs
from . import models as model_service
from . import workspace as services
from .workspace import ServiceError, get_store

#: models the Explain page can explain (neural: Integrated Gradients; baselines: counts)
EXPLAINABLE = ("st-transformer", "sasrec", "gru", "pop", "repeat", "markov")
MAX_BATCH_USERS = 50
_UNEXPECTED = ("unexpected error ({kind}); the server log has the details. Try another item "
               "or model.")


def explainable_models(name: str) -> list[dict[str, Any]]:
    """The dataset's current (not stale) models that can be explained, newest first
    (cancelled trainings included: they are marked, and preselected only when nothing else
    is there, see :func:`preselected`)."""
    from ...models import api

    return [m for m in api.list_models(get_store(), name)
            if not m["stale"] and m["model"] in EXPLAINABLE]


def preselected(models: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The model a page opens with: ``models.api.best_model`` (best validation NDCG@10, a
    cancelled training only when no finished one is there)."""
    from ...models import api

    return api.best_model(models)


def warm(name: str, model_id: str) -> str | None:
    """Prepare the first explanation in the background (an ``explain`` job): import the
    attribution code (Captum), build a first figure (plotly's template) and load the model
    into ``cache.MODELS``. Returns the job id,
    None when the explanation queue is full (the first click then does this itself)."""
    def target(progress: jobs.Progress, cancel: Any, log: Any) -> None:
        from ...models.explain import user  # noqa: F401 - the import is the warming
        from ..views.explain import warm_figures

        warm_figures()
        model_service.loaded_model(name, model_id)

    meta = {"dataset": name, "model_id": model_id, "warm": True}
    running = jobs.jobs(active_only=True, kind="explain", **meta)
    if running:  # pages opened at once share one
        return running[0]["id"]
    try:
        return jobs.start(jobs.Job(target, label=f"prepare {model_id} for explanations",
                                   kind="explain", meta=meta,
                                   expected=_user_errors(), unexpected=_UNEXPECTED))
    except jobs.QueueFull:
        return None


def user_options(name: str, model_id: str | None = None, text: str | None = None,
                 limit: int = 50) -> list[str]:
    """Users to offer for explaining: those of model ``model_id`` whose id contains ``text``
    (``models.search_model_users``: every user the model knows, most active first); without a
    model (or one that cannot be read), the dataset's most active users."""
    from ...analytics.schema import USER
    from .users import active_users

    if model_id:
        try:
            return [u["user"] for u in
                    model_service.search_model_users(name, model_id, text, limit)]
        except model_service.user_errors():
            pass
    return [str(u) for u in active_users(name, limit)[USER]]


def recommendations(name: str, user: str, model_id: str, k: int = 10) -> dict[str, Any]:
    """Top-``k`` items for ``user`` (``models.recommend``), errors as ServiceError."""
    try:
        return _recommendations(name, str(user), model_id, int(k))
    except _user_errors() as exc:
        raise ServiceError(str(exc)) from exc


@services.memoize_dataset
def _recommendations(name: str, user: str, model_id: str, k: int) -> dict[str, Any]:
    return model_service.recommend(name, user, k=k, model_id=model_id)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors of an explanation whose message tells the user what to change."""
    from ...models.data.history import UnknownUser
    from ...models.training.checkpoint import CheckpointError

    return (UnknownUser, CheckpointError, ValueError, KeyError)


def _key(name: str, model_id: str, user: str, item: str) -> tuple:
    return (name, services.dataset_stamp(name), model_id, str(user), str(item))


def cached(name: str, model_id: str, user: str, item: str) -> Any | None:
    """The memoised explanation, or None."""
    return cache.EXPLANATIONS.get(_key(name, model_id, user, item))


def start(name: str, user: str, item: str, model_id: str, n_steps: int = 32) -> str:
    """Start explaining as a background job; returns a job id for :func:`job` and
    :func:`take`. The job's result is the Explanation; the job also builds the page's panels
    and the events map's spec (memoised beside it), so the request that hands them out
    (:func:`take`) does not."""
    from ...models.explain.user import explain_user

    key = _key(name, model_id, user, item)

    def target(progress: jobs.Progress, cancel: Any, log: Any) -> Any:
        def step(frac: float, msg: str) -> None:
            if cancel.is_set():
                raise jobs.Cancelled(msg)
            progress({"phase": "explain", "fraction": float(frac), "message": msg})

        ex = cache.EXPLANATIONS.get(key)
        hit = ex is not None
        if not hit:
            ex = explain_user(get_store(), name, user, item, model_id, n_steps=n_steps,
                              progress=lambda f, m: step(0.9 * f, m),
                              loaded=model_service.loaded_model(name, model_id),
                              recs=recommendations(name, user, model_id))
            cache.EXPLANATIONS.put(key, ex)
        if cache.EXPLANATIONS.get(_view_key(key)) is None:
            step(0.92, "drawing the figures")
            _view(key, ex)
        step(1.0, "from cache" if hit else f"done in {ex.seconds:.2f} s")
        return ex

    request = {"dataset": name, "user": str(user), "item": str(item), "model_id": model_id}
    try:
        return jobs.start(jobs.Job(target, label=f"explain {item} for user {user}",
                                   kind="explain", meta=request, expected=_user_errors(),
                                   unexpected=_UNEXPECTED))
    except jobs.QueueFull as exc:
        raise ServiceError(str(exc)) from exc


def _view_key(key: tuple) -> tuple:
    return (*key, "panels")


def _view(key: tuple, ex: Any) -> dict[str, Any]:
    """The page's panels and map spec of explanation ``ex`` (memoised under ``key``)."""
    from ..views.explain import map_spec, result_panels

    spec = map_spec(ex)
    view = {"panels": result_panels(ex, spec), "map": spec}
    cache.EXPLANATIONS.put(_view_key(key), view)
    return view


def job(job_id: str) -> dict[str, Any]:
    """Snapshot of a job: status (running/done/error), progress 0..1, message, error, and
    ``waited``: seconds from the request to the end (queueing included; so far, while it
    runs)."""
    try:
        snap = jobs.snapshot(job_id)
    except jobs.JobNotFound:
        raise ServiceError(f"no explanation job {job_id!r}; click the item again") from None
    status = {jobs.QUEUED: "running", jobs.RUNNING: "running", jobs.DONE: "done"}.get(
        snap["status"], "error")
    message = snap["progress"].get("message") or "waiting for other explanations"
    error = snap["error"] or ("cancelled" if snap["status"] == jobs.CANCELLED else None)
    waited = (snap["finished"] or time.time()) - snap["created"]
    return {"status": status, "progress": snap["fraction"],
            "message": "failed" if status == "error" else message, "error": error,
            "request": snap["meta"], "waited": waited}


def take(job_id: str) -> dict[str, Any] | None:
    """The finished job's ``{"explanation", "panels", "map"}`` (the events map's spec),
    handed out once (``jobs.claim``): None while it runs, when it failed and on every later
    call, so polls that overlap draw the result once."""
    try:
        if not jobs.claim(job_id):
            return None
        ex, meta = jobs.result(job_id), jobs.snapshot(job_id)["meta"]
    except jobs.JobNotFound:
        return None
    if ex is None:
        return None
    key = _key(meta["dataset"], meta["model_id"], meta["user"], meta["item"])
    view = cache.EXPLANATIONS.get(_view_key(key)) or _view(key, ex)
    return {"explanation": ex, **view}


def cancel(job_id: str) -> bool:
    """Stop an explanation at its next step; True if it was still queued or running."""
    try:
        return jobs.cancel(job_id)
    except jobs.JobNotFound:
        return False


def download_name(*parts: str) -> str:
    """A file-name-safe stem for a download (``reports.report.safe_filename``)."""
    from ..reports.report import safe_filename

    return safe_filename("-".join(str(p) for p in parts))


def report_bytes(name: str, user: str, item: str, model_id: str, fmt: str) -> bytes:
    """One report (``fmt`` html or pdf) from the cached explanation (computed if missing)."""
    from ..reports import report

    ex = cached(name, model_id, user, item)
    loaded = None if ex is not None else model_service.loaded_model(name, model_id)
    with tempfile.TemporaryDirectory() as tmp:
        data = report.collect(get_store(), name, user, item, model_id, explanation=ex,
                              loaded=loaded)
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


def batch_zip(name: str, users: list[str], fmt: str, model_id: str,
              on_user: Any = None) -> tuple[bytes, dict]:
    """A zip of one report per user (plus failures.txt when some fail) and the summary. HTML
    reports share one copy of plotly.js and deck.gl, zipped beside them (about 0.15 MB per
    report instead of 9 MB)."""
    from ..reports import report

    with tempfile.TemporaryDirectory() as tmp:
        out = report.export_batch(get_store(), name, users, tmp, fmt=fmt, model_id=model_id,
                                  loaded=_loaded_or_none(name, model_id), on_user=on_user,
                                  shared=fmt == "html")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in [*out["written"], *out.get("libraries", [])]:
                zf.write(p, Path(p).name)
            if out["failed"]:
                zf.writestr("failures.txt", "".join(f"{u}: {why}\n"
                                                    for u, why in out["failed"].items()))
    return buf.getvalue(), out


def start_batch(name: str, text: str | None, fmt: str, model_id: str) -> str:
    """Check the user list and start exporting their reports as a job (kind ``explain``);
    returns the job id for :func:`batch_state`."""
    users = parse_users(text)

    def target(progress: jobs.Progress, cancel: Any, log: Any) -> tuple[bytes, dict]:
        def on_user(i: int, n: int, user: str) -> None:
            if cancel.is_set():
                raise jobs.Cancelled(user)
            progress({"phase": "batch", "fraction": i / max(n, 1),
                      "message": f"Report {i + 1} of {n} (user {user})…"})

        return batch_zip(name, users, fmt or "html", model_id, on_user=on_user)

    def summarize(result: tuple[bytes, dict]) -> dict[str, Any]:
        return {"written": len(result[1]["written"]), "failed": len(result[1]["failed"])}

    try:
        return jobs.start(jobs.Job(target, label=f"export {len(users)} reports of {name}",
                                   kind="explain",
                                   meta={"dataset": name, "batch": True, "model_id": model_id},
                                   summarize=summarize, expected=(ValueError, OSError),
                                   unexpected=_UNEXPECTED))
    except jobs.QueueFull as exc:
        raise ServiceError(str(exc)) from exc


def batch_state(job_id: str) -> dict[str, Any]:
    """``{"status": running/done/cancelled/error, "message", "error", "cancelling", "zip":
    bytes | None, "written", "failed"}``. The zip is handed out once: the job is forgotten
    after it is read, so finished batches do not hold their reports in memory."""
    try:
        snap = jobs.snapshot(job_id)
    except jobs.JobNotFound:
        raise ServiceError(f"no batch export {job_id!r}: the server restarted; export the "
                           "batch again") from None
    out = {"status": {jobs.QUEUED: "running", jobs.RUNNING: "running", jobs.DONE: "done",
                      jobs.CANCELLED: "cancelled"}.get(snap["status"], "error"),
           "message": snap["progress"].get("message") or "Waiting for other explanations…",
           "error": snap["error"] or ("cancelled" if snap["status"] == jobs.CANCELLED else None),
           "cancelling": snap["cancel_requested"], "zip": None,
           **(snap["summary"] or {"written": 0, "failed": 0})}
    if out["status"] == "done":
        out["zip"] = jobs.result(job_id)[0]
        jobs.forget(job_id)
    return out


def _loaded_or_none(name: str, model_id: str) -> Any | None:
    """The memoised model, or None where it cannot load (each user's report then says why)."""
    try:
        return model_service.loaded_model(name, model_id)
    except _user_errors():
        return None

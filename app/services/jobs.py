"""A small thread-based background job runner for the dashboard (model training).

Why threads and not processes: DuckDB admits one writing process per workspace file and the
dashboard holds it, so a training job must read its data through this process's ``Store``.
Torch releases the GIL in its kernels, so the web server stays responsive while a job runs.

A :class:`Job` wraps ``target(progress, cancel, log) -> result``. ``start(job)`` returns an
id at once; the job waits for a free slot (``max_running`` jobs run at a time, the rest are
``queued``), runs in a daemon thread and keeps in memory what the page polls:

* ``snapshot(id)``: status, the latest progress event, the overall fraction done, the loss
  curve (per training step, x in epochs) and the validation curve (per epoch), log lines,
  the result summary or the error -- a plain, JSON-safe dict copied under the lock;
* ``cancel(id)``: sets the job's ``threading.Event``; models.train stops at the next step and
  keeps the best checkpoint so far, a queued job never starts;
* finished jobs stay until ``keep_finished`` newer ones push them out.

``training_job(store, dataset, model=..., epochs=..., ...)`` builds the Job that runs
``models.api.train`` with these hooks.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
Target = Callable[[Progress, threading.Event, Callable[[str], None]], Any]

QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
ACTIVE = (QUEUED, RUNNING)
MAX_POINTS = 600      # loss points kept per job; older ones are merged pairwise beyond that
MAX_MESSAGES = 200


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Job:
    """What to run. ``plan`` maps progress phases to their planned epochs (for the fraction
    done), e.g. ``{"pretrain": 2, "train": 10}``; ``meta`` is free, JSON-safe context (dataset,
    model, settings) returned in snapshots and used to filter :meth:`JobRunner.jobs`."""

    target: Target
    label: str = "job"
    meta: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, int] = field(default_factory=dict)
    summarize: Callable[[Any], dict[str, Any]] | None = None


@dataclass
class _Record:
    id: str
    job: Job
    cancel: threading.Event
    created: float
    status: str = QUEUED
    started: float | None = None
    finished: float | None = None
    last: dict[str, Any] = field(default_factory=dict)
    fraction: float = 0.0
    loss: list[list[float]] = field(default_factory=list)      # [x (epochs), loss]
    valid: list[list[float]] = field(default_factory=list)     # [epoch, valid metric]
    messages: list[str] = field(default_factory=list)
    events: int = 0
    result: Any = None
    summary: dict[str, Any] | None = None
    error: str | None = None


def _num(x: Any) -> float | None:
    """A finite float or None (snapshots must stay JSON-safe)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _merge_pairs(points: list[list[float]]) -> list[list[float]]:
    """Halve a curve by averaging neighbouring points (keeps its shape, bounds memory)."""
    out = [[(a[0] + b[0]) / 2, (a[1] + b[1]) / 2] for a, b in zip(points[::2], points[1::2],
                                                                    strict=False)]
    if len(points) % 2:
        out.append(points[-1])
    return out


class JobRunner:
    """Runs jobs in daemon threads, at most ``max_running`` at a time; see the module doc."""

    def __init__(self, max_running: int = 1, keep_finished: int = 50) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self._slots = threading.Semaphore(max_running)
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._threads: dict[str, threading.Thread] = {}
        self.keep_finished = keep_finished

    # -- starting ----------------------------------------------------------------------
    def start(self, job: Job) -> str:
        """Queue ``job``; returns its id at once."""
        rec = _Record(id=uuid.uuid4().hex[:12], job=job, cancel=threading.Event(),
                      created=time.time())
        thread = threading.Thread(target=self._run, args=(rec,), daemon=True,
                                  name=f"trailscope-job-{rec.id}")
        with self._lock:
            self._records[rec.id] = rec
            self._threads[rec.id] = thread
            self._prune()
        thread.start()
        return rec.id

    def _run(self, rec: _Record) -> None:
        while not self._slots.acquire(timeout=0.2):
            if rec.cancel.is_set():
                self._finish(rec, CANCELLED)
                return
        try:
            if rec.cancel.is_set():
                self._finish(rec, CANCELLED)
                return
            with self._lock:
                rec.status, rec.started = RUNNING, time.time()
            try:
                result = rec.job.target(lambda ev: self._progress(rec, ev), rec.cancel,
                                        lambda msg: self._log(rec, msg))
            except Exception as exc:  # noqa: BLE001 - any failure is reported to the page
                log.exception("job %s (%s) failed", rec.id, rec.job.label)
                self._finish(rec, FAILED, error=f"{type(exc).__name__}: {exc}")
                return
            summary = None
            if rec.job.summarize is not None:
                try:
                    summary = rec.job.summarize(result)
                except Exception:  # noqa: BLE001 - a summary bug must not lose the result
                    log.exception("summarising job %s failed", rec.id)
            cancelled = bool(getattr(result, "cancelled", rec.cancel.is_set()))
            self._finish(rec, CANCELLED if cancelled else DONE, result=result, summary=summary)
        finally:
            self._slots.release()

    def _finish(self, rec: _Record, status: str, *, result: Any = None,
                summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self._lock:
            rec.status, rec.finished = status, time.time()
            rec.result, rec.summary, rec.error = result, summary, error
            if status == DONE:
                rec.fraction = 1.0

    def _prune(self) -> None:
        """Forget the oldest finished jobs beyond ``keep_finished`` (lock held)."""
        done = sorted((r for r in self._records.values() if r.status not in ACTIVE),
                      key=lambda r: r.created)
        for r in done[:max(0, len(done) - self.keep_finished)]:
            self._records.pop(r.id, None)
            self._threads.pop(r.id, None)

    # -- progress ------------------------------------------------------------------------
    def _fraction(self, plan: dict[str, int], ev: dict[str, Any], old: float) -> float:
        phase = ev.get("phase")
        if phase == "done":
            return 1.0
        total = sum(max(int(v), 0) for v in plan.values())
        if phase not in plan or total <= 0:
            return old
        before = 0
        for name, n in plan.items():
            if name == phase:
                break
            before += max(int(n), 0)
        epoch = max(int(ev.get("epoch") or 0), 0)
        steps, step = int(ev.get("steps") or 0), int(ev.get("step") or 0)
        within = (epoch - 1 + step / steps) if steps > 0 else float(epoch)
        return min(max((before + max(within, 0.0)) / total, old), 1.0)

    def _progress(self, rec: _Record, ev: dict[str, Any]) -> None:
        clean = {k: (_num(v) if isinstance(v, float) else v) for k, v in ev.items()
                 if k != "messages"}
        with self._lock:
            rec.events += 1
            rec.last = clean
            if not rec.cancel.is_set():  # a cancelled job's bar stays where it stopped
                rec.fraction = self._fraction(rec.job.plan, ev, rec.fraction)
            for m in ev.get("messages") or ():
                if str(m) not in rec.messages:  # also logged through ``log``
                    self._append_message(rec, str(m))
            phase, loss = ev.get("phase"), _num(ev.get("loss"))
            steps = int(ev.get("steps") or 0)
            if phase in ("train", "pretrain") and loss is not None and steps > 0:
                x = int(ev.get("epoch") or 0) - 1 + int(ev.get("step") or 0) / steps
                if phase == "pretrain":  # pre-training epochs come before epoch 0
                    x -= int(rec.job.plan.get("pretrain", 0))
                rec.loss.append([x, loss])
                if len(rec.loss) > MAX_POINTS:
                    rec.loss = _merge_pairs(rec.loss)
            valid = _num(ev.get("valid"))
            if phase == "valid" and valid is not None:
                rec.valid.append([float(ev.get("epoch") or 0), valid])

    def _append_message(self, rec: _Record, msg: str) -> None:
        rec.messages.append(msg)
        if len(rec.messages) > MAX_MESSAGES:
            del rec.messages[: len(rec.messages) - MAX_MESSAGES]

    def _log(self, rec: _Record, msg: str) -> None:
        with self._lock:
            if str(msg) not in rec.messages:  # data reports come as log lines and progress
                self._append_message(rec, str(msg))

    # -- reading -------------------------------------------------------------------------
    def _get(self, job_id: str) -> _Record:
        rec = self._records.get(str(job_id))
        if rec is None:
            raise JobNotFound(f"no background job {job_id!r}: it finished long ago or the "
                              "server restarted; start the training again")
        return rec

    def snapshot(self, job_id: str) -> dict[str, Any]:
        """A JSON-safe copy of the job's state (see the module docstring)."""
        with self._lock:
            rec = self._get(job_id)
            now = rec.finished or time.time()
            return {
                "id": rec.id, "label": rec.job.label, "meta": dict(rec.job.meta),
                "plan": dict(rec.job.plan), "status": rec.status,
                "active": rec.status in ACTIVE, "cancel_requested": rec.cancel.is_set(),
                "created": rec.created, "started": rec.started, "finished": rec.finished,
                "elapsed": (now - rec.started) if rec.started else 0.0,
                "progress": dict(rec.last), "fraction": rec.fraction, "events": rec.events,
                "loss": [list(p) for p in rec.loss], "valid": [list(p) for p in rec.valid],
                "messages": list(rec.messages),
                "summary": dict(rec.summary) if rec.summary else None, "error": rec.error,
            }

    def result(self, job_id: str) -> Any:
        """What the job's target returned (None while it runs, or if it failed)."""
        with self._lock:
            return self._get(job_id).result

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop; True if it was still queued or running."""
        with self._lock:
            rec = self._get(job_id)
            if rec.status not in ACTIVE:
                return False
            rec.cancel.set()
            return True

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends (or ``timeout`` seconds pass); returns its snapshot."""
        with self._lock:
            self._get(job_id)
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.snapshot(job_id)

    def jobs(self, active_only: bool = False, **meta: Any) -> list[dict[str, Any]]:
        """Snapshots of the jobs whose ``meta`` matches every given key, newest first."""
        with self._lock:
            ids = [r.id for r in sorted(self._records.values(), key=lambda r: r.created,
                                        reverse=True)
                   if all(r.job.meta.get(k) == v for k, v in meta.items())
                   and (not active_only or r.status in ACTIVE)]
        out = []
        for i in ids:
            try:
                out.append(self.snapshot(i))
            except JobNotFound:  # pruned meanwhile
                continue
        return out


# -- the process-wide runner and the training job ---------------------------------------
RUNNER = JobRunner(max_running=1)


def start(job: Job) -> str:
    return RUNNER.start(job)


def snapshot(job_id: str) -> dict[str, Any]:
    return RUNNER.snapshot(job_id)


def cancel(job_id: str) -> bool:
    return RUNNER.cancel(job_id)


def result(job_id: str) -> Any:
    return RUNNER.result(job_id)


def jobs(active_only: bool = False, **meta: Any) -> list[dict[str, Any]]:
    return RUNNER.jobs(active_only, **meta)


def _train_summary(res: Any) -> dict[str, Any]:
    out = res.to_json()
    out.pop("history", None)
    return out


def training_job(store: Any, dataset: str, model: str, *, epochs: int = 10,
                 split: str = "leave-last", device: str = "auto", max_len: int = 50,
                 pretrain_epochs: int = 2, **train_kwargs: Any) -> Job:
    """A Job running ``models.api.train(store, dataset, model=..., ...)`` with progress,
    cancel and log hooks. ``train_kwargs`` go to ``train`` (e.g. ``batch_size``, ``hidden``).
    """
    from ...models.recommenders import registry

    cls = registry.get_class(model)  # unknown names fail here, before a thread starts
    config = registry.make_config(
        cls, {k: v for k, v in train_kwargs.items() if k in _config_fields(cls)})
    wants_pre = bool(getattr(config, "pretrain", False)) and hasattr(cls, "pretrain_loss")
    plan = {"pretrain": int(pretrain_epochs)} if wants_pre and pretrain_epochs > 0 else {}
    if cls.trainable:
        plan["train"] = int(epochs)

    def target(progress: Progress, cancel: threading.Event, logger: Callable[[str], None]) -> Any:
        from ...models import api

        return api.train(store, dataset, model=model, split=split, epochs=epochs, device=device,
                         max_len=max_len, pretrain_epochs=pretrain_epochs, progress=progress,
                         cancel=cancel, log=logger, **train_kwargs)

    meta = {"dataset": dataset, "model": model, "split": split, "epochs": int(epochs),
            "device": device, "max_len": int(max_len),
            **{k: v for k, v in train_kwargs.items() if isinstance(v, (int, float, str, bool))}}
    return Job(target=target, label=f"train {model} on {dataset}", meta=meta, plan=plan,
               summarize=_train_summary)


def _config_fields(cls: Any) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls.Config)}

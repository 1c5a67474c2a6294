"""The dashboard's one background-job runner: training, explanations, web imports (with their
summary build) all run here, with progress, cancel and bounded resources.

Why threads and not processes: DuckDB admits one writing process per workspace file and the
dashboard holds it, so a job must read and write through this process's ``Store``. Torch and
DuckDB release the GIL in their kernels, so the web server stays responsive while a job runs.

A :class:`Job` wraps ``target(progress, cancel, log) -> result`` and names its ``kind``. Each
kind has a fixed pool of daemon worker threads (``limits``: one training at a time, two
explanations, ...), so a long training never holds up an explanation and no click can start
more threads than the pools hold; at most ``max_queued`` jobs of a kind wait. ``start(job)``
returns an id at once and the runner keeps in memory what a page polls:

* ``snapshot(id)``: status, the latest progress event, the overall fraction done (from the
  job's ``plan`` of epochs per phase, or a ``fraction`` the event carries), the loss curve
  (per training step, x in epochs) and the validation curve (per epoch), log lines, the result
  summary or the error -- a plain, JSON-safe dict copied under the lock;
* ``cancel(id)``: a queued job is cancelled at once and never starts; a running one gets its
  ``threading.Event`` set (models.train stops at the next step and keeps the best checkpoint
  so far; other targets check it between their steps);
* ``claim(id)``: True exactly once for a finished job, so a page that polls faster than its
  answers arrive hands a result to the browser once (later polls see False);
* finished jobs stay until ``keep_finished`` newer ones push them out;
* ``stop(timeout)``: cancel every job and wait for the running ones. It runs by itself at the
  interpreter's exit (at most ``EXIT_WAIT_S``), so a program that started a training in
  process (a bench, a notebook) ends cleanly with the best epoch saved: a worker thread still
  inside torch or DuckDB when Python finalises is torn down and the process aborts
  ("terminate called without an active exception", 3 runs of 3 before this hook). The server
  ends through ``os._exit`` after its own wind-down (app/main.py), which skips the hook.

A failure is reported, never raised: errors of the job's ``expected`` types show their own
message (it tells the user what to change); any other is logged with its traceback and shown
as ``unexpected`` (when given) or as its type and message.

``training_job(store, dataset, model=..., epochs=..., ...)`` builds the Job that runs
``models.api.train`` with these hooks; app/services/explain.py and app/services/imports.py
build the explanation and import jobs.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .messages import public_message

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
Target = Callable[[Progress, threading.Event, Callable[[str], None]], Any]

QUEUED, RUNNING, DONE, CANCELLED, FAILED = "queued", "running", "done", "cancelled", "failed"
ACTIVE = (QUEUED, RUNNING)
MAX_POINTS = 600      # loss points kept per job; older ones are merged pairwise beyond that
MAX_MESSAGES = 200
#: Worker threads per job kind; kinds not listed get ``JobRunner(max_running=...)``.
LIMITS: dict[str, int] = {"train": 1, "explain": 2, "import": 1}
#: How long the interpreter's exit waits for cancelled jobs to stop (a training stops at its
#: next step; a summary rebuild at once: its running query is interrupted and rolled back)
EXIT_WAIT_S = 30.0


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class QueueFull(RuntimeError):
    """Too many jobs of one kind are waiting; the message says what to do."""


class Cancelled(Exception):  # noqa: N818 - reads as what happened: ``raise Cancelled(step)``
    """Raised by a target between its steps once its cancel event is set: the job ends as
    cancelled (targets whose work has no cancel hook check the event in their progress)."""


@dataclass
class Job:
    """What to run. ``kind`` picks the worker pool (``train``, ``explain``, ``import``);
    ``plan`` maps progress phases to their planned epochs (for the fraction done), e.g.
    ``{"pretrain": 2, "train": 10}``; ``meta`` is free, JSON-safe context (dataset, model,
    settings) returned in snapshots and used to filter :meth:`JobRunner.jobs`. ``expected``:
    error types whose message is meant for the user; ``unexpected``: the text shown for any
    other error (``{kind}`` is replaced by its type name)."""

    target: Target
    label: str = "job"
    meta: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, int] = field(default_factory=dict)
    summarize: Callable[[Any], dict[str, Any]] | None = None
    kind: str = "train"
    expected: tuple[type[BaseException], ...] = ()
    unexpected: str | None = None


@dataclass
class _Record:
    id: str
    job: Job
    cancel: threading.Event
    created: float
    ended: threading.Event = field(default_factory=threading.Event)
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
    unexpected: bool = False   # the error is a bug, not something the user can fix
    claimed: bool = False      # the result was handed out (:meth:`JobRunner.claim`)


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


class _Pool:
    """At most ``workers`` daemon threads taking records from one queue. A thread starts when
    a job arrives while fewer than ``workers`` live; an idle one ends after ``IDLE_S``, so an
    unused kind (or a test's runner) holds no thread."""

    IDLE_S = 30.0

    def __init__(self, kind: str, workers: int, run: Callable[[_Record], None]) -> None:
        self.kind, self.workers, self._run = kind, workers, run
        self._queue: queue.SimpleQueue[_Record] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live = 0
        self._started = 0

    def submit(self, rec: _Record) -> None:
        with self._lock:
            self._queue.put(rec)
            if self._live < self.workers:
                self._live += 1
                self._started += 1
                threading.Thread(target=self._work, daemon=True,
                                 name=f"trailscope-{self.kind}-{self._started}").start()

    def _work(self) -> None:
        while True:
            try:
                rec = self._queue.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._lock:  # under the lock so a submit never counts a leaving thread
                    if self._queue.empty():
                        self._live -= 1
                        return
                continue
            try:
                self._run(rec)
            except BaseException:  # _run reports every Exception; this is the interpreter
                with self._lock:   # leaving (KeyboardInterrupt, SystemExit): give the slot back
                    self._live -= 1
                raise


class JobRunner:
    """Runs jobs on a fixed pool of threads per kind; see the module doc."""

    def __init__(self, max_running: int = 1, keep_finished: int = 50,
                 limits: dict[str, int] | None = None, max_queued: int = 20) -> None:
        if max_running < 1 or any(n < 1 for n in (limits or {}).values()):
            raise ValueError(f"every kind needs at least one worker, got {max_running} / "
                             f"{limits}")
        self.max_running = max_running
        self.limits = dict(limits or {})
        self.keep_finished = keep_finished
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}
        self._pools: dict[str, _Pool] = {}
        _RUNNERS.add(self)

    # -- starting ----------------------------------------------------------------------
    def start(self, job: Job) -> str:
        """Queue ``job``; returns its id at once. Raises :class:`QueueFull` when
        ``max_queued`` jobs of its kind already wait."""
        rec = _Record(id=uuid.uuid4().hex[:12], job=job, cancel=threading.Event(),
                      created=time.time())
        with self._lock:
            waiting = sum(r.status == QUEUED and r.job.kind == job.kind
                          for r in self._records.values())
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} {job.kind} jobs are already waiting; wait for "
                                "them to finish or cancel some, then try again")
            self._records[rec.id] = rec
            self._prune()
            pool = self._pools.get(job.kind)
            if pool is None:
                pool = self._pools[job.kind] = _Pool(
                    job.kind, self.limits.get(job.kind, self.max_running), self._run)
        pool.submit(rec)
        return rec.id

    def _run(self, rec: _Record) -> None:
        with self._lock:
            if rec.status != QUEUED:  # cancelled while it waited
                return
            rec.status, rec.started = RUNNING, time.time()
        job = rec.job
        try:
            result = job.target(lambda ev: self._progress(rec, ev), rec.cancel,
                                lambda msg: self._log(rec, msg))
        except Cancelled:
            self._finish(rec, CANCELLED)
            return
        except job.expected as exc:
            self._finish(rec, FAILED, error=public_message(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the page
            log.exception("job %s (%s) failed", rec.id, job.label)
            kind = type(exc).__name__
            self._finish(rec, FAILED, error=job.unexpected.format(kind=kind)
                         if job.unexpected else public_message(f"{kind}: {exc}"),
                         unexpected=True)
            return
        summary = None
        if job.summarize is not None:
            try:
                summary = job.summarize(result)
            except Exception:  # noqa: BLE001 - a summary bug must not lose the result
                log.exception("summarising job %s failed", rec.id)
        cancelled = bool(getattr(result, "cancelled", rec.cancel.is_set()))
        self._finish(rec, CANCELLED if cancelled else DONE, result=result, summary=summary)

    def _finish(self, rec: _Record, status: str, *, result: Any = None,
                summary: dict[str, Any] | None = None, error: str | None = None,
                unexpected: bool = False) -> None:
        with self._lock:
            rec.status, rec.finished = status, time.time()
            rec.result, rec.summary, rec.error = result, summary, error
            rec.unexpected = unexpected
            if status == DONE:
                rec.fraction = 1.0
        rec.ended.set()

    def _prune(self) -> None:
        """Forget the oldest finished jobs beyond ``keep_finished`` (lock held)."""
        done = sorted((r for r in self._records.values() if r.status not in ACTIVE),
                      key=lambda r: r.created)
        for r in done[:max(0, len(done) - self.keep_finished)]:
            self._records.pop(r.id, None)

    # -- progress ------------------------------------------------------------------------
    def _fraction(self, plan: dict[str, int], ev: dict[str, Any], old: float) -> float:
        phase = ev.get("phase")
        if phase == "done":
            return 1.0
        given = _num(ev.get("fraction"))
        if given is not None:  # jobs without epochs say how far they are themselves
            return min(max(given, old), 1.0)
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
                "id": rec.id, "kind": rec.job.kind, "label": rec.job.label,
                "meta": dict(rec.job.meta),
                "plan": dict(rec.job.plan), "status": rec.status,
                "active": rec.status in ACTIVE, "cancel_requested": rec.cancel.is_set(),
                "created": rec.created, "started": rec.started, "finished": rec.finished,
                "elapsed": (now - rec.started) if rec.started else 0.0,
                "progress": dict(rec.last), "fraction": rec.fraction, "events": rec.events,
                "loss": [list(p) for p in rec.loss], "valid": [list(p) for p in rec.valid],
                "messages": list(rec.messages),
                "summary": dict(rec.summary) if rec.summary else None, "error": rec.error,
                "unexpected": rec.unexpected,
            }

    def result(self, job_id: str) -> Any:
        """What the job's target returned (None while it runs, or if it failed)."""
        with self._lock:
            return self._get(job_id).result

    def claim(self, job_id: str) -> bool:
        """True the first time it is asked of a job that finished (done, failed or
        cancelled), False before it ends and ever after: overlapping polls of one job deliver
        its result once."""
        with self._lock:
            rec = self._get(job_id)
            if rec.status in ACTIVE or rec.claimed:
                return False
            rec.claimed = True
            return True

    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop; True if it was still queued or running. A queued job is
        cancelled at once and never starts."""
        with self._lock:
            rec = self._get(job_id)
            if rec.status not in ACTIVE:
                return False
            rec.cancel.set()
            queued = rec.status == QUEUED
            if queued:  # under the lock, so no worker starts it in between
                rec.status, rec.finished = CANCELLED, time.time()
        if queued:
            rec.ended.set()
        return True

    def stop(self, timeout: float) -> list[str]:
        """Cancel every queued and running job and wait up to ``timeout`` seconds in all for
        the running ones to end; returns the labels of those still running."""
        with self._lock:
            active = [r.id for r in self._records.values() if r.status in ACTIVE]
        for job_id in active:
            self.cancel(job_id)
        deadline = time.monotonic() + timeout
        with self._lock:
            running = [r for r in self._records.values() if r.status in ACTIVE]
        for rec in running:
            rec.ended.wait(max(0.0, deadline - time.monotonic()))
        return [r.job.label for r in running if not r.ended.is_set()]

    def forget(self, job_id: str) -> None:
        """Drop a finished job and its result now (a large result that was handed out)."""
        with self._lock:
            rec = self._records.get(str(job_id))
            if rec is not None and rec.status not in ACTIVE:
                del self._records[rec.id]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends (or ``timeout`` seconds pass); returns its snapshot."""
        with self._lock:
            rec = self._get(job_id)
        rec.ended.wait(timeout)
        return self.snapshot(job_id)

    def jobs(self, active_only: bool = False, kind: str | None = None,
             **meta: Any) -> list[dict[str, Any]]:
        """Snapshots of the jobs of ``kind`` (any if None) whose ``meta`` matches every given
        key, newest first."""
        with self._lock:
            ids = [r.id for r in sorted(self._records.values(), key=lambda r: r.created,
                                        reverse=True)
                   if all(r.job.meta.get(k) == v for k, v in meta.items())
                   and (kind is None or r.job.kind == kind)
                   and (not active_only or r.status in ACTIVE)]
        out = []
        for i in ids:
            try:
                out.append(self.snapshot(i))
            except JobNotFound:  # pruned meanwhile
                continue
        return out


# -- stopping at exit, the process-wide runner and the training job ------------------------
_RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """At the interpreter's exit: every runner's jobs cancelled, the running ones awaited
    (``EXIT_WAIT_S`` in all); says so on stderr when there were any."""
    runners = list(_RUNNERS)
    labels = [r["label"] for runner in runners for r in runner.jobs(active_only=True)]
    if not labels:
        return
    print(f"TrailScope: cancelling {len(labels)} background job(s) before exit "
          f"({', '.join(labels[:3])}); waiting up to {EXIT_WAIT_S:.0f} s for them to stop",
          file=sys.stderr, flush=True)
    deadline = time.monotonic() + EXIT_WAIT_S
    left = [label for runner in runners
            for label in runner.stop(max(0.0, deadline - time.monotonic()))]
    if left:
        print(f"TrailScope: {len(left)} job(s) did not stop in time ({', '.join(left[:3])}); "
              "nothing they were writing is kept", file=sys.stderr, flush=True)


RUNNER = JobRunner(max_running=1, limits=LIMITS)


def start(job: Job) -> str:
    return RUNNER.start(job)


def snapshot(job_id: str) -> dict[str, Any]:
    return RUNNER.snapshot(job_id)


def cancel(job_id: str) -> bool:
    return RUNNER.cancel(job_id)


def result(job_id: str) -> Any:
    return RUNNER.result(job_id)


def claim(job_id: str) -> bool:
    return RUNNER.claim(job_id)


def wait(job_id: str, timeout: float | None = None) -> dict[str, Any]:
    return RUNNER.wait(job_id, timeout)


def forget(job_id: str) -> None:
    RUNNER.forget(job_id)


def jobs(active_only: bool = False, kind: str | None = None,
         **meta: Any) -> list[dict[str, Any]]:
    return RUNNER.jobs(active_only, kind, **meta)


def _train_summary(res: Any) -> dict[str, Any]:
    out = res.to_json()
    out.pop("history", None)
    return out


def training_job(store: Any, dataset: str, model: str, *, epochs: int = 10,
                 split: str = "leave-last", device: str = "auto", max_len: int = 50,
                 pretrain_epochs: int = 2, **train_kwargs: Any) -> Job:
    """A Job running ``models.api.train(store, dataset, model, settings, config)`` with
    progress, cancel and log hooks. ``train_kwargs`` are further training or model settings
    (e.g. ``batch_size``, ``hidden``), checked by models.training.settings.resolve.
    """
    from ...models.recommenders import registry
    from ...models.training.settings import resolve

    cls = registry.get_class(model)  # unknown names fail here, before a thread starts
    settings, config = resolve(model, {"epochs": epochs, "split": split, "device": device,
                                       "max_len": max_len, "pretrain_epochs": pretrain_epochs,
                                       **train_kwargs})
    wants_pre = bool(getattr(config, "pretrain", False))
    plan = {"pretrain": int(pretrain_epochs)} if wants_pre and pretrain_epochs > 0 else {}
    if cls.trainable:
        plan["train"] = int(epochs)

    def target(progress: Progress, cancel: threading.Event, logger: Callable[[str], None]) -> Any:
        from ...models import api

        # the runner stores plain dicts: TrainEvent.to_dict
        return api.train(store, dataset, model, settings, config,
                         progress=lambda ev: progress(ev.to_dict()), cancel=cancel, log=logger)

    meta = {"dataset": dataset, "model": model, "split": split, "epochs": int(epochs),
            "device": device, "max_len": int(max_len),
            **{k: v for k, v in train_kwargs.items() if isinstance(v, (int, float, str, bool))}}
    return Job(target=target, label=f"train {model} on {dataset}", meta=meta, plan=plan,
               summarize=_train_summary)

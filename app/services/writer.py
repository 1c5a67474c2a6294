"""The server's one write path for streamed events: one writer thread, group commits.

DuckDB admits one writing process per workspace file, and within the process concurrent
transactions that touch the same registry row conflict at commit. So every append (the HTTP
API, the Redis consumer inside the server) and every drop goes through one daemon thread:

* :func:`append` runs in the caller's (request) thread: it checks the events there
  (``analytics.append.validate_columns``: a bad batch raises :class:`AppendError` and never
  enters the queue; a good one becomes the batch the commit stores: Arrow, or for a small
  batch Python lists, converted together with the rest of its group at the commit), queues
  them and blocks until they are committed, then returns the caller's own
  :class:`AppendResult` (stored, duplicates, the dataset's rows after the commit);
* the writer takes the oldest request and everything queued behind it for the same dataset
  (up to :data:`GROUP_ROWS` events, never past a drop of that dataset) and stores it in one
  transaction (``analytics.append.append``: a group commit), then hands each caller its share;
* a second daemon thread folds what the commits staged for the summaries
  (``analytics.append.fold_summaries``) beside them, at once after FOLD_IDLE_S without a
  request or answer, else every ``incremental.FOLD_S`` to FOLD_MAX_S seconds (slow folds run less
  often), so no commit waits for a fold; after a fold it
  asks ``live.rebuild_if_needed`` for the background summary rebuild (started when enough
  events are behind and the last rebuild ended long enough ago);
* :func:`drop` deletes a dataset in the same queue, so it cannot race an append (nor a
  fold: it holds ``analytics.append.write_lock``);
* the queue is bounded (:data:`MAX_QUEUED` requests, :data:`MAX_QUEUED_ROWS` events): beyond
  that :class:`WriterBusy` says to retry (the API answers 503), as does a request the writer
  did not reach within its ``timeout`` (nothing of it is stored then).

After a commit the registry's row count has changed, so ``cache.dataset_stamp`` (import time
and rows) is new and every memoised answer about the dataset is recomputed on next use.
:func:`stats` counts groups, events and commit times (bench/stream_bench.py).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ...analytics import schema
from ...analytics.append import (
    AppendError,
    AppendResult,
    Columns,
    fold_summaries,
    merge_batches,
    validate_columns,
    write_lock,
)
from ...analytics.append import append as store_append
from ...analytics.rollups import incremental
from ...analytics.store import StoreError
from . import live
from .workspace import ServiceError, get_store

__all__ = ["AppendError", "AppendResult", "WriterBusy", "append", "drop", "stats"]

log = logging.getLogger(__name__)

#: Most events one group commit stores (a single larger request is committed alone).
GROUP_ROWS = 50_000
#: Under concurrent posts a group waits for more requests at most this share of the last
#: commit's time, and never longer than LINGER_MAX_S, nor once GROUP_REQUESTS requests wait,
#: nor once the callers the last commit answered are back (as many requests wait as waited
#: beside that commit plus its group).
LINGER_SHARE = 0.3
LINGER_MAX_S = 0.02
GROUP_REQUESTS = 64
#: Staged events are folded at once after this long without a request; under a stream every
#: ``incremental.FOLD_S`` seconds, or FOLD_SPACING times the last fold's duration when that
#: is longer, never less often than every FOLD_MAX_S seconds.
FOLD_IDLE_S = 0.05
FOLD_SPACING = 2.5
FOLD_MAX_S = 1.0
#: Requests and events that may wait for the writer; beyond either, WriterBusy.
MAX_QUEUED = 2_000
MAX_QUEUED_ROWS = 500_000
#: How long a caller waits for its batch by default, in seconds.
TIMEOUT_S = 30.0
#: How long a process that used the writer waits at exit for its commits and folds (see
#: :meth:`Writer.__init__`).
EXIT_WAIT_S = 10.0

QUEUED, TAKEN, ABANDONED = "queued", "taken", "abandoned"


class WriterBusy(ServiceError):
    """The writer cannot take the request now (queue full, or not reached in time); nothing
    of it was stored. The API answers 503 with Retry-After."""


@dataclass(eq=False)
class _Request:
    kind: str  # "append" or "drop"
    name: str
    key: str  # the dataset name as compared (lower case)
    frame: pa.Table | Columns | None = None
    state: str = QUEUED
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return 0 if self.frame is None else len(self.frame)


class Writer:
    """One writer thread with its queue (use the module's functions: one per process)."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._queued_rows = 0
        self._thread: threading.Thread | None = None
        self._stats = {"groups": 0, "requests": 0, "events": 0, "stored": 0, "duplicates": 0,
                       "failed_groups": 0, "drops": 0, "commit_ms_total": 0.0,
                       "commit_ms_max": 0.0, "last_commit_ms": 0.0, "largest_group": 0,
                       "folds": 0, "folded": 0, "fold_ms_total": 0.0}
        self._staged: dict[str, float] = {}  # dataset -> when its first unfolded group came
        self._folding = 0  # datasets the folder thread is folding now
        self._fold_s: dict[str, float] = {}  # dataset -> seconds its last fold took
        # when the last request was queued or the last group answered (time.monotonic): the
        # writer is quiet once neither happened for FOLD_IDLE_S (under a stream whose commits
        # take longer than that, the next requests come moments after each answer)
        self._last_active = 0.0
        self._wake = threading.Condition(self._lock)  # the folder waits on it
        self._folder: threading.Thread | None = None
        self._idle = threading.Event()  # nothing queued, running or staged (wait_idle)
        self._idle.set()
        # at the interpreter's exit, wait (up to EXIT_WAIT_S) for the commits and folds, so a
        # program that appended in process (a bench, a notebook, a test) ends after its last
        # fold: CPython ends daemon threads still inside a DuckDB call by unwinding them,
        # which DuckDB turns into an abort ("FATAL: exception not rethrown"); an unused
        # writer is idle and returns at once. ``trailscope serve`` winds down in its own
        # order (app/main.py) and never reaches the interpreter's exit.
        atexit.register(self.wait_idle, EXIT_WAIT_S)

    # -- callers ---------------------------------------------------------------------------
    def append(self, name: str, records: list[dict], timeout: float = TIMEOUT_S) -> AppendResult:
        name = _clean(name)
        batch = validate_columns(records)  # AppendError: never queued
        if not len(batch):
            info = get_store().info(name)  # DatasetNotFound for an unknown dataset
            return AppendResult(stored=0, duplicates=0, rows=int(info.rows))
        req = _Request("append", name, name.lower(), batch)
        return self._submit(req, timeout)

    def drop(self, name: str, timeout: float = TIMEOUT_S) -> str:
        name = _clean(name)
        return self._submit(_Request("drop", name, name.lower()), timeout)

    def wait_idle(self, timeout: float = TIMEOUT_S) -> bool:
        """Wait until nothing is queued, being committed or staged for a fold (before the
        store is closed); whether it got there within ``timeout`` seconds."""
        return self._idle.wait(timeout)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
            out.update(queued=self._queued, queued_rows=self._queued_rows)
        out["commit_ms_mean"] = (out["commit_ms_total"] / out["groups"]) if out["groups"] else 0.0
        return out

    def _submit(self, req: _Request, timeout: float) -> Any:
        with self._lock:
            # one request larger than MAX_QUEUED_ROWS is taken when nothing else waits
            if self._queued >= MAX_QUEUED or (
                    self._queued and self._queued_rows + req.rows > MAX_QUEUED_ROWS):
                raise WriterBusy(
                    f"the server's writer has {self._queued} batches ({self._queued_rows:,} "
                    "events) waiting: nothing was stored; send the batch again in a moment")
            self._queued += 1
            self._queued_rows += req.rows
            self._last_active = time.monotonic()
            self._idle.clear()
            self._start()
        self._q.put(req)
        if not req.done.wait(timeout):
            with self._lock:
                if req.state == QUEUED:
                    req.state = ABANDONED
                    self._release(req)
            if req.state == ABANDONED:
                raise WriterBusy(
                    f"the server's writer did not reach the batch within {timeout:g} s (it is "
                    "busy): nothing was stored; send it again")
            req.done.wait()  # being committed: the outcome is moments away
        if req.error is not None:
            raise req.error
        return req.result

    def _start(self) -> None:
        """Start the writer and folder threads (under the lock) if they are not running."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="trailscope-writer",
                                            daemon=True)
            self._thread.start()
        if self._folder is None or not self._folder.is_alive():
            self._folder = threading.Thread(target=self._fold_loop, name="trailscope-folder",
                                            daemon=True)
            self._folder.start()

    def _set_idle_if_idle(self) -> None:
        """Under the lock: mark the writer idle when nothing is queued, staged or folding."""
        if not self._queued and not self._staged and not self._folding:
            self._idle.set()

    def _release(self, req: _Request) -> None:
        """Count ``req`` off the queue (under the lock)."""
        self._queued -= 1
        self._queued_rows -= req.rows

    # -- the writer thread -----------------------------------------------------------------
    def _loop(self) -> None:
        pending: deque[_Request] = deque()
        linger = 0.0  # how long the next group may wait for more requests (seconds)
        want = GROUP_REQUESTS  # requests the next group waits for (at most ``linger``)
        while True:
            if not pending:
                pending.append(self._q.get())
            self._gather(pending, linger, want)
            group = self._take(pending)
            if not group:
                continue
            t0 = time.monotonic()
            waiting = 0
            try:
                self._run(group)
            except BaseException as exc:  # never let the thread die with callers waiting
                log.exception("writer: group of %d failed", len(group))
                for req in group:
                    req.error = req.error or exc
            finally:
                with self._lock:
                    for req in group:
                        self._release(req)
                    waiting = self._queued  # not counting the callers answered below
                    self._last_active = time.monotonic()
                    if group[0].kind == "append":
                        self._staged.setdefault(group[0].name, self._last_active)
                    self._wake.notify()
                    self._set_idle_if_idle()
                for req in group:
                    req.done.set()
            # several callers shared this commit: others are sending, and the ones just
            # answered send again within moments; the next group waits a fraction of a
            # commit for them, so concurrent small posts share commits instead of
            # alternating in half-sized groups; it stops waiting once those callers are back
            linger = (min(LINGER_MAX_S, LINGER_SHARE * (time.monotonic() - t0))
                      if len(group) > 1 else 0.0)
            want = min(GROUP_REQUESTS, waiting + len(group))

    def _gather(self, pending: deque[_Request], linger: float, want: int = GROUP_REQUESTS
                ) -> None:
        """Move what is queued into ``pending``; with ``linger``, keep taking arrivals until
        ``want`` requests wait or ``linger`` seconds have passed."""
        end = time.monotonic() + linger
        while True:
            try:
                pending.append(self._q.get_nowait())
                continue
            except queue.Empty:
                pass
            left = end - time.monotonic()
            if left <= 0 or len(pending) >= want:
                return
            try:
                pending.append(self._q.get(timeout=left))
            except queue.Empty:
                return

    # -- the folder thread -----------------------------------------------------------------
    def _fold_loop(self) -> None:
        """Fold the events staged for the summaries (analytics.append.fold_summaries) beside
        the writer's commits: all of them once no request has come and no group was answered
        for FOLD_IDLE_S seconds,
        else those staged :meth:`_fold_every` seconds ago or more, so a steady stream pays
        for one summary update per interval, not per batch, and no commit waits for a fold."""
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    quiet = not self._queued and now - self._last_active >= FOLD_IDLE_S
                    due = [name for name, since in self._staged.items()
                           if quiet or now - since >= self._fold_every(name)]
                    if due:
                        break
                    wait = None
                    if self._staged:
                        wait = min(since + self._fold_every(name) - now
                                   for name, since in self._staged.items())
                        if not self._queued:
                            wait = min(wait, self._last_active + FOLD_IDLE_S - now)
                    self._wake.wait(wait)
                for name in due:
                    del self._staged[name]
                self._folding += len(due)
            for name in due:
                t0, n = time.perf_counter(), 0
                try:
                    n = fold_summaries(get_store(), name)
                    self._rebuild_if_needed(name)
                except Exception:  # noqa: BLE001 - the folder must not die; the events are stored
                    log.exception("could not fold the appended events of %s", name)
                finally:
                    took = time.perf_counter() - t0
                    with self._lock:
                        self._fold_s[name] = took
                        self._folding -= 1
                        self._stats["folds"] += 1
                        self._stats["fold_ms_total"] += took * 1000
                        self._stats["folded"] += n
                        self._set_idle_if_idle()

    def _fold_every(self, name: str) -> float:
        """Seconds between folds of ``name`` under a stream: ``incremental.FOLD_S``, longer
        when its folds are slow (FOLD_SPACING times the last one's duration, so folding takes
        at most a share of a core), at most FOLD_MAX_S (a posted event still shows within
        the 2 s goal)."""
        return min(FOLD_MAX_S, max(incremental.FOLD_S, FOLD_SPACING * self._fold_s.get(name, 0)))

    def _rebuild_if_needed(self, name: str) -> None:
        """Start the background summary rebuild of ``name`` when it is due
        (app/services/live.rebuild_if_needed: enough appended events behind, and the last
        rebuild ended long enough ago)."""
        try:
            live.rebuild_if_needed(name)
        except Exception:  # noqa: BLE001 - the events are stored; the pages still answer
            log.exception("could not start the summary rebuild of %s", name)

    def _take(self, pending: deque[_Request]) -> list[_Request]:
        """The next group: the oldest live request and, for an append, the appends to the
        same dataset behind it up to GROUP_ROWS events, stopping at a drop of that dataset.
        Marks them taken; abandoned requests are discarded."""
        group: list[_Request] = []
        rest: deque[_Request] = deque()
        rows, closed = 0, False
        with self._lock:
            while pending:
                req = pending.popleft()
                if req.state == ABANDONED:
                    continue
                if not group:
                    group.append(req)
                    rows, closed = req.rows, req.kind == "drop"
                elif closed or req.key != group[0].key:
                    rest.append(req)
                elif req.kind == "drop" or rows + req.rows > GROUP_ROWS:
                    closed = True  # later requests for the dataset wait their turn
                    rest.append(req)
                else:
                    group.append(req)
                    rows += req.rows
            for req in group:
                req.state = TAKEN
        pending.extend(rest)
        return group

    def _run(self, group: list[_Request]) -> None:
        """Commit one group and give each request its result or the group's error."""
        head = group[0]
        store = get_store()
        if head.kind == "drop":
            try:
                with write_lock():  # no fold of the dataset meanwhile
                    head.result = store.drop(head.name)
            except Exception as exc:  # noqa: BLE001 - the caller's error (DatasetNotFound, ...)
                head.error = exc
            with self._lock:
                self._stats["drops"] += 1
            return
        frame = merge_batches([req.frame for req in group])  # one Arrow chunk
        t0 = time.perf_counter()
        try:
            res = store_append(store, head.name, frame, fold=False)
        except Exception as exc:  # noqa: BLE001 - each caller gets the group's error
            for req in group:
                req.error = exc
            with self._lock:
                self._stats["failed_groups"] += 1
            return
        ms = (time.perf_counter() - t0) * 1000
        at = 0
        for req in group:
            kept = res.kept[at:at + req.rows]
            at += req.rows
            stored = int(np.count_nonzero(kept))
            req.result = AppendResult(stored=stored, duplicates=req.rows - stored,
                                      rows=res.rows, kept=kept)
        with self._lock:
            s = self._stats
            s["groups"] += 1
            s["requests"] += len(group)
            s["events"] += len(frame)
            s["stored"] += res.stored
            s["duplicates"] += res.duplicates
            s["commit_ms_total"] += ms
            s["commit_ms_max"] = max(s["commit_ms_max"], ms)
            s["last_commit_ms"] = ms
            s["largest_group"] = max(s["largest_group"], len(frame))


def _clean(name: str) -> str:
    try:
        return schema.clean_dataset_name(name)
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc


_writer = Writer()


def append(name: str, records: list[dict], timeout: float = TIMEOUT_S) -> AppendResult:
    """Store ``records`` (JSON-like event dicts) in dataset ``name`` through the process's
    writer; blocks until committed and returns this call's own counts. Raises AppendError
    (bad events: nothing stored), WriterBusy (queue full or not reached in time: nothing
    stored), DatasetNotFound, StoreError (the dataset is being imported; the write failed)."""
    return _writer.append(name, records, timeout)


def drop(name: str, timeout: float = TIMEOUT_S) -> str:
    """Delete dataset ``name`` through the writer (after the appends queued before it);
    returns the name dropped. Raises DatasetNotFound, StoreError (being imported)."""
    return _writer.drop(name, timeout)


def wait_idle(timeout: float = TIMEOUT_S) -> bool:
    """Nothing queued, committing or waiting to be folded (:meth:`Writer.wait_idle`)."""
    return _writer.wait_idle(timeout)


def drop_dataset(name: str) -> None:
    """:func:`drop` for the Data page: a refusal (unknown, being imported) as ServiceError."""
    try:
        drop(name)
    except StoreError as exc:
        raise ServiceError(str(exc)) from exc


def stats() -> dict[str, Any]:
    """The writer's counters: groups committed, requests, events, stored, duplicates, failed
    groups, drops, commit milliseconds (total, mean, max, last), largest group, and what
    waits now (queued requests and events)."""
    return _writer.stats()

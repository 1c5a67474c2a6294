"""The consumer loop: read a batch from a source, store it through the write path, acknowledge.

Order of the steps, which is what makes a killed consumer lose nothing and store nothing twice:

1. read up to ``batch`` messages (this consumer's unacknowledged ones first);
2. give every event its id (its own ``event_id``, else the message key ``<stream>:<entry id>``);
3. store the batch in one commit through the write path (``Sink``); events the write path
   refuses are taken out and the rest is stored;
4. send the refused ones to the dead-letter stream with their index, field and reason;
5. acknowledge the whole batch.

A kill before 3 commits leaves the batch unacknowledged: the restarted consumer reads it again.
A kill between 3 and 5 does the same, and the write path, idempotent by event id, counts the
second store as duplicates. A refused event is acknowledged after it is kept in the dead-letter
stream, so one bad message never blocks the stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .source import Message, Rejected, Source

#: The event field naming an event uniquely (the write path stores an id once).
EVENT_ID = "event_id"


@dataclass(frozen=True)
class Problem:
    """One refused event of a batch given to a sink: its index in that batch, field, reason."""

    index: int
    field: str
    reason: str


class BatchRefused(Exception):
    """The sink stored nothing of the batch because of these events."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(f"{len(problems)} events refused")
        self.problems = list(problems)


@dataclass(frozen=True)
class Written:
    stored: int
    duplicates: int


class Sink(Protocol):
    """The write path: store ``records`` in one commit (all or none) or raise ``BatchRefused``
    naming the bad events. Idempotent by ``event_id``."""

    label: str

    def write(self, records: list[dict[str, Any]]) -> Written:
        ...


@dataclass
class Counts:
    """What a run did, in messages."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def _with_id(message: Message) -> dict[str, Any]:
    record = dict(message.record or {})
    if record.get(EVENT_ID) in (None, ""):
        record[EVENT_ID] = message.key
    return record


def _rejection(message: Message, index: int, problems: list[Problem]) -> Rejected:
    reason = "; ".join(p.reason if len(problems) == 1 else f"{p.field}: {p.reason}"
                       for p in problems)
    return Rejected(message, index, problems[0].field, reason)


def store_batch(sink: Sink, messages: Sequence[Message]) -> tuple[Written, list[Rejected]]:
    """Store the events of ``messages`` through ``sink``: the ones it refuses are taken out
    and the rest stored in one commit. Returns what was stored and what was refused."""
    rejected = [Rejected(m, i, m.field, m.error) for i, m in enumerate(messages)
                if m.record is None]
    good = [(i, m) for i, m in enumerate(messages) if m.record is not None]
    while good:
        try:
            return sink.write([_with_id(m) for _, m in good]), rejected
        except BatchRefused as exc:
            by_index: dict[int, list[Problem]] = {}
            for p in exc.problems:
                by_index.setdefault(p.index, []).append(p)
            if not by_index or not all(0 <= i < len(good) for i in by_index):
                raise RuntimeError(f"{sink.label} refused the batch without naming events "
                                   "it could leave out") from exc
            rejected += [_rejection(good[i][1], good[i][0], ps) for i, ps in by_index.items()]
            good = [g for j, g in enumerate(good) if j not in by_index]
    return Written(0, 0), rejected


def run(source: Source, sink: Sink, *, batch: int = 1000, block_ms: int = 1000,
        max_events: int | None = None, idle_exit_s: float | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[Counts], None] | None = None) -> Counts:
    """Consume until ``stop`` is set (checked between batches), ``max_events`` messages were
    handled, or no message came for ``idle_exit_s`` seconds."""
    counts = Counts()
    stop = stop or threading.Event()
    last_message = time.monotonic()
    while not stop.is_set():
        want = batch if max_events is None else min(batch, max_events - counts.read)
        if want <= 0:
            break
        messages = source.read(want, block_ms)
        if not messages:
            if idle_exit_s is not None and time.monotonic() - last_message >= idle_exit_s:
                break
            continue
        last_message = time.monotonic()
        written, rejected = store_batch(sink, messages)   # committed (or raised)
        source.dead_letter(rejected)
        source.ack([m.id for m in messages])              # only now
        counts.read += len(messages)
        counts.stored += written.stored
        counts.duplicates += written.duplicates
        counts.rejected += len(rejected)
        counts.batches += 1
        if progress is not None:
            progress(counts)
    return counts

"""The interface between a message stream and the consumer loop (``consumer.py``).

A source hands out messages in order, is told which ones are stored (``ack``: Redis ``XACK``,
a Kafka offset commit) and where the events it could not store go (``dead_letter``). The
consumer acknowledges a message only after the write path has committed its event, so a
killed consumer leaves its messages unacknowledged and a restarted one reads them again; the
event id (``Message.key`` unless the event names its own) makes the second store a no-op.

A Kafka source would implement the same four calls: ``read`` = ``poll`` up to ``max_count``
messages, ``key`` = ``topic:partition:offset``, ``ack`` = commit the next offsets of the
acknowledged messages, ``dead_letter`` = produce to a ``<topic>.rejected`` topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Message:
    """One stream entry. ``id`` is what ``ack`` takes (a Redis entry id); ``key`` names the
    entry uniquely across sources and restarts (``<stream>:<entry id>``) and is the event's id
    when the event carries none. ``record`` is the decoded event (canonical field -> value),
    or None when the entry could not be decoded: ``error`` then says why, naming ``field``."""

    id: str
    key: str
    record: dict[str, Any] | None
    raw: str = ""
    field: str = ""
    error: str = ""


@dataclass(frozen=True)
class Rejected:
    """A message the write path refused: its index in the batch, which event field and why."""

    message: Message
    index: int
    field: str
    reason: str


class Source(Protocol):
    """A stream read through a consumer group (or a Kafka group id)."""

    #: Where the messages come from, for progress lines (no password in it).
    label: str

    def read(self, max_count: int, block_ms: int) -> list[Message]:
        """Up to ``max_count`` messages: first the ones handed to this consumer before and
        never acknowledged, then new ones (waiting up to ``block_ms`` for some)."""
        ...

    def ack(self, ids: Sequence[str]) -> None:
        """Mark messages as done: the consumer calls it only after their events committed."""
        ...

    def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        """Keep refused messages, with the field and reason, where a person can look at them;
        the consumer acknowledges them afterwards so a poison message never blocks the stream."""
        ...

    def close(self) -> None:
        ...

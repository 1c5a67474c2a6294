"""A Redis Stream read through a consumer group (``XREADGROUP``/``XACK``/``XAUTOCLAIM``).

An entry holds one event: a field ``event`` with the event's JSON object, or the canonical
fields as separate stream fields (``user_id``, ``item_id``, ``ts``, ...). Refused entries go
to the stream ``<stream>:rejected`` with the entry id, the index in its batch, the field and
the reason, and are then acknowledged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis

from .source import Message, Rejected

#: The stream field that holds an event as one JSON object.
EVENT_FIELD = "event"
#: Suffix of the dead-letter stream beside the consumed one.
REJECTED_SUFFIX = ":rejected"
#: Bound of the dead-letter stream (approximate trim), so a flood of bad events cannot fill
#: the Redis server's memory.
REJECTED_MAXLEN = 100_000


class StreamError(RuntimeError):
    """The stream cannot be used: a bad URL, an unreachable server, a refused command."""


def parse_url(url: str) -> tuple[dict[str, Any], str, str]:
    """``redis://[:password@]HOST[:PORT]/STREAM[?db=N]`` -> (connection kwargs, stream, label).
    The label repeats the URL without its password, for progress lines and messages."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise StreamError(f"--from {url!r}: expected redis://HOST:PORT/STREAM")
    stream = unquote(parts.path.lstrip("/"))
    if not stream:
        raise StreamError(f"--from {url!r}: name the stream after the port, "
                          "e.g. redis://127.0.0.1:6379/events")
    try:
        port = parts.port or 6379
        db = int(parse_qs(parts.query).get("db", ["0"])[0])
    except ValueError as exc:
        raise StreamError(f"--from {url!r}: {exc}") from exc
    kwargs: dict[str, Any] = {"host": parts.hostname or "127.0.0.1", "port": port, "db": db,
                              "username": unquote(parts.username) if parts.username else None,
                              "password": unquote(parts.password) if parts.password else None,
                              "ssl": parts.scheme == "rediss", "socket_connect_timeout": 10}
    return kwargs, stream, f"{parts.scheme}://{kwargs['host']}:{port}/{stream}"


def decode(entry_id: str, fields: dict[bytes, bytes] | None, stream: str) -> Message:
    """One stream entry as a message; an entry that cannot become an event keeps its text in
    ``raw`` and says why in ``error``."""
    key = f"{stream}:{entry_id}"
    if not fields:  # pending, but deleted from the stream (XDEL, MAXLEN trim)
        return Message(entry_id, key, None, field="", error="the entry was deleted from the "
                       "stream before it was stored")
    try:
        text = {k.decode(): v.decode() for k, v in fields.items()}
    except UnicodeDecodeError:
        return Message(entry_id, key, None, raw=repr(fields)[:2000], field="",
                       error="the entry is not UTF-8 text")
    raw = text.get(EVENT_FIELD)
    if raw is None:  # the canonical fields as separate stream fields
        return Message(entry_id, key, dict(text), raw=json.dumps(text, ensure_ascii=False))
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Message(entry_id, key, None, raw=raw, field=EVENT_FIELD,
                       error=f"not valid JSON ({exc.msg} at character {exc.pos})")
    if not isinstance(record, dict):
        return Message(entry_id, key, None, raw=raw, field=EVENT_FIELD,
                       error=f"expected a JSON object, got {type(record).__name__}")
    return Message(entry_id, key, record, raw=raw)


class RedisSource:
    """Reads ``stream`` as ``consumer`` of ``group``: first this consumer's own pending entries
    (delivered before, never acknowledged: a killed run), then new ones; every ``claim_every_s``
    it takes over entries idle longer than ``claim_idle_ms`` in other consumers of the group
    (consumers that died) and reads them as its own pending ones."""

    def __init__(self, url: str, group: str, consumer: str, *, from_now: bool = False,
                 claim_idle_ms: int = 60_000, claim_every_s: float = 10.0) -> None:
        kwargs, self.stream, self.label = parse_url(url)
        self.group, self.consumer = group, consumer
        self.claim_idle_ms, self.claim_every_s = claim_idle_ms, claim_every_s
        self._redis = redis.Redis(**kwargs)
        self._pending_from: str | None = "0"  # None: reading new entries (">")
        self._claimed_at = 0.0
        try:
            self._redis.xgroup_create(self.stream, group, id="$" if from_now else "0",
                                      mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StreamError(f"{self.label}: cannot create consumer group {group!r}: "
                                  f"{exc}") from exc
        except redis.RedisError as exc:
            raise StreamError(f"cannot reach Redis at {self.label}: {exc}") from exc

    def _claim(self) -> None:
        """Own the entries other consumers left idle too long; read them as pending next."""
        self._claimed_at = time.monotonic()
        start, claimed = "0-0", 0
        while True:
            # [next start, entries, deleted ids] (redis-py's JUSTID form drops the cursor);
            # the entries are read again below as this consumer's pending ones
            reply = self._redis.xautoclaim(self.stream, self.group, self.consumer,
                                           self.claim_idle_ms, start_id=start, count=1000)
            start = reply[0]
            claimed += len(reply[1])
            if start in (b"0-0", "0-0"):
                break
        if claimed:
            self._pending_from = "0"

    def read(self, max_count: int, block_ms: int) -> list[Message]:
        try:
            if time.monotonic() - self._claimed_at >= self.claim_every_s:
                self._claim()
            if self._pending_from is not None:
                reply = self._redis.xreadgroup(self.group, self.consumer,
                                               {self.stream: self._pending_from},
                                               count=max_count)
                entries = reply[0][1] if reply else []
                if entries:
                    self._pending_from = entries[-1][0].decode()
                else:
                    self._pending_from = None
            if self._pending_from is None:
                reply = self._redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                               count=max_count, block=max(block_ms, 1))
                entries = reply[0][1] if reply else []
        except redis.RedisError as exc:
            raise StreamError(f"reading {self.label} failed: {exc}") from exc
        return [decode(eid.decode(), fields, self.stream) for eid, fields in entries]

    def ack(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            self._redis.xack(self.stream, self.group, *ids)
        except redis.RedisError as exc:
            raise StreamError(f"acknowledging entries of {self.label} failed: {exc}") from exc

    def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        pipe = self._redis.pipeline(transaction=False)
        for r in rejected:
            pipe.xadd(self.stream + REJECTED_SUFFIX,
                      {"entry_id": r.message.id, "index": str(r.index), "field": r.field,
                       "reason": r.reason, EVENT_FIELD: r.message.raw},
                      maxlen=REJECTED_MAXLEN, approximate=True)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise StreamError(f"writing to {self.stream + REJECTED_SUFFIX} failed: "
                              f"{exc}") from exc

    def close(self) -> None:
        self._redis.close()

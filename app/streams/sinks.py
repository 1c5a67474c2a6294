"""The write path as the consumer sees it (``consumer.Sink``): the workspace opened here, or
the API of the server that holds it.

DuckDB admits one writing process per workspace file, so while ``trailscope serve`` runs on
the workspace the consumer posts its batches to that server's API (the server's one writer
serialises them with every other write); otherwise it opens the Store itself and calls the same
``analytics.append`` the server calls.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from ...analytics.append import AppendError, append, validate
from ...analytics.store import Store
from ..cli.remote import API, RemoteError, Server, post_events
from .consumer import BatchRefused, Problem, Written

#: How long a batch is retried while the server is busy (503) or unreachable; the batch is
#: idempotent (event ids), so a retry after a lost answer stores nothing twice.
RETRY_FOR_S = 60.0


def problems_of(exc: AppendError) -> list[Problem]:
    """The refused events named by the write path's error."""
    return [Problem(p.index, p.field, p.reason) for p in exc.problems]


class StoreSink:
    """Appends to dataset ``name`` of a Store this process holds."""

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, store.info(name).name  # DatasetNotFound says what to do
        self.label = f"dataset {self.name!r}"

    def write(self, records: list[dict[str, Any]]) -> Written:
        try:
            frame = validate(records)
        except AppendError as exc:
            raise BatchRefused(problems_of(exc)) from exc
        result = append(self.store, self.name, frame)
        return Written(int(result.stored), int(result.duplicates))


class ServerSink:
    """Posts to ``POST /api/v1/datasets/{name}/events`` of the server holding the workspace;
    the server's writer stores each batch in one commit before it answers."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        info = server.expect("GET", f"{API}/datasets/{quote(name, safe='')}")  # 404: says so
        self.name = str(info["name"])
        self.label = f"dataset {self.name!r} on the server at {server.url}"

    def write(self, records: list[dict[str, Any]]) -> Written:
        deadline, pause = time.monotonic() + RETRY_FOR_S, 0.2
        while True:
            try:
                answer = post_events(self.server, self.name, records)
                return Written(int(answer["stored"]), int(answer["duplicates"]))
            except RemoteError as exc:
                if exc.status == 400 and exc.problems:
                    raise BatchRefused([Problem(int(p["index"]), str(p.get("field") or ""),
                                                str(p["reason"])) for p in exc.problems]) \
                        from exc
                if exc.status not in (0, 503) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

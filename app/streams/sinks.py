"""The write path as the consumer sees it (``consumer.Sink``): the workspace opened here, or
the API of the server that holds it.

DuckDB admits one writing process per workspace file, so while ``trailscope serve`` runs on
the workspace the consumer posts its batches to that server's API (the server's one writer
serialises them with every other write); otherwise it opens the Store itself and calls the same
``analytics.append`` the server calls.
"""

from __future__ import annotations

from typing import Any

from ...analytics.append import AppendError, append, validate
from ...analytics.store import Store
from .consumer import BatchRefused, Problem, Written


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

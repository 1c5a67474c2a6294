"""Incremental update of the stored summaries from a batch of appended events.

`apply(cur, name, batch)` is called by the one write path (analytics.append.append) inside
its transaction; `batch` names a table visible to `cur` holding exactly the new events in
canonical columns.
"""

from __future__ import annotations


def apply(cur, name: str, batch: str) -> None:
    """Update the summaries of dataset `name` from the events in table `batch` (no-op for now)."""
    return None

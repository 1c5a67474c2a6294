"""The NYC check-ins (the committed slice, tests/data: a third of the users over the whole ten
months), imported once per test module for the time/evolution analytics.

Module-scoped fixtures cannot use the function-scoped ``store`` fixture (it relies on
monkeypatch), so they open a workspace file in their own temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.store import Store

from tests.conftest import NYC

NYC_NAME = "nyc"
#: New York is UTC-4 (EDT) for most of the file's span (April..early November 2012). The file
#: has no per-event offset; the importer fills each event's from its coordinates (UTC-4 or -5),
#: so this fallback only matters for events without one (tests that clear the offsets).
NYC_TZ_FALLBACK_MIN = -240


def import_nyc(store: Store, name: str = NYC_NAME) -> str:
    """Import the NYC check-ins into ``store`` as dataset ``name``; returns the name."""
    import_file(store, NYC, name=name)
    return name


def open_store(tmp_dir: Path) -> Store:
    """A workspace in ``tmp_dir``."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return Store(tmp_dir / "trailscope.duckdb")

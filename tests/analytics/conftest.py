"""Fixtures of the analytics tests: the NYC slice imported once per test module.

Module-scoped: each test module gets a workspace of its own (tests may add datasets to it),
imported once for all its tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from trailscope.analytics.engine import duckdb_backend, events_table
from trailscope.analytics.store import Store

from tests.analytics.geodata import nyc_store


@pytest.fixture(scope="module")
def nyc_workspace(tmp_path_factory) -> Iterator[tuple[Store, str]]:
    """(store, dataset name): a workspace holding the NYC check-ins."""
    store, name = nyc_store(tmp_path_factory.mktemp("nyc_ws"))
    yield store, name
    store.close()


@pytest.fixture(scope="module")
def nyc_events(nyc_workspace) -> tuple[Store, str, pd.DataFrame]:
    """(store, dataset name, its events as a pandas frame)."""
    store, name = nyc_workspace
    return store, name, store.events(name)


@pytest.fixture(scope="module")
def nyc_table(nyc_workspace) -> tuple[Store, Any]:
    """(store, its events as an Ibis table on the embedded DuckDB backend)."""
    store, name = nyc_workspace
    return store, events_table(duckdb_backend(store), name)

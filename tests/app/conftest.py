"""Fixtures of the app tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from trailscope.analytics.store import Store
from trailscope.app.services import workspace as services
from trailscope.app.services import writer

from tests.conftest import NYC


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A fresh TRAILSCOPE_HOME; the services' process-wide Store is reopened inside it."""
    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path / "home"))
    services.close_store()
    services.set_default_dataset(None)
    yield services.get_store()
    assert writer.wait_idle(60), "the writer still works on the test's workspace"
    services.close_store()
    services.set_default_dataset(None)


@pytest.fixture(scope="module")
def nyc40_home(tmp_path_factory) -> Iterator[Path]:
    """A workspace folder of the module's own holding ``nyc`` (the NYC slice) and ``nyc40``
    (its first 40 users), the store closed; torch computes on one thread meanwhile (tiny
    models train faster so on a loaded machine)."""
    import torch

    from tests.models.realdata import load, slice_dataset

    home = tmp_path_factory.mktemp("nyc40_home")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with Store(home / "trailscope.duckdb") as store:
        load(store, NYC, "nyc")
        slice_dataset(store, "nyc", "nyc40", 40)
    yield home
    torch.set_num_threads(before)

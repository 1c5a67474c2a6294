"""Fixtures of the app tests."""

from __future__ import annotations

import pytest
from trailscope.app.services import workspace as services


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A fresh TRAILSCOPE_HOME; the services' process-wide Store is reopened inside it."""
    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path / "home"))
    services.close_store()
    services.set_default_dataset(None)
    yield services.get_store()
    services.close_store()
    services.set_default_dataset(None)

"""Fixtures of the app tests."""

from __future__ import annotations

import pytest
from trailscope.app.services import workspace as services
from trailscope.app.services import writer


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

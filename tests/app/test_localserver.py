"""The test and bench helper that runs a TrailScope server (app/localserver.py): the settings a
server gets, a server that cannot start is reported with its log, and a server that starts
answers at the URL given and is gone afterwards."""

from __future__ import annotations

import os

import pytest
import requests
from trailscope.app.localserver import LOG, local_server, server_env


def test_server_env_drops_the_callers_trailscope_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAILSCOPE_API_TOKEN", "from-outside-0123456789abcdef")
    monkeypatch.setenv("TRAILSCOPE_DEFAULT_DATASET", "other")
    env = server_env(tmp_path, TRAILSCOPE_PASSWORD="given here")
    assert env["TRAILSCOPE_HOME"] == str(tmp_path) and env["TRAILSCOPE_BASEMAP"] == "blank"
    assert env["TRAILSCOPE_PASSWORD"] == "given here"
    assert "TRAILSCOPE_API_TOKEN" not in env and "TRAILSCOPE_DEFAULT_DATASET" not in env
    assert env["PATH"] == os.environ["PATH"]


def test_a_server_that_exits_is_reported_with_its_log(tmp_path):
    with pytest.raises(RuntimeError, match="exited") as err:
        with local_server(tmp_path / "home", args=["--no-such-option"]):
            pass
    assert "--no-such-option" in str(err.value)  # the end of the log says what was wrong
    assert (tmp_path / "home" / LOG).exists()


def test_a_server_answers_then_stops(tmp_path):
    with local_server(tmp_path) as url:
        assert requests.get(url + "/api/v1/health", timeout=30).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/api/v1/health", timeout=5)

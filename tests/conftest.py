"""Shared fixtures: the real datasets in ../shared/data and a throw-away workspace."""

from __future__ import annotations

import os
from pathlib import Path

# Tests train tiny models: one BLAS/OpenMP thread is many times faster than two fighting over
# a loaded 2-core machine. Set before torch is imported; server subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()

NYC = SHARED_DATA / "foursquare-nyc" / "NYC_checkins_reconstructed.csv.gz"
MOVIELENS = SHARED_DATA / "movielens-100k" / "u.data"
TAOBAO = SHARED_DATA / "taobao-userbehavior" / "UserBehavior_head84475.csv"
GEOLIFE = SHARED_DATA / "geolife" / "geolife_sample.txt.gz"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; the real data is required, so a missing folder is an error."""
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"{SHARED_DATA} is missing: tests need the shared real datasets")
    return SHARED_DATA


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A fresh workspace in a temporary TRAILSCOPE_HOME."""
    from trailscope.analytics.store import Store

    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path / "home"))
    s = Store()
    yield s
    s.close()

"""Shared fixtures: the real datasets and a throw-away workspace.

Two kinds of real data (tests/data/README.md):

- slices committed under ``tests/data/`` (Foursquare NYC, Taobao UserBehavior, GeoLife) in the
  original file formats: ``NYC``, ``TAOBAO``, ``GEOLIFE``. Every test can use them, anywhere.
- the complete files in ``$TRAILSCOPE_DATA`` (default ``../shared/data`` beside the repository):
  ``FULL_NYC``, ``FULL_TAOBAO``, ``FULL_GEOLIFE`` and ``MOVIELENS`` (whose terms forbid
  redistribution, so it has no slice). A test that reads them is marked ``full_data`` (or
  requests the ``full_data`` fixture, which marks it) and is skipped when the folder is missing.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

# Tests train tiny models: one BLAS/OpenMP thread is many times faster than two fighting over
# a loaded 2-core machine. Set before torch is imported; server subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

# The complete datasets: $TRAILSCOPE_DATA, else ../shared/data relative to the repository
# (bench/datasets.py is the one place that says so, for the benches and the tests).
from bench.datasets import DATA as FULL_DATA
from bench.datasets import GEOLIFE as FULL_GEOLIFE  # noqa: F401 (for the tests)
from bench.datasets import MOVIELENS  # noqa: F401
from bench.datasets import NYC as FULL_NYC  # noqa: F401
from bench.datasets import TAOBAO as FULL_TAOBAO  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]

#: Committed slices of the redistributable datasets (tests/data/make_slices.py cuts them).
SLICES = ROOT / "tests" / "data"
NYC = SLICES / "foursquare-nyc" / "NYC_checkins_reconstructed.csv.gz"
TAOBAO = SLICES / "taobao-userbehavior" / "UserBehavior_head26222.csv"
GEOLIFE = SLICES / "geolife" / "geolife_sample.txt.gz"



def nyc_head(path: Path, lines: int) -> Path:
    """The first ``lines`` lines of the NYC slice (its header included), as a plain CSV at
    ``path``: a smaller NYC file for tests that import it through a server or a page."""
    with gzip.open(NYC, "rt", encoding="utf-8") as fh:
        path.write_text("".join(line for _, line in zip(range(lines), fh, strict=False)),
                        encoding="utf-8")
    return path


FULL_DATA_REASON = (f"full_data: needs the complete datasets in {FULL_DATA} "
                    "(set TRAILSCOPE_DATA; tests/data/README.md)")


def has_full_data() -> bool:
    return FULL_DATA.is_dir()


def pytest_collection_modifyitems(config, items) -> None:
    """Mark tests that request ``full_data``; skip every marked test when the folder is missing."""
    skip = pytest.mark.skip(reason=FULL_DATA_REASON)
    available = has_full_data()
    for item in items:
        if "full_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.full_data)
        if not available and item.get_closest_marker("full_data"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def full_data() -> Path:
    """The folder of the complete datasets ($TRAILSCOPE_DATA); skips the test when missing."""
    if not has_full_data():
        pytest.skip(FULL_DATA_REASON)
    return FULL_DATA


@pytest.fixture()
def store(tmp_path, monkeypatch):
    """A fresh workspace in a temporary TRAILSCOPE_HOME."""
    from trailscope.analytics.store import Store

    monkeypatch.setenv("TRAILSCOPE_HOME", str(tmp_path / "home"))
    s = Store()
    yield s
    s.close()

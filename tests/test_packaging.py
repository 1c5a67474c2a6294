"""The built distribution installs one import package, ``trailscope``, and nothing else.

The wheel is built from this checkout and installed into a folder of its own; a child Python,
started outside the repository with only that folder added to its path, must import the
``trailscope.*`` packages from there (not from the checkout), find the dashboard's assets, run
the ``trailscope`` command, and fail on the bare names ``app``, ``analytics`` and ``models``
that an installed TrailScope must never shadow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import importlib, json, sys
out = {}
for name in ("trailscope.analytics.store", "trailscope.models.api", "trailscope.app.main"):
    out[name] = importlib.import_module(name).__file__
for name in ("app", "analytics", "models"):
    try:
        importlib.import_module(name)
        out[name] = "importable"
    except ImportError:
        out[name] = None
from trailscope.app import ASSETS
out["assets"] = sorted(p.name for p in ASSETS.iterdir())
out["assets_dir"] = str(ASSETS)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(wheel, target folder) for a wheel of this checkout installed with ``pip --target``."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: the build uses the venv's setuptools and needs no network.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
                    str(ROOT)], check=True, cwd=tmp, capture_output=True)
    (wheel,) = (tmp / "dist").glob("trailscope-*.whl")
    target = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, cwd=tmp, capture_output=True)
    return wheel, target


def test_wheel_holds_only_the_trailscope_package(installed) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"trailscope"}
    assert "trailscope/app/main.py" in names
    assert "trailscope/assets/deckmap.js" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry).decode()
    assert "trailscope = trailscope.app.cli.main:main" in scripts


def test_installed_package_imports_outside_the_checkout(installed, tmp_path) -> None:
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target), "TRAILSCOPE_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("trailscope.analytics.store", "trailscope.models.api", "trailscope.app.main"):
        assert out[name].startswith(str(target)), f"{name} came from {out[name]}"
    assert out["app"] is None and out["analytics"] is None and out["models"] is None
    assert out["assets_dir"].startswith(str(target))
    assert {"deckmap.js", "upload.js", "style.css"} <= set(out["assets"])


def test_installed_command_runs(installed, tmp_path) -> None:
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target), "TRAILSCOPE_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, str(target / "bin" / "trailscope"), "--help"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "import" in r.stdout and "train" in r.stdout and "explain" in r.stdout

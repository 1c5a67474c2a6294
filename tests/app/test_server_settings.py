"""The production server's settings (app/main.server_settings) as a started server gets them:
waitress's request threads, and torch computing each request in one thread unless
TRAILSCOPE_TORCH_THREADS says otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = ("import json, torch; from trailscope.app.main import server_settings; "
         "s = server_settings(); print(json.dumps([s['threads'], torch.get_num_threads()]))")


@pytest.mark.parametrize(("env", "want"), [({}, [32, 1]),
                                           ({"TRAILSCOPE_TORCH_THREADS": "2",
                                             "TRAILSCOPE_THREADS": "8"}, [8, 2])])
def test_request_threads_and_torch_threads(env, want, tmp_path):
    base = {k: v for k, v in os.environ.items()
            if k not in ("TRAILSCOPE_TORCH_THREADS", "TRAILSCOPE_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=300,
                         env={**base, "TRAILSCOPE_HOME": str(tmp_path), **env})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == want

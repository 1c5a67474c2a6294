"""The production server's settings (app/main.server_settings) as a started server gets them:
waitress's request threads, and torch computing each request in one thread unless
TRAILSCOPE_TORCH_THREADS says otherwise."""

from __future__ import annotations

import inspect
import json
import os
import re
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


def test_plotly_optional_modules_imported_before_serving(tmp_path):
    """plotly's JSON encoder reads numpy, pandas and PIL.Image from ``sys.modules`` without
    importing them; one that a request thread is still importing is half-initialised there, and
    a callback answer encoded meanwhile failed (a blank Explain page under load). The app
    imports them all at start, before waitress starts a thread."""
    probe = ("import json, sys, trailscope.app.main as m; print(json.dumps("
             "[m._PLOTLY_OPTIONAL, [n for n in m._PLOTLY_OPTIONAL if n not in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "TRAILSCOPE_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    names, missing = json.loads(out.stdout.strip().splitlines()[-1])
    assert missing == []
    # the list names every module the encoder looks up that way (a plotly upgrade may add one)
    import plotly.io._json as encoder
    looked_up = set(re.findall(r'get_module\("([\w.]+)", should_load=False\)',
                               inspect.getsource(encoder)))
    assert "PIL.Image" in looked_up
    assert looked_up - {"sage.all"} <= set(names), looked_up


def test_queue_depth_warnings_at_most_one_a_minute(caplog):
    """waitress warns "Task queue depth is N" on every request that finds its threads busy: a
    line per post under a stream. The server lets one through a minute, then says how many it
    held back."""
    import logging

    import trailscope.app.main as m

    m._quiet_queue_warnings()
    m._quiet_queue_warnings()  # once only
    queue_log = logging.getLogger("waitress.queue")
    assert sum(isinstance(f, m._EveryMinute) for f in queue_log.filters) == 1

    log = logging.getLogger("trailscope.test.queue")
    minute = m._EveryMinute()
    log.addFilter(minute)
    try:
        with caplog.at_level(logging.WARNING, logger=log.name):
            for depth in range(1000):
                log.warning("Task queue depth is %d", depth)
            assert [r.getMessage() for r in caplog.records] == ["Task queue depth is 0"]
            minute._next = 0.0  # a minute later
            log.warning("Task queue depth is %d", 7)
        assert caplog.records[-1].getMessage() == (
            "Task queue depth is 7 (999 more such warnings in the last minute)")
    finally:
        log.removeFilter(minute)

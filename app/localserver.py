"""A TrailScope server in a subprocess on a free port, for the tests and the benches.

The product never calls this. Tests (tests/app, tests/browser, tests/models) and benches
(bench/stream_bench.py) that need a real server start it here, the one way: ``trailscope
serve`` (the command users run) over a workspace folder of their own, with no ``TRAILSCOPE_*``
setting inherited from the caller's environment, its output in ``server.log`` of that folder;
the caller gets the URL once the server answers, and the server is stopped when the ``with``
block ends.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

#: ``trailscope serve`` through the interpreter running the caller (no console script needed)
SERVE = (sys.executable, "-m", "trailscope.app.cli", "serve")
LOG = "server.log"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any ``TRAILSCOPE_*`` setting, then workspace
    ``home``, the blank basemap (no tile requests offline) and ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAILSCOPE_")}
    return {**env, "TRAILSCOPE_HOME": str(home), "TRAILSCOPE_BASEMAP": "blank", **extra}


def answers(host: str, port: int, path: str) -> bool:
    """Whether ``GET path`` gets an HTTP answer, whatever its status (a protected server
    answers 401 or redirects to its login page)."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@contextmanager
def local_server(home: Path, *, host: str = "127.0.0.1", ready_path: str = "/api/v1/health",
                 env: Mapping[str, str] | None = None, args: Sequence[str] = (),
                 start_s: float = 120.0, stop_s: float = 20.0) -> Iterator[str]:
    """Run ``trailscope serve --host HOST --port PORT ARGS`` over workspace ``home`` (the
    environment of :func:`server_env` with ``env`` on top); yields its URL once ``GET
    ready_path`` answers. RuntimeError with the end of ``home/server.log`` when the server
    exits first or does not answer within ``start_s`` seconds (a loaded 2-core machine takes
    tens of seconds). On leaving: SIGTERM, SIGKILL after ``stop_s`` seconds; a server that did
    not then exit with status 0 (it aborted, or had to be killed) is a RuntimeError too,
    unless the ``with`` block is already failing."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    log_path = home / LOG
    log = open(log_path, "w")  # closed below
    proc = subprocess.Popen([*SERVE, "--host", host, "--port", str(port), *args],
                            env=server_env(home, **(env or {})), stdout=log,
                            stderr=subprocess.STDOUT)
    body_failed = False
    try:
        deadline = time.monotonic() + start_s
        while not answers(host, port, ready_path):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited (status {proc.returncode}) before it "
                                   f"answered; {log_path}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer {ready_path} within "
                                   f"{start_s:.0f} s; {log_path}:\n"
                                   f"{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        try:
            yield f"http://{host}:{port}"
        except BaseException:
            body_failed = True
            raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    if proc.returncode != 0 and not body_failed:
        raise RuntimeError(f"the server did not stop cleanly on SIGTERM (status "
                           f"{proc.returncode}); {log_path}:\n{log_path.read_text()[-4000:]}")

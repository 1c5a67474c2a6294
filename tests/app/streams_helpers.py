"""Helpers of the stream tests: a real ``redis-server`` on a free loopback port, the NYC slice
as event records, and ``trailscope`` subprocesses."""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis

from bench import stream_bench
from tests.conftest import NYC, ROOT

T = TypeVar("T")


def wait_until(check: Callable[[], T], ok: Callable[[T], bool], what: str,
               timeout_s: float = 60, every_s: float = 0.1) -> T:
    """Call ``check()`` until ``ok(result)``; fail after ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout_s:.0f} s (last: {value!r:.300})")
        time.sleep(every_s)


@contextmanager
def redis_server(folder: Path) -> Iterator[tuple[str, redis.Redis]]:
    """Debian's ``redis-server`` on a free loopback port, no persistence (the bench's own
    starter); yields (``redis://127.0.0.1:PORT``, a client) once it answers PING, and kills
    it after."""
    with stream_bench.redis_server(folder) as port:
        client = redis.Redis(host="127.0.0.1", port=port)
        try:
            yield f"redis://127.0.0.1:{port}", client
        finally:
            client.close()


def nyc_records(n: int, offset: int = 0) -> list[dict[str, Any]]:
    """``n`` events of the committed Foursquare NYC slice as canonical records, from row
    ``offset`` on, each with a distinct ``event_id`` (rows without a venue id, which the
    write path refuses, are left out)."""
    out: list[dict[str, Any]] = []
    with gzip.open(NYC, "rt", encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if i < offset or not row["venue_id"] or not row["user_id"]:
                continue
            if len(out) >= n:
                break
            out.append(nyc_record(row, i))
    if len(out) < n:
        raise ValueError(f"the NYC slice has only {offset + len(out)} rows")
    return out


def nyc_record(row: dict[str, str], i: int) -> dict[str, Any]:
    """One row of the NYC reconstructed file as a canonical event (times are UTC minutes)."""
    return {"event_id": f"nyc-{i}", "user_id": row["user_id"], "item_id": row["venue_id"],
            "ts": row["utc_time_minute"].replace(" ", "T") + ":00Z",
            "lat": float(row["latitude"]), "lon": float(row["longitude"]),
            "category": row["venue_category"]}


def cli_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "TRAILSCOPE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("TRAILSCOPE_DEFAULT_DATASET", None)
    return env


def trailscope(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``trailscope ARGS`` to the end in workspace ``home``."""
    return subprocess.run([sys.executable, "-m", "trailscope.app.cli", *args], cwd=ROOT,
                          env=cli_env(home), capture_output=True, text=True, timeout=timeout)


def start_trailscope(home: Path, log: Path, *args: str) -> subprocess.Popen:
    """Start ``trailscope ARGS`` in workspace ``home``, output to ``log``."""
    fh = open(log, "w")  # the child keeps its own descriptor
    try:
        return subprocess.Popen([sys.executable, "-m", "trailscope.app.cli", *args], cwd=ROOT,
                                env=cli_env(home), stdout=fh, stderr=subprocess.STDOUT)
    finally:
        fh.close()

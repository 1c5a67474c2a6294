"""``server.json``: how the CLI finds the server that holds a workspace.

DuckDB admits one writing process per workspace file, and a running server holds it, so the
CLI's writing commands hand their work to that server instead of opening the file. The server
(``app/main.py``) writes ``server.json`` beside the workspace's DuckDB file once it listens
and removes it when it exits: its URL, pid, workspace path, start time and a random instance
id. ``GET /api/v1/health`` answers the same instance id and :func:`workspace_id` of the file
it serves, so a client that read the file can tell a live server of *this* workspace from a
stale file (a crashed server, a reused pid, another program on the port): app/cli/remote.py.

The file is written atomically (a temp file renamed into place) and readable by its owner
only; nothing in it is secret (the API token is never written).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

FILENAME = "server.json"
#: This process's instance id: new on every start, so a pid reused later never matches.
INSTANCE = uuid.uuid4().hex


def path_for(db_path: str | Path) -> Path:
    """The hand-off file of the workspace whose DuckDB file is ``db_path``."""
    return Path(db_path).resolve().parent / FILENAME


def workspace_id(db_path: str | Path) -> str:
    """A short id of a workspace file (a hash of its resolved path: no path on the wire)."""
    return hashlib.sha256(str(Path(db_path).resolve()).encode()).hexdigest()[:16]


def write(db_path: str | Path, url: str) -> Path:
    """Write the hand-off file of this server (atomically); returns its path."""
    target = path_for(db_path)
    info = {"url": url.rstrip("/"), "pid": os.getpid(), "workspace": str(Path(db_path).resolve()),
            "workspace_id": workspace_id(db_path), "instance": INSTANCE,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = target.with_name(f".{FILENAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    os.replace(tmp, target)
    return target


def read(db_path: str | Path) -> dict[str, Any] | None:
    """The hand-off file's content, or None when there is none or it is not ours to read."""
    try:
        data = json.loads(path_for(db_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(data, dict) and isinstance(data.get("url"), str)
          and isinstance(data.get("pid"), int) and isinstance(data.get("instance"), str))
    return data if ok else None


def remove(db_path: str | Path) -> None:
    """Remove the hand-off file if this process wrote it (a newer server's file stays)."""
    target = path_for(db_path)
    data = read(db_path)
    if data is not None and data.get("instance") == INSTANCE:
        with contextlib.suppress(OSError):
            target.unlink()


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (this user's or another's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True

"""The CLI's hand-off to a running server, and a small client of the HTTP API.

A running ``trailscope serve`` holds the workspace's DuckDB file (one writing process per
file), so the CLI's writing commands (``import``, ``drop``, ``train``, ``sample``), and
``datasets`` and ``recommend``, hand their work to it. :func:`find_server` reads
``server.json`` beside the workspace file (app/api/handoff.py), checks that its pid is alive
and that ``GET /api/v1/health`` answers the same instance and workspace, and otherwise
ignores the file (a stale one). The commands then call the API (app/api/routes.py): an
import uploads the file through the dashboard's chunked upload routes
(app/services/upload.py) and asks ``POST .../import``; ``train`` and ``sample`` start the
server's jobs; each is followed through ``GET /api/v1/jobs/{id}`` (:func:`follow`), printing
progress as the local commands do. Every request sends ``Authorization: Bearer
$TRAILSCOPE_API_TOKEN`` when the variable is set.

:func:`post_events` posts one batch of events to a server (the stream consumer's client).
HTTP goes through the standard library (urllib): the CLI needs no HTTP package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...analytics.store import DB_FILENAME, home_dir
from ..api import handoff

ENV_TOKEN = "TRAILSCOPE_API_TOKEN"
API = "/api/v1"
UPLOAD_HEADER = {"X-TrailScope-Upload": "1"}   # app/services/upload.py asks for it
CHUNK_BYTES = 8 * 1024 * 1024                  # upload chunk (the Data page's size)
POLL_S = 0.5
HEALTH_TIMEOUT_S = 5.0


class RemoteError(RuntimeError):
    """A request the server refused or could not answer; the message is the server's."""

    def __init__(self, message: str, status: int = 0,
                 problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.problems = status, problems or []


@dataclass(frozen=True)
class Server:
    """A TrailScope server: its base URL and the API token to send (empty: none)."""

    url: str
    token: str = ""

    def call(self, method: str, path: str, body: Any = None, data: bytes | None = None,
             content_type: str | None = None, headers: dict[str, str] | None = None,
             timeout: float = 60.0) -> tuple[int, Any]:
        """One request; returns (status, JSON answer). ``body`` is sent as JSON, ``data``
        as it is. Network failures raise OSError; the status is returned as it came."""
        head = {"Accept": "application/json", **(headers or {})}
        if self.token:
            head["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data, content_type = json.dumps(body).encode(), "application/json"
        if content_type:
            head["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=head)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"error": raw.decode("utf-8", "replace").strip()[:300]}
        return status, answer

    def expect(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
        """:meth:`call`, raising :class:`RemoteError` with the server's message unless the
        status is one of ``ok``."""
        try:
            status, answer = self.call(method, path, **kw)
        except OSError as exc:
            raise RemoteError(f"the server at {self.url} did not answer ({exc})") from None
        if status not in ok:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise RemoteError(message or f"the server answered {status}", status,
                              answer.get("problems") if isinstance(answer, dict) else None)
        return answer


def workspace_file() -> Path:
    """The DuckDB file of this process's workspace (``$TRAILSCOPE_HOME``)."""
    return home_dir() / DB_FILENAME


def find_server(db_path: str | Path | None = None) -> Server | None:
    """The live server holding the workspace, or None (no ``server.json``, a dead pid, or
    a server that is not this workspace's: a stale file is ignored). Raises RemoteError when
    the workspace's server refuses this client (a token is needed)."""
    db_path = Path(db_path) if db_path else workspace_file()
    info = handoff.read(db_path)
    if info is None or not handoff.pid_alive(info["pid"]):
        return None
    server = Server(info["url"].rstrip("/"), os.environ.get(ENV_TOKEN, "").strip())
    try:
        status, answer = server.call("GET", f"{API}/health", timeout=HEALTH_TIMEOUT_S)
    except OSError:
        return None
    if status == 401:
        raise RemoteError(f"a TrailScope server at {server.url} holds this workspace and "
                          f"refuses the CLI: set {ENV_TOKEN} to its API token", status)
    ours = (status == 200 and isinstance(answer, dict)
            and answer.get("instance") == info["instance"]
            and answer.get("workspace_id") == handoff.workspace_id(db_path))
    return server if ours else None


# -- jobs ----------------------------------------------------------------------------------
def follow(server: Server, job_id: str,
           on_update: Callable[[dict[str, Any]], None] | None = None,
           poll_s: float = POLL_S) -> dict[str, Any]:
    """Poll job ``job_id`` until it ends, calling ``on_update(snapshot)`` on each change;
    returns the final snapshot's ``summary``. A failed or cancelled job raises RemoteError
    with its message. Ctrl-C cancels the job on the server too."""
    last: Any = None
    try:
        while True:
            snap = server.expect("GET", f"{API}/jobs/{job_id}")
            seen = (snap.get("status"), snap.get("events"), len(snap.get("messages") or ()))
            if seen != last and on_update is not None:
                on_update(snap)
            last = seen
            if snap["status"] == "done":
                return snap.get("summary") or {}
            if snap["status"] in ("failed", "cancelled"):
                raise RemoteError(snap.get("error") or f"the server's job was {snap['status']}")
            time.sleep(poll_s)
    except KeyboardInterrupt:
        try:
            server.call("DELETE", f"{API}/jobs/{job_id}", timeout=HEALTH_TIMEOUT_S)
        except OSError:
            pass
        raise


def _start(server: Server, path: str, body: dict[str, Any]) -> str:
    return str(server.expect("POST", path, ok=(202,), body=body)["job"])


def _q(name: str) -> str:
    return urllib.parse.quote(str(name), safe="")


# -- the commands --------------------------------------------------------------------------
def upload(server: Server, path: str | Path,
           on_progress: Callable[[int, int], None] | None = None) -> str:
    """Send a file through the server's chunked upload routes; returns the upload id."""
    path = Path(path)
    size = path.stat().st_size
    chunk = min(CHUNK_BYTES, max(size, 1))
    created = server.expect("POST", "/api/upload/new", ok=(201,), headers=UPLOAD_HEADER,
                            body={"filename": path.name, "size": size, "chunk_size": chunk})
    upload_id, chunks = created["upload_id"], int(created["chunks"])
    try:
        with open(path, "rb") as fh:
            for index in range(chunks):
                piece = fh.read(chunk)
                server.expect("POST", f"/api/upload/{upload_id}/chunk?index={index}",
                              data=piece, content_type="application/octet-stream",
                              headers=UPLOAD_HEADER, timeout=300)
                if on_progress is not None:
                    on_progress(min((index + 1) * chunk, size), size)
        server.expect("POST", f"/api/upload/{upload_id}/finish", headers=UPLOAD_HEADER)
    except BaseException:
        try:
            server.call("DELETE", f"/api/upload/{upload_id}", headers=UPLOAD_HEADER,
                        timeout=HEALTH_TIMEOUT_S)
        except OSError:
            pass
        raise
    return upload_id


def import_file(server: Server, path: str | Path, name: str, fmt: str = "auto",
                mapping: dict[str, str] | None = None, replace: bool = False,
                keep_duplicates: bool = False,
                on_update: Callable[[dict[str, Any]], None] | None = None,
                on_upload: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Import ``path`` as dataset ``name`` on the server; returns the import report (with
    ``summaries_s``), as ``trailscope import`` prints it."""
    upload_id = upload(server, path, on_upload)
    job = _start(server, f"{API}/datasets/{_q(name)}/import",
                 {"upload_id": upload_id, "format": fmt, "mapping": mapping or {},
                  "replace": replace, "keep_duplicates": keep_duplicates})
    return follow(server, job, on_update)


def drop(server: Server, name: str) -> str:
    """Drop dataset ``name`` on the server; returns the name dropped."""
    return str(server.expect("DELETE", f"{API}/datasets/{_q(name.strip())}")["dropped"])


def sample(server: Server, name: str, users: int, seed: int, replace: bool,
           on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Generate the sample city as dataset ``name`` on the server; returns its report."""
    job = _start(server, f"{API}/datasets/{_q(name)}/sample",
                 {"users": users, "seed": seed, "replace": replace})
    return follow(server, job, on_update)


def train(server: Server, name: str, model: str, settings: dict[str, Any],
          on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` on dataset ``name`` on the server with ``settings`` (the KEY=VALUE
    mapping of ``trailscope train``); returns the training summary (no loss history)."""
    job = _start(server, f"{API}/datasets/{_q(name)}/models",
                 {"model": model, "settings": settings})
    return follow(server, job, on_update)


def update(server: Server, name: str, model: str, settings: dict[str, Any],
           since: str | None = None, from_id: str | None = None,
           on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """``trailscope train --continue`` on the server: an online update of ``model`` (or of
    ``from_id``) on the events since ``since``; returns the update's summary."""
    body = {"model": model, "settings": settings, "continue": True, "since": since,
            "from": from_id}
    job = _start(server, f"{API}/datasets/{_q(name)}/models",
                 {k: v for k, v in body.items() if v is not None})
    return follow(server, job, on_update)


def datasets(server: Server) -> Any:
    """``GET /api/v1/datasets`` as the frame ``Store.list_datasets`` returns (its columns)."""
    import pandas as pd

    rows = server.expect("GET", f"{API}/datasets")["datasets"]
    frame = pd.DataFrame(rows, columns=["name", "format", "rows", "users", "items", "time_min",
                                        "time_max", "has_coordinates", "imported_at"])
    for col in ("time_min", "time_max", "imported_at"):
        frame[col] = pd.to_datetime(frame[col])
    return frame


def recommend(server: Server, name: str, user: str, k: int = 10, model: str | None = None,
              at: str | None = None, lat: float | None = None,
              lon: float | None = None) -> dict[str, Any]:
    """``GET .../users/{user}/recommendations``: what ``models.api.recommend`` returns."""
    params = {"k": k, "model": model, "at": at, "lat": lat, "lon": lon}
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    out = server.expect("GET", f"{API}/datasets/{_q(name)}/users/{_q(user)}/recommendations?"
                        f"{query}")
    out.pop("dataset", None)
    return out


def post_events(server: Server, name: str, events: list[dict[str, Any]],
                timeout: float = 60.0) -> dict[str, Any]:
    """Post one batch of events to ``POST /api/v1/datasets/{name}/events``; returns
    ``{"dataset", "stored", "duplicates", "rows"}``. A refused batch raises RemoteError whose
    ``status`` is the HTTP status (400: ``problems`` lists each bad event's index, field and
    reason; 503: the server is busy, retry) and whose message is the server's."""
    data = json.dumps(events, ensure_ascii=False, default=str).encode()
    return server.expect("POST", f"{API}/datasets/{_q(name)}/events", data=data,
                         content_type="application/json", timeout=timeout)


# -- what the CLI commands print while the server works --------------------------------------
def train_line(p: Mapping[str, Any]) -> str:
    """A training's progress (a ``TrainEvent`` as a dict) as the CLI prints it: ``train
    epoch 2 step 3/12 loss 4.2100``; inside the slow steps ``preparing the data: splitting
    each user's history (4/7)``, ``validating epoch 3: 40%``, ``evaluating the best epoch:
    ranking the test targets (2/3)``."""
    phase, detail = p.get("phase"), p.get("detail")
    step, steps = int(p.get("step") or 0), int(p.get("steps") or 0)
    if phase == "valid" and steps:
        return f"validating epoch {p.get('epoch')}: {100 * min(step, steps) // steps}%"
    if phase in ("data", "evaluate") and detail:
        head = "preparing the data" if phase == "data" else "evaluating the best epoch"
        return f"{head}: {detail}" + (f" ({step}/{steps})" if steps else "")
    msg = f"{phase} epoch {p.get('epoch')} step {step}/{steps}"
    if p.get("loss") is not None:
        msg += f" loss {p['loss']:.4f}"
    if p.get("valid") is not None:
        msg += f" valid ndcg@10 {p['valid']:.4f}"
    return msg


class ProgressLine:
    """One updating progress line on stderr. On a terminal it is redrawn in place (``\r``,
    padded to cover the longer line before); elsewhere (a log file, CI) it is printed as
    plain lines, at most one per ``every`` seconds unless its wording (the line with its
    numbers left out) changes. :meth:`log` prints a log line on a line of its own, never run
    into the progress line; :meth:`end` closes it."""

    def __init__(self, stream: Any = None, tty: bool | None = None, every: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else tty
        self.every = every
        self.width = 0
        self.last: tuple[str, str, float] | None = None   # line, wording, when printed

    def show(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            wording, now = re.sub(r"[\d.,/%]+", "#", line), time.monotonic()
            if self.last and (line == self.last[0] or (
                    wording == self.last[1] and now - self.last[2] < self.every)):
                return
            self.stream.write(line + "\n")
            self.last = (line, wording, now)
        self.stream.flush()

    def log(self, message: str) -> None:
        self.end()
        print(message, file=self.stream, flush=True)

    def end(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


def printer(quiet: bool, train: bool = False) -> Callable[[dict[str, Any]], None]:
    """An ``on_update`` for :func:`follow` that prints to stderr as the local commands do: a
    training's log lines and its ``\\r``-updated epoch/step/loss line (not with ``quiet``,
    i.e. ``--json``), other jobs' progress messages."""
    shown: dict[str, Any] = {"messages": 0, "message": None}
    line = ProgressLine()

    def update(snap: dict[str, Any]) -> None:
        messages = snap.get("messages") or []
        for text in messages[shown["messages"]:]:  # the job's log, as the local log prints it
            line.log(text)
        shown["messages"] = len(messages)
        p = snap.get("progress") or {}
        if quiet:
            return
        if train and p.get("steps") is not None and p.get("phase"):
            line.show(train_line(p))
        elif not train and p.get("message") and p["message"] != shown["message"]:
            shown["message"] = p["message"]
            print(p["message"], file=sys.stderr, flush=True)
        if snap.get("status") in ("done", "failed", "cancelled"):
            line.end()

    return update


def _upload_printer(quiet: bool, name: str) -> Callable[[int, int], None] | None:
    if quiet:
        return None

    def show(done: int, size: int) -> None:
        end = "\n" if done >= size else ""
        print(f"\ruploading {name} to the server: {done / 1e6:,.1f} of {size / 1e6:,.1f} MB",
              end=end, file=sys.stderr, flush=True)

    return show


def _say(server: Server, what: str, quiet: bool) -> None:
    if not quiet:
        print(f"a TrailScope server at {server.url} holds this workspace: {what} there",
              file=sys.stderr, flush=True)


def run_import(server: Server, args: argparse.Namespace,
               mapping: dict[str, str] | None) -> dict[str, Any]:
    """``trailscope import`` through the server; the report the local import prints."""
    from ...analytics.ingest.pipeline import default_name

    name = args.name or default_name(args.path)
    if not Path(args.path).is_file():
        raise RemoteError(f"{args.path}: no such file")
    _say(server, f"importing {Path(args.path).name} as {name!r}", args.json)
    return import_file(server, args.path, name, fmt=args.format, mapping=mapping,
                       replace=args.replace, keep_duplicates=args.keep_duplicates,
                       on_update=printer(args.json),
                       on_upload=_upload_printer(args.json, Path(args.path).name))


def run_sample(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """``trailscope sample`` through the server; the sample's import report."""
    _say(server, f"generating {args.name!r}", args.json)
    return sample(server, args.name, args.users, args.seed, args.replace,
                  on_update=printer(args.json))


def run_train(server: Server, args: argparse.Namespace, values: dict[str, Any],
              settings: Any) -> dict[str, Any]:
    """``trailscope train`` through the server: ``values`` (the command's KEY=VALUE mapping,
    already checked) with the local defaults of ``settings`` filled in, so both train alike."""
    sent = dict(values)
    for key in ("epochs", "max_len", "patience", "pretrain_epochs"):
        sent.setdefault(key, getattr(settings, key))
    _say(server, f"training {args.model} on {args.name!r}", args.json)
    return train(server, args.name, args.model, sent, on_update=printer(args.json, train=True))

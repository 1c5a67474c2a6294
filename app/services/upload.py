"""Chunked file upload: Flask routes that assets/upload.js posts a file to, slice by slice.

``dcc.Upload`` reads the whole file into the browser as base64 and crashes the tab above about
150 MB, so the Data page uploads in chunks instead:

1. ``POST /api/upload/new`` with JSON ``{"filename", "size", "chunk_size"}`` -> ``{"upload_id",
   "chunks", "chunk_size"}``. The server picks the id (32 hex digits) and checks the size cap
   and free disk space before a single byte is sent.
2. ``POST /api/upload/<upload_id>/chunk?index=i`` with the raw bytes of chunk ``i``; each chunk
   is written at its offset in the target file, so chunks may arrive in any order or twice.
3. ``POST /api/upload/<upload_id>/finish`` checks every chunk arrived and renames the file into
   place -> ``{"upload_id", "filename", "size"}``.
4. ``DELETE /api/upload/<upload_id>`` cancels and removes an upload.

Files land in ``$TRAILSCOPE_HOME/uploads/<upload_id>/<sanitised file name>``. The browser only
ever names an upload by its id; :func:`resolve_upload` turns a validated id into a path, so no
client string becomes part of a file path. Every request must carry the ``X-TrailScope-Upload``
header, which a cross-site form cannot send, so another site cannot push files here.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ...analytics.store import home_dir

UPLOAD_HEADER = "X-TrailScope-Upload"
UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
MAX_CHUNK_SIZE = 32 * 1024 * 1024
DEFAULT_MAX_UPLOAD_MB = 4096
STALE_AFTER_S = 24 * 3600
_META = "meta.json"
_RECEIVED = "received"

blueprint = Blueprint("trailscope_upload", __name__)


class UploadError(ValueError):
    """A rejected upload request; the message says what was wrong and how to fix it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- paths and names -----------------------------------------------------------------------
def uploads_dir() -> Path:
    """``$TRAILSCOPE_HOME/uploads``, created on demand."""
    path = home_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_upload_bytes() -> int:
    """The upload size cap: ``$TRAILSCOPE_MAX_UPLOAD_MB`` megabytes (default 4096)."""
    raw = os.environ.get("TRAILSCOPE_MAX_UPLOAD_MB", "")
    try:
        mb = int(raw) if raw else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        mb = DEFAULT_MAX_UPLOAD_MB
    return max(mb, 1) * 1024 * 1024


def sanitize_filename(name: str) -> str:
    """A safe file name from a browser-supplied one: base name only, ``[A-Za-z0-9._-]``.

    Keeps the extension (``.csv.gz`` included) because the importer sniffs formats by it.
    """
    base = re.split(r"[\\/]", str(name or ""))[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    base = re.sub(r"\.{2,}", ".", base)
    if len(base) > 120:
        stem, dot, ext = base.partition(".")
        base = stem[: 120 - len(ext) - 1] + dot + ext[-40:] if dot else base[:120]
    return base or "upload"


def check_upload_id(upload_id: str) -> str:
    """Return ``upload_id`` if it is one the server could have issued, else raise UploadError."""
    if not isinstance(upload_id, str) or not UPLOAD_ID_RE.match(upload_id):
        raise UploadError("invalid upload id: expected the 32 hex digits the server issued", 400)
    return upload_id


def _upload_dir(upload_id: str) -> Path:
    return uploads_dir() / check_upload_id(upload_id)


def _read_meta(upload_id: str) -> dict[str, Any]:
    meta_path = _upload_dir(upload_id) / _META
    if not meta_path.is_file():
        raise UploadError(f"no upload {upload_id}: it expired or was cancelled; upload again",
                          404)
    return json.loads(meta_path.read_text())


def resolve_upload(upload_id: str) -> Path:
    """Path of a finished upload, from its id (raises UploadError if unknown or unfinished)."""
    meta = _read_meta(upload_id)
    if not meta.get("finished"):
        raise UploadError("this upload has not finished yet; wait for 100% and try again", 409)
    path = _upload_dir(upload_id) / meta["filename"]
    if not path.is_file():
        raise UploadError(f"the uploaded file {meta['filename']} is gone; upload it again", 404)
    return path


def fmt_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"``."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GB"


# -- operations (plain functions; the routes below only translate HTTP) --------------------
def remove_stale_uploads(max_age_s: float = STALE_AFTER_S) -> int:
    """Delete upload folders untouched for ``max_age_s`` seconds; returns how many."""
    removed = 0
    now = time.time()
    for child in uploads_dir().iterdir():
        if child.is_dir() and UPLOAD_ID_RE.match(child.name):
            if now - child.stat().st_mtime > max_age_s:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
    return removed


def new_upload(filename: str, size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, Any]:
    """Start an upload; returns ``{"upload_id", "filename", "chunks", "chunk_size"}``."""
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise UploadError("the file is empty (0 bytes): choose a file with data in it")
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise UploadError(f"chunk_size must be 1..{MAX_CHUNK_SIZE} bytes")
    cap = max_upload_bytes()
    if size > cap:
        raise UploadError(
            f"the file is {fmt_bytes(size)} but uploads are limited to {fmt_bytes(cap)}. "
            "Import it from the command line (`trailscope import PATH`) or raise "
            "TRAILSCOPE_MAX_UPLOAD_MB and restart the dashboard.", 413)
    root = uploads_dir()
    remove_stale_uploads()
    free = shutil.disk_usage(root).free
    if size * 2 > free:  # the file itself plus room for the imported copy in DuckDB
        raise UploadError(
            f"not enough disk space for a {fmt_bytes(size)} upload ({fmt_bytes(free)} free in "
            f"{root}); free some space and try again", 507)
    upload_id = uuid.uuid4().hex
    folder = root / upload_id
    (folder / _RECEIVED).mkdir(parents=True)
    safe = sanitize_filename(filename)
    chunks = math.ceil(size / chunk_size)
    meta = {"filename": safe, "original_name": str(filename)[:300], "size": size,
            "chunk_size": chunk_size, "chunks": chunks, "finished": False,
            "created": time.time()}
    (folder / _META).write_text(json.dumps(meta))
    with open(folder / (safe + ".part"), "wb") as fh:
        fh.truncate(size)
    return {"upload_id": upload_id, "filename": safe, "chunks": chunks, "chunk_size": chunk_size}


def write_chunk(upload_id: str, index: int, stream: Any, length: int | None) -> int:
    """Write chunk ``index`` read from ``stream``; returns the number of bytes written."""
    meta = _read_meta(upload_id)
    if meta.get("finished"):
        raise UploadError("this upload is already finished; start a new one", 409)
    if not isinstance(index, int) or not 0 <= index < meta["chunks"]:
        raise UploadError(f"chunk index must be 0..{meta['chunks'] - 1}, got {index!r}")
    offset = index * meta["chunk_size"]
    expected = min(meta["chunk_size"], meta["size"] - offset)
    if length is not None and length != expected:
        raise UploadError(f"chunk {index} must be {expected} bytes, got {length}")
    folder = _upload_dir(upload_id)
    written = 0
    with open(folder / (meta["filename"] + ".part"), "r+b") as fh:
        fh.seek(offset)
        while written <= expected:
            piece = stream.read(min(1024 * 1024, expected + 1 - written))
            if not piece:
                break
            written += len(piece)
            if written > expected:
                break
            fh.write(piece)
    if written != expected:
        raise UploadError(f"chunk {index} must be {expected} bytes, got {written}")
    (folder / _RECEIVED / str(index)).touch()
    return written


def finish_upload(upload_id: str) -> dict[str, Any]:
    """Check that every chunk arrived and put the file in place."""
    meta = _read_meta(upload_id)
    folder = _upload_dir(upload_id)
    if not meta.get("finished"):
        received = {p.name for p in (folder / _RECEIVED).iterdir()}
        missing = [i for i in range(meta["chunks"]) if str(i) not in received]
        if missing:
            raise UploadError(
                f"{len(missing)} of {meta['chunks']} chunks are missing (first: {missing[0]}); "
                "send them and finish again", 409)
        os.replace(folder / (meta["filename"] + ".part"), folder / meta["filename"])
        meta["finished"] = True
        (folder / _META).write_text(json.dumps(meta))
    return {"upload_id": upload_id, "filename": meta["filename"], "size": meta["size"]}


def cancel_upload(upload_id: str) -> None:
    folder = _upload_dir(upload_id)
    if not folder.is_dir():
        raise UploadError(f"no upload {upload_id}", 404)
    shutil.rmtree(folder, ignore_errors=True)


# -- routes --------------------------------------------------------------------------------
def _error(exc: UploadError) -> tuple[Response, int]:
    return jsonify({"error": str(exc)}), exc.status


@blueprint.errorhandler(UploadError)
def _handle_upload_error(exc: UploadError) -> tuple[Response, int]:
    return _error(exc)


@blueprint.before_request
def _require_header() -> tuple[Response, int] | None:
    if request.headers.get(UPLOAD_HEADER) != "1":
        return _error(UploadError(f"missing {UPLOAD_HEADER} header: uploads must come from "
                                  "the TrailScope Data page", 403))
    return None


@blueprint.post("/api/upload/new")
def _route_new() -> tuple[Response, int]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise UploadError('send JSON {"filename": ..., "size": ...}')
    chunk_size = body.get("chunk_size", DEFAULT_CHUNK_SIZE)
    return jsonify(new_upload(body.get("filename", ""), body.get("size"), chunk_size)), 201


@blueprint.post("/api/upload/<upload_id>/chunk")
def _route_chunk(upload_id: str) -> Response:
    raw = request.args.get("index", "")
    if not raw.isdigit():
        raise UploadError(f"chunk index must be a non-negative integer, got {raw!r}")
    n = write_chunk(upload_id, int(raw), request.stream, request.content_length)
    return jsonify({"index": int(raw), "bytes": n})


@blueprint.post("/api/upload/<upload_id>/finish")
def _route_finish(upload_id: str) -> Response:
    return jsonify(finish_upload(upload_id))


@blueprint.delete("/api/upload/<upload_id>")
def _route_cancel(upload_id: str) -> Response:
    cancel_upload(upload_id)
    return jsonify({"cancelled": upload_id})

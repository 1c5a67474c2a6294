"""Chunked file upload: Flask routes that assets/upload.js posts a file to, slice by slice.

``dcc.Upload`` reads the whole file into the browser as base64 and crashes the tab above about
150 MB, so the Data page uploads in chunks instead:

1. ``POST /api/upload/new`` with JSON ``{"filename", "size", "chunk_size"}`` -> ``{"upload_id",
   "chunks", "chunk_size"}``. The server picks the id (32 hex digits) and checks the size cap,
   the chunk size, how many uploads are open, the space they reserve together and free disk
   space before a single byte is sent.
2. ``POST /api/upload/<upload_id>/chunk?index=i`` with the raw bytes of chunk ``i``; each chunk
   is written at its offset in the target file, so chunks may arrive in any order or twice.
3. ``POST /api/upload/<upload_id>/finish`` checks every chunk arrived and renames the file into
   place -> ``{"upload_id", "filename", "size"}``.
4. ``DELETE /api/upload/<upload_id>`` cancels and removes an upload.

Files land in ``$TRAILSCOPE_HOME/uploads/<upload_id>/<sanitised file name>``. The browser only
ever names an upload by its id; :func:`resolve_upload` turns a validated id into a path, so no
client string becomes part of a file path. Every request must carry the ``X-TrailScope-Upload``
header, which a cross-site form cannot send, so another site cannot push files here.

Bounded resources (issue 11): an upload's bookkeeping is one bit per chunk in a bitmap file
(``received.bits``, chunks / 8 bytes), so ``finish`` reads chunks / 8 bytes and builds no
Python object per chunk; a chunk is 64 KiB .. 64 MiB (only the last one may be shorter, and a
file smaller than 64 KiB is one chunk); at most ``$TRAILSCOPE_MAX_UPLOADS`` uploads (default 8)
exist at once, in progress or waiting for their import, reserving at most
``$TRAILSCOPE_UPLOAD_SPACE_MB`` together (default twice the per-file cap). An upload is deleted
after its import (:func:`discard_after_import`, success or failure), when cancelled, when
untouched for a day, and, if unfinished, when the server starts (:func:`clean_at_start`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ...analytics.store import home_dir

UPLOAD_HEADER = "X-TrailScope-Upload"
UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
CHUNK_INDEX_RE = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() accepts '²'
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
MIN_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_UPLOAD_MB = 4096
DEFAULT_MAX_UPLOADS = 8
STALE_AFTER_S = 24 * 3600
_META = "meta.json"
_BITS = "received.bits"
_READ_PIECE = 1024 * 1024

blueprint = Blueprint("trailscope_upload", __name__)

# One process serves the workspace (DuckDB admits one writer), so a thread lock makes the
# "count the open uploads, then create one" check and the bitmap's read-modify-write atomic.
_LOCK = threading.Lock()


class UploadError(ValueError):
    """A rejected upload request; the message says what was wrong and how to fix it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- settings ------------------------------------------------------------------------------
def _env_int(name: str, default: int, low: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = default
    return max(value, low)


def max_upload_bytes() -> int:
    """The upload size cap: ``$TRAILSCOPE_MAX_UPLOAD_MB`` megabytes (default 4096)."""
    return _env_int("TRAILSCOPE_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB) * 1024 * 1024


def max_uploads() -> int:
    """How many uploads may exist at once (in progress or waiting for their import):
    ``$TRAILSCOPE_MAX_UPLOADS``, default 8."""
    return _env_int("TRAILSCOPE_MAX_UPLOADS", DEFAULT_MAX_UPLOADS)


def upload_space_bytes() -> int:
    """The space all uploads may reserve together: ``$TRAILSCOPE_UPLOAD_SPACE_MB`` megabytes,
    default twice the per-file cap."""
    default_mb = 2 * max_upload_bytes() // (1024 * 1024)
    return _env_int("TRAILSCOPE_UPLOAD_SPACE_MB", default_mb) * 1024 * 1024


# -- paths and names -----------------------------------------------------------------------
def uploads_dir() -> Path:
    """``$TRAILSCOPE_HOME/uploads``, created on demand."""
    path = home_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


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


def parse_chunk_index(raw: str) -> int:
    """The chunk index of a query string: ASCII digits only, else UploadError (400)."""
    if not isinstance(raw, str) or not CHUNK_INDEX_RE.fullmatch(raw):
        raise UploadError(f"chunk index must be a non-negative integer such as 0 or 17, "
                          f"got {raw[:40]!r}")
    return int(raw)


def _upload_dir(upload_id: str) -> Path:
    return uploads_dir() / check_upload_id(upload_id)


def _load_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / _META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _read_meta(upload_id: str) -> dict[str, Any]:
    meta = _load_meta(_upload_dir(upload_id))
    if meta is None:
        raise UploadError(f"no upload {upload_id}: it was imported, cancelled or expired; "
                          "upload the file again", 404)
    return meta


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    tmp = folder / (_META + ".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / _META)


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


# -- housekeeping --------------------------------------------------------------------------
def _upload_folders() -> list[Path]:
    """Every upload folder (named by an id); other entries of the folder are left alone."""
    return [p for p in uploads_dir().iterdir() if p.is_dir() and UPLOAD_ID_RE.match(p.name)]


def _last_activity(folder: Path) -> float:
    """When an upload last changed: its newest file (a chunk touches the file and bitmap)."""
    times = [folder.stat().st_mtime]
    for child in folder.iterdir():  # meta, bitmap and the file: three entries
        try:
            times.append(child.stat().st_mtime)
        except OSError:
            pass
    return max(times)


def remove_stale_uploads(max_age_s: float = STALE_AFTER_S) -> int:
    """Delete uploads untouched for ``max_age_s`` seconds; returns how many."""
    removed = 0
    now = time.time()
    for folder in _upload_folders():
        if now - _last_activity(folder) > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def clean_at_start(max_age_s: float = STALE_AFTER_S) -> int:
    """At server start: delete unfinished uploads (their browser lost the server, so nobody
    sends the rest) and stale ones; a finished upload whose import the page may still start is
    kept. Returns how many were removed."""
    removed = remove_stale_uploads(max_age_s)
    for folder in _upload_folders():
        meta = _load_meta(folder)
        if meta is None or not meta.get("finished"):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def discard_after_import(path: str | Path) -> bool:
    """Delete the upload that ``path`` is the file of, once its import ended (success or
    failure); a path outside the uploads folder (a CLI or test file) is left alone. True if an
    upload was removed."""
    path = Path(path)
    folder = path.parent
    if not UPLOAD_ID_RE.match(folder.name):
        return False
    try:
        inside = folder.parent.resolve() == uploads_dir().resolve()
    except OSError:
        return False
    if not inside or not folder.is_dir():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


# -- operations (plain functions; the routes below only translate HTTP) --------------------
def _check_request(filename: Any, size: Any, chunk_size: Any) -> None:
    if not isinstance(filename, str):
        raise UploadError(f"filename must be text, got {type(filename).__name__}")
    if not isinstance(size, int) or isinstance(size, bool):
        raise UploadError(f"size must be a whole number of bytes, got {size!r:.40}")
    if size <= 0:
        raise UploadError("the file is empty (0 bytes): choose a file with data in it")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool):
        raise UploadError(f"chunk_size must be a whole number of bytes, got {chunk_size!r:.40}")
    low = min(MIN_CHUNK_SIZE, size)  # a file under 64 KiB goes in one chunk
    if not low <= chunk_size <= MAX_CHUNK_SIZE:
        raise UploadError(
            f"chunk_size must be {MIN_CHUNK_SIZE:,}..{MAX_CHUNK_SIZE:,} bytes "
            f"({fmt_bytes(MIN_CHUNK_SIZE)} to {fmt_bytes(MAX_CHUNK_SIZE)}; a file smaller "
            f"than that sends one chunk of its own size), got {chunk_size:,}")
    cap = max_upload_bytes()
    if size > cap:
        raise UploadError(
            f"the file is {fmt_bytes(size)} but uploads are limited to {fmt_bytes(cap)}. "
            "Import it from the command line (`trailscope import PATH`) or raise "
            "TRAILSCOPE_MAX_UPLOAD_MB and restart the dashboard.", 413)


def _reserve(size: int) -> None:
    """Refuse an upload beyond the number, space or disk limits (call under ``_LOCK``)."""
    folders = _upload_folders()
    limit = max_uploads()
    if len(folders) >= limit:
        raise UploadError(
            f"{len(folders)} uploads are already in progress or waiting for their import (the "
            f"limit is {limit}, TRAILSCOPE_MAX_UPLOADS): import or cancel one, or try again "
            "when they have finished", 429)
    reserved = 0
    unwritten = 0  # declared bytes not on disk yet (the files are sparse until written)
    for folder in folders:
        meta = _load_meta(folder) or {}
        declared = int(meta.get("size") or 0)
        reserved += declared
        if not meta.get("finished"):
            try:
                on_disk = (folder / (meta["filename"] + ".part")).stat().st_blocks * 512
            except (KeyError, OSError):
                on_disk = 0
            unwritten += max(declared - on_disk, 0)
    space = upload_space_bytes()
    if reserved + size > space:
        raise UploadError(
            f"open uploads already reserve {fmt_bytes(reserved)} of the {fmt_bytes(space)} "
            f"allowed (TRAILSCOPE_UPLOAD_SPACE_MB), too little for {fmt_bytes(size)} more: "
            "import or cancel an upload, or try again when they have finished", 429)
    free = shutil.disk_usage(uploads_dir()).free
    if size * 2 + unwritten > free:  # the file, the imported copy, and the others' rest
        raise UploadError(
            f"not enough disk space for a {fmt_bytes(size)} upload ({fmt_bytes(free)} free in "
            "the workspace, part of it promised to other uploads); free some space and try "
            "again", 507)


def new_upload(filename: str, size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, Any]:
    """Start an upload; returns ``{"upload_id", "filename", "chunks", "chunk_size"}``."""
    _check_request(filename, size, chunk_size)
    remove_stale_uploads()
    safe = sanitize_filename(filename)
    chunks = math.ceil(size / chunk_size)
    upload_id = uuid.uuid4().hex
    folder = uploads_dir() / upload_id
    with _LOCK:
        _reserve(size)
        folder.mkdir()
        with open(folder / (safe + ".part"), "wb") as fh:
            fh.truncate(size)
        with open(folder / _BITS, "wb") as fh:
            fh.truncate((chunks + 7) // 8)
        meta = {"filename": safe, "original_name": str(filename)[:300], "size": size,
                "chunk_size": chunk_size, "chunks": chunks, "finished": False,
                "created": time.time()}
        _write_meta(folder, meta)  # last: a folder without meta is not an upload yet
    return {"upload_id": upload_id, "filename": safe, "chunks": chunks, "chunk_size": chunk_size}


def _gone(upload_id: str) -> UploadError:
    return UploadError(f"no upload {upload_id}: it was cancelled or expired; upload the file "
                       "again", 404)


def _mark_received(upload_id: str, folder: Path, index: int) -> None:
    """Set chunk ``index``'s bit (most significant bit first within each byte)."""
    with _LOCK:
        try:
            fh = open(folder / _BITS, "r+b")
        except FileNotFoundError:
            raise _gone(upload_id) from None
        with fh:
            fh.seek(index // 8)
            byte = fh.read(1)[0]
            fh.seek(index // 8)
            fh.write(bytes([byte | (0x80 >> (index % 8))]))


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
    try:
        fh = open(folder / (meta["filename"] + ".part"), "r+b")
    except FileNotFoundError:
        raise _gone(upload_id) from None
    with fh:
        fh.seek(offset)
        while written <= expected:
            piece = stream.read(min(_READ_PIECE, expected + 1 - written))
            if not piece:
                break
            written += len(piece)
            if written > expected:
                break
            fh.write(piece)
    if written != expected:
        raise UploadError(f"chunk {index} must be {expected} bytes, got {written}")
    _mark_received(upload_id, folder, index)
    return written


def _missing(bits: bytes, chunks: int) -> tuple[int, int]:
    """(how many chunks are missing, the first missing index) from the bitmap, in C loops."""
    got = int.from_bytes(bits, "big").bit_count()  # padding bits are never set
    if got >= chunks:
        return 0, -1
    found = re.search(rb"[^\xff]", bits)  # a missing chunk comes before any padding bit
    at = found.start() if found else 0
    return chunks - got, at * 8 + 8 - (~bits[at] & 0xFF).bit_length()


def finish_upload(upload_id: str) -> dict[str, Any]:
    """Check that every chunk arrived (chunks / 8 bytes read) and put the file in place."""
    folder = _upload_dir(upload_id)
    with _LOCK:  # a second finish waits, then sees "finished"
        meta = _read_meta(upload_id)
        if not meta.get("finished"):
            try:
                bits = (folder / _BITS).read_bytes()
            except FileNotFoundError:
                raise _gone(upload_id) from None
            missing, first = _missing(bits, meta["chunks"])
            if missing:
                raise UploadError(
                    f"{missing} of {meta['chunks']} chunks are missing (first: {first}); "
                    "send them and finish again", 409)
            os.replace(folder / (meta["filename"] + ".part"), folder / meta["filename"])
            meta["finished"] = True
            _write_meta(folder, meta)
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
        raise UploadError('send JSON {"filename": ..., "size": ..., "chunk_size": ...}')
    chunk_size = body.get("chunk_size", DEFAULT_CHUNK_SIZE)
    return jsonify(new_upload(body.get("filename", ""), body.get("size"), chunk_size)), 201


@blueprint.post("/api/upload/<upload_id>/chunk")
def _route_chunk(upload_id: str) -> Response:
    index = parse_chunk_index(request.args.get("index", ""))
    n = write_chunk(upload_id, index, request.stream, request.content_length)
    return jsonify({"index": index, "bytes": n})


@blueprint.post("/api/upload/<upload_id>/finish")
def _route_finish(upload_id: str) -> Response:
    return jsonify(finish_upload(upload_id))


@blueprint.delete("/api/upload/<upload_id>")
def _route_cancel(upload_id: str) -> Response:
    cancel_upload(upload_id)
    return jsonify({"cancelled": upload_id})

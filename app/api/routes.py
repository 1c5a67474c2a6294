"""The HTTP API under ``/api/v1``: a Flask blueprint whose handlers parse the request and call
the services (app/services), nothing else. Its OpenAPI document is app/api/openapi.py, served
at ``/api/v1/openapi.json``.

Every answer is JSON, errors included: ``{"error": message, "problems": [...]}`` with the
status that fits (400 bad input, 404 unknown dataset, user, model or job, 405, 409 a name taken
or a model out of date, 413 a body past ``TRAILSCOPE_API_MAX_BODY_MB``, 503 busy, with
``Retry-After``); an unexpected failure is a 500 whose message names the error's type only (the
server log has the traceback). Who may write is app/security.py's rule (the API token).

Writes go through the one write path: events through ``writer.append``, drops through
``writer.drop``; imports, samples and trainings start the dashboard's own background jobs
(app/services/jobs.py) and answer 202 with the job's id, which ``GET /api/v1/jobs/{id}``
reports on (the CLI's hand-off to a running server, app/cli/remote.py, polls it).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import flask
import orjson
from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ...analytics import schema
from ..services import cache, imports, jobs, upload, writer
from ..services import explain as explain_service
from ..services import models as model_service
from ..services import workspace as services
from ..services.messages import public_message
from . import handoff, openapi

if TYPE_CHECKING:
    from ...analytics.store import DatasetInfo

log = logging.getLogger(__name__)

ENV_MAX_BODY = "TRAILSCOPE_API_MAX_BODY_MB"
DEFAULT_MAX_BODY_MB = 32
MAX_PROBLEMS = 1000          # bad events listed in one answer (the count says how many more)
EXPLAIN_WAIT_S = 300         # longest an explanation request waits for its job
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines",
                "application/json-lines")
SNIFFED_TYPES = ("", "text/plain", "application/octet-stream",
                 "application/x-www-form-urlencoded")

blueprint = Blueprint("api_v1", __name__, url_prefix=openapi.PREFIX)


class ApiError(Exception):
    """An answer other than 2xx: status, message and (for bad events) the problems."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.problems, self.headers = problems, headers or {}


def max_body_bytes() -> int:
    """The largest request body the API reads (``TRAILSCOPE_API_MAX_BODY_MB``, default 32)."""
    raw = os.environ.get(ENV_MAX_BODY, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_BODY_MB
    except ValueError:
        mb = DEFAULT_MAX_BODY_MB
        log.warning("%s=%r is not a number of megabytes; using %s", ENV_MAX_BODY, raw, mb)
    return max(int(mb * 1024 * 1024), 1024)


# -- answers -------------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON-safe: non-finite numbers become null, timestamps ISO text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    if hasattr(value, "isoformat"):  # pandas Timestamp, date
        return value.isoformat()
    return str(value)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps(_clean(body), ensure_ascii=False, allow_nan=False),
                    status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    resp.headers["Cache-Control"] = "no-store"
    return resp


def error_response(status: int, message: str, problems: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    """The JSON error answer. ``message`` is shown as it is: messages of errors raised below
    the API go through ``public_message`` first (no server paths), the API's own name routes."""
    body: dict[str, Any] = {"error": message}
    if problems is not None:
        body["problems"] = problems
    return _json(body, status, headers)


def _status_for(exc: BaseException) -> int | None:
    """The status of an error whose message is meant for the client, else None."""
    from ...analytics.ingest.pipeline import IngestError
    from ...analytics.store import DatasetNotFound, StoreError
    from ...models.data.history import UnknownUser
    from ...models.training.checkpoint import CheckpointError

    if isinstance(exc, DatasetNotFound | UnknownUser | jobs.JobNotFound):
        return 404
    if isinstance(exc, writer.WriterBusy | jobs.QueueFull):
        return 503
    if isinstance(exc, CheckpointError):
        return 409
    if isinstance(exc, upload.UploadError):
        return exc.status
    if isinstance(exc, StoreError):
        return 409
    if isinstance(exc, services.ServiceError | IngestError | ValueError):
        return 400
    return None


@blueprint.errorhandler(Exception)
def _on_error(exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, exc.problems, exc.headers)
    if isinstance(exc, HTTPException):
        headers = {"Allow": exc.valid_methods and ", ".join(exc.valid_methods)} \
            if isinstance(exc, MethodNotAllowed) else {}
        return error_response(exc.code or 500, _http_message(exc),
                              headers={k: v for k, v in headers.items() if v})
    if isinstance(exc, writer.AppendError):
        return _append_error(exc)
    status = _status_for(exc)
    if status is None:
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, f"unexpected error ({type(exc).__name__}); the server log "
                                   "has the details")
    headers = {"Retry-After": "1"} if status == 503 else None
    return error_response(status, public_message(exc), headers=headers)


def _http_message(exc: HTTPException) -> str:
    if exc.code == 413:
        return (f"request body larger than {max_body_bytes() // (1024 * 1024)} MB "
                f"({ENV_MAX_BODY}): send the events in smaller batches")
    if exc.code == 404:
        return f"no API route {request.path!r}; the routes are listed at " \
               f"{openapi.PREFIX}/openapi.json"
    if exc.code == 405:
        return f"{request.method} is not allowed on {request.path!r}"
    return exc.description or exc.name


def _append_error(exc: Exception) -> Response:
    """An ``AppendError`` as 400: its message and every bad event's index, field, reason."""
    problems = [{"index": int(p.index), "field": str(p.field), "reason": str(p.reason)}
                for p in getattr(exc, "problems", ())]
    return error_response(400, public_message(exc), problems[:MAX_PROBLEMS])


@blueprint.before_request
def _limit_body() -> Response | None:
    limit = max_body_bytes()
    request.max_content_length = limit  # reading a longer (chunked) body raises 413
    if request.content_length is not None and request.content_length > limit:
        return error_response(413, f"request body of {request.content_length:,} bytes is "
                                   f"larger than the {limit // (1024 * 1024)} MB limit "
                                   f"({ENV_MAX_BODY}): send the events in smaller batches")
    return None


# -- parsing -------------------------------------------------------------------------------
def _number_arg(name: str, kind: type, low: float, high: float, default: Any = None) -> Any:
    """Query parameter ``name`` as ``kind`` (int or float) from ``low`` to ``high``, else 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        raise ApiError(400, f"query parameter {name}={raw[:40]!r}: expected {what} from "
                            f"{low:g} to {high:g}")
    return value


def _time_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"query parameter {name}={raw[:40]!r}: expected an ISO 8601 time "
                            "such as 2024-05-01T18:30:00Z") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _body_object() -> dict[str, Any]:
    """The request's JSON object body (an empty body is an empty object)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                            f"{exc.colno}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _field(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """``body[key]`` checked to be a ``kind`` (``default`` when missing or null)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {bool: "true or false", int: "whole number", str: "string", dict: "JSON object"}
        raise ApiError(400, f"{key!r} must be a {names[kind]}, got {str(value)[:40]!r}")
    return value


def _events() -> list[dict[str, Any]]:
    """The events of a POST body: a JSON array (or one object) or NDJSON, one per line."""
    raw = request.get_data(cache=False)  # raises 413 past the limit (chunked bodies too)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 text (byte {exc.start})") from None
    kind = request.mimetype or ""
    if kind in SNIFFED_TYPES:
        kind = "application/json" if text.lstrip()[:1] == "[" else NDJSON_TYPES[0]
    if kind in NDJSON_TYPES:
        return _ndjson(text)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ApiError(415, f"content type {kind!r} is not accepted: send a JSON array "
                            f"(application/json) or one JSON event per line "
                            f"({NDJSON_TYPES[0]})")
    try:
        body = _loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                            f"{exc.colno}") from None
    events = [body] if isinstance(body, dict) else body
    if not isinstance(events, list):
        raise ApiError(400, "the body must be a JSON array of events")
    bad = [{"index": i, "field": "", "reason": "not a JSON object"}
           for i, e in enumerate(events) if not isinstance(e, dict)]
    if bad:
        raise ApiError(400, f"{len(bad)} of {len(events)} events are not JSON objects; "
                            "nothing was stored", bad[:MAX_PROBLEMS])
    return events


#: bytes.translate table keeping ASCII digits ("0".."9" as "0") and blanking every other byte
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))


def _long_number(text: str) -> bool:
    """Whether ``text`` holds 19 digits in a row (a number orjson may read as a float)."""
    return b"0" * 19 in text.encode("utf-8", "surrogatepass").translate(_DIGITS)


def _loads(text: str) -> Any:
    """``json.loads(text)``, read by orjson (several times faster on event batches); what
    orjson refuses and the standard library reads (NaN, lone surrogates) or refuses in its
    own words goes to ``json.loads``, and so does a text with 19 digits in a row (orjson reads
    an integer past 64 bits as a float; an id must keep every digit), so the events and the
    error messages are the standard library's. The digit check is a byte translation (20 us
    on a 100-event batch; the regular expression ``\\d{19}`` before it took 0.6 ms, 8x
    orjson's own time)."""
    if not _long_number(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _ndjson(text: str) -> list[dict[str, Any]]:
    events: list[Any] = []
    bad: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = _loads(line)
        except json.JSONDecodeError as exc:
            bad.append({"index": len(events), "field": "",
                        "reason": f"line {lineno} is not JSON: {exc.msg} at column {exc.colno}"})
            event = None
        else:
            if not isinstance(event, dict):
                bad.append({"index": len(events), "field": "",
                            "reason": f"line {lineno} is not a JSON object"})
        events.append(event)
    if bad:
        raise ApiError(400, f"{len(bad)} of {len(events)} lines are not JSON events; nothing "
                            "was stored", bad[:MAX_PROBLEMS])
    return events


def _dataset_name(name: str) -> str:
    try:
        return schema.check_dataset_name(schema.clean_dataset_name(name))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _started(job_id: str) -> Response:
    return _json({"job": job_id, "status_url": f"{openapi.PREFIX}/jobs/{job_id}"}, 202,
                 {"Location": f"{openapi.PREFIX}/jobs/{job_id}"})


# -- reads ---------------------------------------------------------------------------------
@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    return _json(openapi.document())


@functools.cache
def _version() -> str:
    """The installed package's version, read once (reading the package metadata took 2 ms,
    nearly all of a health check's time)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trailscope")
    except PackageNotFoundError:
        return "unknown"


@blueprint.get("/health")
def health() -> Response:
    store = services.get_store()
    return _json({"status": "ok", "api": "v1", "version": _version(),
                  "workspace_id": handoff.workspace_id(store.path),
                  "instance": handoff.INSTANCE})


def _dataset_row(row: dict[str, Any]) -> dict[str, Any]:
    box = [row.get(k) for k in ("min_lat", "max_lat", "min_lon", "max_lon")]
    finite = all(isinstance(v, int | float) and math.isfinite(v) for v in box)
    return {"name": row["name"], "format": row.get("format"), "rows": int(row["rows"] or 0),
            "users": int(row["users"] or 0), "items": int(row["items"] or 0),
            "time_min": row.get("time_min"), "time_max": row.get("time_max"),
            "last_event": row.get("time_max"),
            "has_coordinates": bool(row.get("has_coordinates")),
            "imported_at": row.get("imported_at"),
            "bbox": dict(zip(("min_lat", "max_lat", "min_lon", "max_lon"), box, strict=True))
            if finite else None}


def _datasets() -> list[dict[str, Any]]:
    return [_dataset_row(r) for r in services.dataset_records()]


@blueprint.get("/datasets")
def list_datasets() -> Response:
    return _json({"datasets": _datasets()})


@blueprint.get("/datasets/<name>")
def get_dataset(name: str) -> Response:
    wanted = name.strip().lower()
    for row in _datasets():
        if row["name"].lower() == wanted:
            return _json(row)
    raise ApiError(404, f"no dataset named {name[:80]!r}; GET {openapi.PREFIX}/datasets lists "
                        "them")


def _dataset_model(name: str, wanted: str | None) -> tuple[DatasetInfo, str]:
    """(the dataset's registry row, the model id a request names): one registry look-up, and
    the checkpoint listing only when the dataset's import or its checkpoints changed."""
    store = services.get_store()
    info = store.info(name)  # DatasetNotFound: 404
    key = (info.name, str(info.imported_at), wanted or "", _checkpoint_files(store, info.name))
    return info, cache.MODEL_IDS.get_or_compute(key, lambda: _model_id(info.name, wanted))


def _checkpoint_files(store: Any, name: str) -> tuple[tuple[str, int, int], ...]:
    """(file, modification time, size) of every file in the dataset's checkpoint folder."""
    from ...models.training.checkpoint import models_dir  # torch: only once models are asked

    try:
        with os.scandir(models_dir(store, name)) as entries:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                for e in entries))
    except (FileNotFoundError, ValueError):
        return ()


def _model_id(name: str, wanted: str | None) -> str:
    """The model id a request names (an id, or a model name: its best current model)."""
    rows = model_service.trained_models(name)  # DatasetNotFound: 404
    if not wanted:
        best = model_service.default_row(rows)
        if best is None:
            raise ApiError(404, f"no trained model for dataset {name!r}; train one first "
                                f"(POST {openapi.PREFIX}/datasets/{name}/models or "
                                f"`trailscope train {name} --model markov`)")
        return best["model_id"]
    same = [r for r in rows if r["model_id"] == wanted] or [r for r in rows
                                                             if r["model"] == wanted]
    if not same:
        listed = ", ".join(sorted({r["model_id"] for r in rows})[:10]) or "none"
        raise ApiError(404, f"no model {wanted[:80]!r} for dataset {name!r}; trained models: "
                            f"{listed}")
    best = model_service.default_row(same)
    if best is None:
        raise ApiError(409, f"model {wanted[:80]!r} was trained before dataset {name!r} "
                            "changed; retrain it")
    return best["model_id"]


@blueprint.get("/datasets/<name>/users/<user>/recommendations")
def recommendations(name: str, user: str) -> Response:
    k = _number_arg("k", int, 1, 100, 10)
    lat, lon = _number_arg("lat", float, -90, 90), _number_arg("lon", float, -180, 180)
    if (lat is None) != (lon is None):
        raise ApiError(400, "give both lat and lon for a current position, or neither")
    at = _time_arg("at")
    info, model_id = _dataset_model(name, request.args.get("model"))
    out = model_service.recommend(info.name, user, k=k, model_id=model_id, at=at, lat=lat,
                                  lon=lon, imported_at=info.imported_at)
    return _json({"dataset": info.name, **out})


@blueprint.get("/datasets/<name>/users/<user>/explanation")
def explanation(name: str, user: str) -> Response:
    steps = _number_arg("steps", int, 2, 256, 32)
    info, model_id = _dataset_model(name, request.args.get("model"))
    name = info.name
    top = model_service.recommend(name, user, k=1, model_id=model_id,  # 404 unknown user
                                  imported_at=info.imported_at)
    item = request.args.get("item") or (top["items"][0]["item_id"] if top["items"] else None)
    if not item:
        raise ApiError(404, f"model {model_id} recommends nothing to user {user!r}")
    job_id = explain_service.start(name, user, str(item), model_id, n_steps=steps)
    snap = jobs.wait(job_id, EXPLAIN_WAIT_S)
    if snap["status"] in jobs.ACTIVE:
        jobs.cancel(job_id)
        raise ApiError(503, "the explanation is taking too long (other explanations are "
                            "running); try again", headers={"Retry-After": "10"})
    if snap["status"] != jobs.DONE:
        raise ApiError(500 if snap["unexpected"] else 400,  # job errors are public already
                       snap["error"] or "the explanation was cancelled")
    return _json(jobs.result(job_id).to_json())


@blueprint.get("/jobs/<job>")
def get_job(job: str) -> Response:
    return _json(jobs.snapshot(job))


# -- writes --------------------------------------------------------------------------------
@blueprint.delete("/jobs/<job>")
def cancel_job(job: str) -> Response:
    jobs.cancel(job)
    return _json(jobs.snapshot(job))


@blueprint.post("/datasets/<name>/events")
def post_events(name: str) -> Response:
    name = _dataset_name(name)
    events = _events()
    if not events:
        raise ApiError(400, "the body holds no events")
    result = writer.append(name, events)
    return _json({"dataset": name, "stored": int(result.stored),
                  "duplicates": int(result.duplicates), "rows": int(result.rows)})


@blueprint.delete("/datasets/<name>")
def drop_dataset(name: str) -> Response:
    return _json({"dropped": writer.drop(name)})


@blueprint.post("/datasets/<name>/import")
def import_upload(name: str) -> Response:
    name = _dataset_name(name)
    body = _body_object()
    upload_id = _field(body, "upload_id", str, "")
    fmt = _field(body, "format", str, "auto")
    mapping = _field(body, "mapping", dict, {})
    replace = _field(body, "replace", bool, False)
    keep = _field(body, "keep_duplicates", bool, False)
    if fmt != "auto" and fmt not in services.formats():
        raise ApiError(400, f"unknown format {fmt[:40]!r}; use auto or one of "
                            f"{', '.join(services.formats())}")
    bad = [k for k, v in mapping.items() if k not in schema.COLUMNS or not isinstance(v, str)]
    if bad:
        raise ApiError(400, f"mapping: {bad[0][:40]!r} must be a field "
                            f"({', '.join(schema.COLUMNS)}) mapped to a column name")
    path = upload.resolve_upload(upload_id)  # UploadError (404/409) for a bad or open upload
    if services.get_store().exists(name) and not replace:
        upload.discard_after_import(path)
        raise ApiError(409, f"a dataset named {name!r} already exists; send \"replace\": true "
                            "to overwrite it")
    return _started(imports.start_import(path, name, fmt, mapping, replace=replace,
                                         keep_duplicates=keep))


@blueprint.post("/datasets/<name>/sample")
def sample(name: str) -> Response:
    name = _dataset_name(name)
    body = _body_object()
    users = _field(body, "users", int, 500)
    seed = _field(body, "seed", int, 7)
    replace = _field(body, "replace", bool, False)
    if not 1 <= users <= 200_000:
        raise ApiError(400, f"'users' must be from 1 to 200000, got {users}")
    if services.get_store().exists(name) and not replace:
        raise ApiError(409, f"a dataset named {name!r} already exists; send \"replace\": true "
                            "to overwrite it")
    return _started(imports.start_sample(name, users=users, seed=seed, replace=replace))


@blueprint.post("/datasets/<name>/models")
def train(name: str) -> Response:
    body = _body_object()
    model = _field(body, "model", str, "")
    settings = dict(_field(body, "settings", dict, {}))
    if not model:
        raise ApiError(400, "'model' is missing: name the model to train, e.g. \"markov\"")
    services.dataset_info(name)  # 404 before the settings are looked at
    if _field(body, "continue", bool, False):  # an online update (`train --continue`)
        since, from_id = _field(body, "since", str, ""), _field(body, "from", str, "")
        return _started(model_service.start_update(name, model, from_id or None,
                                                   since or None, **settings))
    known = ("split", "epochs", "max_len", "device", "patience", "hidden")
    main = {k: settings.pop(k) for k in known if k in settings}
    return _started(model_service.start_training(name, model, **main, **settings))


# -- everything else under /api/v1 ---------------------------------------------------------
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@blueprint.route("/", defaults={"rest": ""}, methods=[*_METHODS, "HEAD", "OPTIONS"],
                 strict_slashes=False)
@blueprint.route("/<path:rest>", methods=[*_METHODS, "HEAD", "OPTIONS"])
def not_found(rest: str) -> Response:
    """JSON 404 for unknown API paths (the dashboard's pages would answer them with HTML),
    405 for a known path asked with another method."""
    adapter = flask.current_app.url_map.bind("")
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != f"{blueprint.name}.not_found":
            allowed.append(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed)
    raise NotFound()

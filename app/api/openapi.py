"""The OpenAPI 3.1 document of the HTTP API under ``/api/v1`` (served at
``/api/v1/openapi.json``), as data.

tests/app/test_api_schema.py checks the API against it with schemathesis (property-based
requests: no 500, every status and body as documented), so a route and its entry here change
together.
"""

from __future__ import annotations

from typing import Any

from ...analytics import schema

PREFIX = "/api/v1"
VERSION = "1.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema_: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema_}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_NULL_STR = {"type": ["string", "null"]}
_NULL_NUM = {"type": ["number", "null"]}
_NULL_TIME = {"type": ["string", "null"], "description": "ISO 8601, UTC"}

_EVENT = {
    "type": "object",
    "description": "One event in the canonical schema (the columns of a file import).",
    "required": [schema.USER, schema.ITEM, schema.TS],
    "properties": {
        schema.USER: {"type": ["string", "integer"], "description": "who"},
        schema.ITEM: {"type": ["string", "integer"], "description": "what: a place, product, "
                      "movie"},
        schema.TS: {"type": ["string", "number"], "description": "when: ISO 8601 (UTC unless "
                    "it carries an offset) or seconds since 1970"},
        schema.LAT: {**_NULL_NUM, "description": "WGS84 latitude, -90..90"},
        schema.LON: {**_NULL_NUM, "description": "WGS84 longitude, -180..180"},
        schema.BEHAVIOR: {**_NULL_STR, "description": "visit (default), pv, cart, buy, ..."},
        schema.CATEGORY: _NULL_STR,
        schema.VALUE: {**_NULL_NUM, "description": "rating, amount, dwell time"},
        schema.TZ_OFFSET: {"type": ["integer", "null"], "description": "minutes east of UTC"},
        "event_id": {**_NULL_STR, "description": "the sender's id of the event: an event "
                     "sent again with the same id is stored once"},
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what was wrong and what to do"},
            "problems": {"type": "array", "items": _ref("Problem")},
        },
    },
    "Problem": {
        "type": "object", "required": ["index", "field", "reason"],
        "description": "One bad event: its position in the body (0-based; -1: the body as a "
                       "whole), its field (empty: the event as a whole) and the reason.",
        "properties": {"index": {"type": "integer", "minimum": -1}, "field": {"type": "string"},
                       "reason": {"type": "string"}},
    },
    "Event": _EVENT,
    "AppendResult": {
        "type": "object", "required": ["dataset", "stored", "duplicates", "rows"],
        "properties": {
            "dataset": {"type": "string"},
            "stored": {"type": "integer", "minimum": 0, "description": "events added"},
            "duplicates": {"type": "integer", "minimum": 0,
                           "description": "events already stored (same event_id), skipped"},
            "rows": {"type": "integer", "minimum": 0, "description": "the dataset's events now"},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "api", "workspace_id", "instance"],
        "properties": {"status": {"const": "ok"}, "api": {"const": "v1"},
                       "version": {"type": "string"},
                       "workspace_id": {"type": "string"}, "instance": {"type": "string"}},
    },
    "Dataset": {
        "type": "object",
        "required": ["name", "rows", "users", "items", "time_min", "time_max", "last_event"],
        "properties": {
            "name": {"type": "string"}, "format": _NULL_STR,
            "rows": {"type": "integer"}, "users": {"type": "integer"},
            "items": {"type": "integer"},
            "time_min": _NULL_TIME, "time_max": _NULL_TIME,
            "last_event": {**_NULL_TIME, "description": "time of the newest event"},
            "has_coordinates": {"type": "boolean"},
            "imported_at": _NULL_TIME,
            "bbox": {"type": ["object", "null"], "properties": {
                k: {"type": "number"} for k in ("min_lat", "max_lat", "min_lon", "max_lon")}},
        },
    },
    "DatasetList": {"type": "object", "required": ["datasets"],
                    "properties": {"datasets": {"type": "array", "items": _ref("Dataset")}}},
    "Dropped": {"type": "object", "required": ["dropped"],
                "properties": {"dropped": {"type": "string"}}},
    "Recommendation": {
        "type": "object", "required": ["item_id", "score"],
        "properties": {"item_id": {"type": "string"}, "score": {"type": "number"},
                       "category": _NULL_STR, "lat": _NULL_NUM, "lon": _NULL_NUM},
    },
    "Recommendations": {
        "type": "object", "required": ["dataset", "user", "model", "model_id", "items"],
        "properties": {
            "dataset": {"type": "string"}, "user": {"type": "string"},
            "model": {"type": "string"}, "model_id": {"type": "string"},
            "at": {"type": "string", "description": "the time recommended for (UTC)"},
            "history_used": {"type": "integer",
                             "description": "the user's latest events the model read (at "
                                            "most its sequence length), newest included"},
            "unknown_items_skipped": {"type": "integer",
                                      "description": "events among those latest ones whose "
                                                     "item the model does not know (new since "
                                                     "training, or filtered out), skipped"},
            "items": {"type": "array", "items": _ref("Recommendation")},
        },
    },
    "Explanation": {
        "type": "object", "required": ["user", "item", "model", "summary"],
        "description": "What `trailscope explain --json` prints: the score, its attribution "
                       "over the user's events and feature groups, and a summary.",
        "properties": {"user": {"type": "string"}, "item": {"type": "string"},
                       "model": {"type": "string"}, "model_id": {"type": "string"},
                       "summary": {"type": "string"}, "score": _NULL_NUM,
                       "groups": {"type": "object"}, "events": {"type": "array"}},
    },
    "JobStarted": {
        "type": "object", "required": ["job", "status_url"],
        "properties": {"job": {"type": "string"}, "status_url": {"type": "string"}},
    },
    "Job": {
        "type": "object", "required": ["id", "kind", "status", "fraction", "progress"],
        "properties": {
            "id": {"type": "string"}, "kind": {"type": "string"},
            "label": {"type": "string"},
            "status": {"enum": ["queued", "running", "done", "cancelled", "failed"]},
            "fraction": {"type": "number"}, "progress": {"type": "object"},
            "messages": {"type": "array", "items": {"type": "string"}},
            "summary": {"type": ["object", "null"]}, "error": _NULL_STR,
        },
    },
}

_NAME = {"name": "name", "in": "path", "required": True, "description": "dataset name",
         "schema": {"type": "string", "pattern": schema.DATASET_NAME_RE.pattern}}
_USER = {"name": "user", "in": "path", "required": True, "schema": {"type": "string"}}
_MODEL = {"name": "model", "in": "query", "required": False,
          "description": "a model id, or a model name (its best current model); default: the "
                         "dataset's best current model", "schema": {"type": "string"}}
_JOB = {"name": "job", "in": "path", "required": True, "description": "a job id (202 answers)",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{12}$"}}
_WRITE = [{"bearer": []}]
_E400, _E404 = _error("bad request: the message says what to change"), _error("not found")
_E401, _E403 = _error("missing or wrong API token"), _error("writes refused from here")
_E409 = _error("conflicts with the workspace's state (a name taken, a model out of date)")
_E413 = _error("body larger than TRAILSCOPE_API_MAX_BODY_MB")
_E503 = _error("busy: too many writes or jobs waiting; retry after the Retry-After seconds")
_WRITE_ERRORS = {"401": _E401, "403": _E403}
_JOB_STARTED = _json(_ref("JobStarted"), "started: poll the job")


def _obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {
        "type": "object", "properties": properties, "required": list(required)}}}}


PATHS: dict[str, Any] = {
    "/health": {"get": {
        "summary": "Liveness and the workspace this server holds", "operationId": "health",
        "responses": {"200": _json(_ref("Health"), "the server is up")}}},
    "/datasets": {"get": {
        "summary": "Every dataset: counts, span, last event", "operationId": "listDatasets",
        "responses": {"200": _json(_ref("DatasetList"), "the datasets, newest first")}}},
    "/datasets/{name}": {
        "get": {"summary": "One dataset", "operationId": "getDataset", "parameters": [_NAME],
                "responses": {"200": _json(_ref("Dataset"), "the dataset"), "400": _E400,
                              "404": _E404}},
        "delete": {"summary": "Delete a dataset, its events and summaries",
                   "operationId": "dropDataset", "parameters": [_NAME], "security": _WRITE,
                   "responses": {"200": _json(_ref("Dropped"), "dropped"), "400": _E400,
                                 "404": _E404, "409": _E409, "503": _E503, **_WRITE_ERRORS}}},
    "/datasets/{name}/events": {"post": {
        "summary": "Append events (stored whole or not at all)", "operationId": "postEvents",
        "parameters": [_NAME], "security": _WRITE,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "array", "items": _ref("Event")}},
            "application/x-ndjson": {"schema": {"type": "string", "description":
                                                "one JSON event per line"}}}},
        "responses": {"200": _json(_ref("AppendResult"), "stored"),
                      "400": _error("bad events: `problems` names each one's index, field "
                                    "and reason; nothing was stored"),
                      "404": _E404, "409": _E409, "413": _E413, "415":
                          _error("a body that is neither JSON nor NDJSON"),
                      "503": _E503, **_WRITE_ERRORS}}},
    "/datasets/{name}/users/{user}/recommendations": {"get": {
        "summary": "Top-K next items for a user, from their latest events",
        "operationId": "recommend",
        "parameters": [
            _NAME, _USER,
            {"name": "k", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                    "maximum": 100, "default": 10}},
            _MODEL,
            {"name": "at", "in": "query", "description": "time of the next event, ISO 8601 "
             "(default: the user's last event)", "schema": {"type": "string"}},
            {"name": "lat", "in": "query", "description": "current position (with lon)",
             "schema": {"type": "number", "minimum": -90, "maximum": 90}},
            {"name": "lon", "in": "query", "schema": {"type": "number", "minimum": -180,
                                                      "maximum": 180}}],
        "responses": {"200": _json(_ref("Recommendations"), "the top-K items"),
                      "400": _E400, "404": _E404, "409": _E409}}},
    "/datasets/{name}/users/{user}/explanation": {"get": {
        "summary": "Why a model recommends an item to a user (`trailscope explain --json`)",
        "operationId": "explain",
        "parameters": [_NAME, _USER,
                       {"name": "item", "in": "query", "description": "default: the top "
                        "recommendation", "schema": {"type": "string"}},
                       _MODEL,
                       {"name": "steps", "in": "query", "schema": {
                           "type": "integer", "minimum": 2, "maximum": 256, "default": 32}}],
        "responses": {"200": _json(_ref("Explanation"), "the explanation"), "400": _E400,
                      "404": _E404, "409": _E409, "503": _E503}}},
    "/datasets/{name}/import": {"post": {
        "summary": "Import a finished upload (/api/upload/*) as this dataset, as a job",
        "operationId": "importUpload", "parameters": [_NAME], "security": _WRITE,
        "requestBody": {"required": True, **_obj({
            "upload_id": {"type": "string"}, "format": {"type": "string", "default": "auto"},
            "mapping": {"type": "object", "additionalProperties": {"type": "string"}},
            "replace": {"type": "boolean"}, "keep_duplicates": {"type": "boolean"}},
            ("upload_id",))},
        "responses": {"202": _JOB_STARTED, "400": _E400, "404": _E404, "409": _E409,
                      "413": _E413, "503": _E503, **_WRITE_ERRORS}}},
    "/datasets/{name}/sample": {"post": {
        "summary": "Generate the sample city's events as this dataset, as a job",
        "operationId": "sample", "parameters": [_NAME], "security": _WRITE,
        "requestBody": {"required": False, **_obj({
            "users": {"type": "integer", "minimum": 1, "maximum": 200_000, "default": 500},
            "seed": {"type": "integer", "default": 7}, "replace": {"type": "boolean"}})},
        "responses": {"202": _JOB_STARTED, "400": _E400, "409": _E409, "413": _E413,
                      "503": _E503, **_WRITE_ERRORS}}},
    "/datasets/{name}/models": {"post": {
        "summary": "Train a model on the dataset, as a job", "operationId": "train",
        "parameters": [_NAME], "security": _WRITE,
        "requestBody": {"required": True, **_obj({
            "model": {"type": "string"},
            "settings": {"type": "object", "description": "KEY=VALUE training and model "
                         "settings, as `trailscope train --set`"},
            "continue": {"type": "boolean", "description": "an online update of the newest "
                         "model of this name (`trailscope train --continue`)"},
            "since": {"type": "string", "description": "with continue: train on the events "
                      "after this time (ISO 8601); default: since the model's training"},
            "from": {"type": "string", "description": "with continue: the model id to "
                     "continue instead of the newest"}}, ("model",))},
        "responses": {"202": _JOB_STARTED, "400": _E400, "404": _E404, "413": _E413,
                      "503": _E503, **_WRITE_ERRORS}}},
    "/jobs/{job}": {
        "get": {"summary": "A job's state and progress", "operationId": "getJob",
                "parameters": [_JOB],
                "responses": {"200": _json(_ref("Job"), "the job"), "404": _E404}},
        "delete": {"summary": "Cancel a job", "operationId": "cancelJob", "security": _WRITE,
                   "parameters": [_JOB],
                   "responses": {"200": _json(_ref("Job"), "the job, cancel requested"),
                                 "404": _E404, **_WRITE_ERRORS}}},
}


def document() -> dict[str, Any]:
    """The OpenAPI document (a new dict on every call)."""
    import copy

    return {
        "openapi": "3.1.0",
        "info": {"title": "TrailScope API", "version": VERSION, "description": (
            "Events in, recommendations and explanations out. Writes need "
            "`Authorization: Bearer $TRAILSCOPE_API_TOKEN`; with no token configured the "
            "server takes writes from its own machine only. Every error is JSON: "
            "`{\"error\": message, \"problems\": [...]}`.")},
        "servers": [{"url": PREFIX}],
        "paths": copy.deepcopy(PATHS),
        "components": {"schemas": copy.deepcopy(_SCHEMAS), "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }

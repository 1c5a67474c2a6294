"""The HTTP API checked against its own OpenAPI document with schemathesis: property-based
requests (valid and invalid, per operation) to the real WSGI app over a real workspace (the
NYC slice and a trained markov model in a temporary DuckDB file). No answer may be a server
error, and every status, content type, header and body must be what the document says;
invalid requests must be refused with a 4xx.

Operations that start background work (import, training) are fuzzed too: their random dataset
names meet no dataset, so they end in 400/404/409 before a job starts. ``sample`` of a fresh
name would start one (up to 200,000 users), so it is left out here; tests/app/test_cli_remote.py
runs it through a server.

(schemathesis' pytest plugin does not run under pytest 9, so the operations are parametrized
here and each runs its own hypothesis test.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from trailscope.app.api import openapi

from tests.conftest import nyc_head

#: werkzeug's test client names no client address; the server's own machine is loopback
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
EXAMPLES = 8  # per operation and generation mode: the whole run stays under a minute
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance, checks.negative_data_rejection]
#: (operation, generation mode): invalid requests only where there is something to spoil
CASES = [(f"{method.upper()} {path}", mode) for path, ops in openapi.PATHS.items()
         for method, op in ops.items() if op["operationId"] != "sample"
         for mode in GenerationMode
         if mode is GenerationMode.POSITIVE or op.get("parameters") or op.get("requestBody")]


#: operations fuzzed once more on the real dataset (and a user the model knows): the
#: query parameters and event bodies then reach the recommender and the write path
ON_NYC = [("GET /datasets/{name}", GenerationMode.POSITIVE)] + [
    (label, mode) for label in ("GET /datasets/{name}/users/{user}/recommendations",
                                "GET /datasets/{name}/users/{user}/explanation",
                                "POST /datasets/{name}/events") for mode in GenerationMode]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory) -> Iterator[dict]:
    """The OpenAPI document of the real app, loaded from its own route, over a workspace
    holding dataset ``nyc`` and a markov model; and the model's most active user."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.app.services import workspace as services
    from trailscope.models import api

    home = tmp_path_factory.mktemp("schema_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRAILSCOPE_HOME", str(home))
    for name in ("TRAILSCOPE_API_TOKEN", "TRAILSCOPE_PASSWORD", "TRAILSCOPE_ALLOWED_HOSTS"):
        mp.delenv(name, raising=False)
    services.close_store()
    store = services.get_store()
    import_file(store, nyc_head(home / "nyc.csv", 2000), name="nyc")
    model_id = api.train(store, "nyc", "markov", log=lambda _m: None).model_id
    from trailscope.app.main import app
    from trailscope.app.services import models as model_service

    try:
        yield {"schema": schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app.server,
                                                        environ_base=LOOPBACK),
               "user": model_service.model_users("nyc", model_id, limit=1)[0]["user"]}
    finally:
        services.close_store()
        mp.undo()


def test_the_document_lists_every_route():
    from trailscope.app.main import app

    routes = {(m, r.rule.removeprefix(openapi.PREFIX).replace("<", "{").replace(">", "}"))
              for r in app.server.url_map.iter_rules() if r.endpoint.startswith("api_v1.")
              and r.endpoint not in ("api_v1.not_found", "api_v1.openapi_json")
              for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(m.upper(), p) for p, ops in openapi.PATHS.items() for m in ops}
    assert routes == documented


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{o}-{m.value}" for o, m in CASES])
def test_api_matches_its_openapi_document(api_schema, label, mode):
    _run(api_schema["schema"], label, mode, None)


@pytest.mark.parametrize(("label", "mode"), ON_NYC, ids=[f"{o}-{m.value}" for o, m in ON_NYC])
def test_api_on_a_real_dataset_matches_its_openapi_document(api_schema, label, mode):
    names = {"name": "nyc", **({"user": api_schema["user"]} if "{user}" in label else {})}
    _run(api_schema["schema"], label, mode, names)


def _run(schema: object, label: str, mode: GenerationMode, names: dict | None) -> None:
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=names))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        case.call_and_validate(checks=CHECKS, environ_base=LOOPBACK)

    check()

"""The API reads event bodies with orjson (app/api/routes._loads) and gives the same values
and the same error messages as the standard library's json.loads on every text."""

from __future__ import annotations

import json
import math

import pytest
from trailscope.app.api import routes

TEXTS = [
    '[{"user_id": "u1", "item_id": "i1", "ts": "2012-04-03T18:00:09Z", "lat": 40.7, '
    '"lon": -73.9, "value": 4, "tz_offset_min": -240, "event_id": "e-1"}]',
    '{"user_id": 12345678901234567890123, "item_id": 9007199254740993, "ts": 1333476009}',
    '[{"value": NaN}, {"value": Infinity}, {"lat": 1e999}]',
    '["\\ud800", "caf\\u00e9", "\\u2028"]',
    '{"a": 1, "a": 2}',
    '[-0.0, 1.0, 1e5, 0.1, 123456789012345678]',
]
BAD = ['[1,2', '{"a": 1,}', '[{"a": tru}]', '', '[1] [2]', "{'a': 1}", '[01]']


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("text", TEXTS)
def test_values_are_the_standard_librarys(text):
    assert same(routes._loads(text), json.loads(text))


@pytest.mark.parametrize("text", BAD)
def test_errors_are_the_standard_librarys(text):
    with pytest.raises(json.JSONDecodeError) as want:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        routes._loads(text)
    assert (got.value.msg, got.value.lineno, got.value.colno) == \
        (want.value.msg, want.value.lineno, want.value.colno)


def test_the_model_a_request_gets_follows_new_and_deleted_checkpoints(workspace):
    """The API remembers which model a request names per dataset import and checkpoint
    folder state: a request after a training or a deletion sees the models as they are."""
    from trailscope.analytics.sample.generate import import_sample
    from trailscope.app.services import models as model_service
    from trailscope.models import api

    def model_of(name, wanted):
        info, model_id = routes._dataset_model(name, wanted)
        return info.name, model_id

    import_sample(workspace, "city", users=30, seed=3)
    first = api.train(workspace, "city", "markov", log=lambda _m: None).model_id
    assert model_of("CITY", None) == ("city", first)
    assert model_of("city", "markov") == ("city", first)
    second = api.train(workspace, "city", "markov", log=lambda _m: None).model_id
    assert model_of("city", second) == ("city", second)
    model_service.delete_model("city", first)
    assert model_of("city", None) == ("city", second)
    assert model_of("city", "markov") == ("city", second)
    model_service.delete_model("city", second)
    with pytest.raises(routes.ApiError, match="no trained model"):
        model_of("city", None)

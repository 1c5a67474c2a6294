"""The Models page's user picker: the default model's most active users come with the page
(its recommendations load without a round trip that lists them first), and typing searches
every user the model knows on the server. Models trained on the first 4,000 NYC check-ins."""

from __future__ import annotations

import dash
from trailscope.app.services import models as model_service

from tests.app.test_models_page import trained  # noqa: F401 - the module's trained workspace


def _find(component, component_id):
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _find(child, component_id)
            if found is not None:
                return found
    return None


def test_layout_lists_the_most_active_users_and_search_finds_the_rest(trained,  # noqa: F811
                                                                     monkeypatch):
    import trailscope.app.main  # noqa: F401 (creates the app, which registers the pages)
    from trailscope.app.pages import models as page
    from trailscope.app.views import ids

    monkeypatch.setattr(page, "_LISTED", 5)  # the slice's model knows fewer than 100 users
    layout = next(p for p in dash.page_registry.values() if p["path"] == "/models")["layout"]
    pick = _find(layout(dataset="nyc"), ids.MODELS_USER_PICK)
    model_id = model_service.default_row(model_service.trained_models("nyc"))["model_id"]
    users = model_service.model_users("nyc", model_id)
    assert pick.value == users[0]["user"]  # the most active user, picked with the page
    assert [o["value"] for o in pick.options] == [u["user"] for u in users[:page._LISTED]]

    quiet = users[-1]["user"]  # the least active user the model knows: not listed
    assert len(users) > 5 and quiet not in [o["value"] for o in pick.options]
    found = page.search_users(quiet, model_id, "nyc", pick.value)
    assert quiet in [o["value"] for o in found]
    assert all(quiet in o["value"] for o in found[1:])  # the picked user is kept first
    assert page.search_users("no such user", model_id, "nyc", None) == []

    opts, chosen = page.user_options(model_id, "nyc", quiet)  # a model pick keeps the user
    assert chosen == quiet and opts[0]["value"] == quiet and len(opts) == 6

"""The Models page's user picker: the default model's most active users come with the page
(its recommendations load without a round trip that lists them first), and typing searches
every user the model knows on the server. Models trained on the first 4,000 NYC check-ins."""

from __future__ import annotations

import dash
import numpy as np
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
    assert found[0] == {"label": f"{users[0]['user']}  ({users[0]['events']:,} events)",
                        "value": pick.value}     # with its counts, as listed
    assert page.search_users("no such user", model_id, "nyc", None) == []

    opts, chosen = page.user_options(model_id, "nyc", quiet)  # a model pick keeps the user
    assert chosen == quiet and opts[0]["value"] == quiet and len(opts) == 6


def test_picker_search_finds_any_user_of_the_model_from_one_index_per_version(
        trained, monkeypatch):  # noqa: F811
    """Typing searches every user the model knows, not only the listed ones: the index is
    built once per checkpoint and dataset version, so keystrokes do not rebuild it."""
    import trailscope.app.main  # noqa: F401
    from trailscope.app.pages import models as page
    from trailscope.app.services import cache

    model_id = model_service.default_row(model_service.trained_models("nyc"))["model_id"]
    cache.clear_all()
    counted = []
    real = model_service._user_counts
    monkeypatch.setattr(model_service, "_user_counts",
                        lambda name: counted.append(name) or real(name))
    monkeypatch.setattr(page, "_LISTED", 3)
    every = model_service.user_index("nyc", model_id)
    assert len(every) > 10
    listed = [o["value"] for o in page.search_users("", model_id, "nyc", None)]
    assert listed == list(every.users[:3])
    for quiet in every.users[-5:]:          # the least active: far outside the listed three
        for typed in (quiet, f"  {quiet.upper()} "):  # the id typed: found first
            found = [o["value"] for o in page.search_users(typed, model_id, "nyc", None)]
            assert found[0] == quiet and len(found) <= 3, (typed, found)
        part = quiet[1:] or quiet                 # part of the id: ids containing it only
        found = [o["value"] for o in page.search_users(part, model_id, "nyc", None)]
        assert found and all(part in f for f in found) and len(found) <= 3, (part, found)
        assert model_service.model_knows_user("nyc", model_id, quiet)
    assert counted == ["nyc"]               # one index for all those keystrokes
    assert not model_service.model_knows_user("nyc", model_id, "no such user")
    opts, chosen = page.user_options(model_id, "nyc", every.users[-1])  # kept on a model pick
    assert chosen == every.users[-1] and len(opts) == 4


def test_user_index_ranks_exact_then_prefix_then_substring_most_active_first():
    users = ["u100", "A17", "x100y", "1000", "100", "b100", "U1000", "line\nbreak", "z"]
    idx = model_service.UserIndex.build(users, list(range(len(users), 0, -1)))
    names = lambda rows: [r["user"] for r in rows]  # noqa: E731
    assert names(idx.search("100")) == ["100", "1000", "u100", "x100y", "b100", "U1000"]
    assert names(idx.search("u100")) == ["u100", "U1000"]          # case-insensitive
    assert names(idx.search("100", limit=2)) == ["100", "1000"]     # the cap
    assert names(idx.search("  ")) == users[:model_service.MAX_USERS]
    assert idx.search("k\nb") == [] and idx.search("e\nb") == []   # never across ids
    assert names(idx.search("break")) == ["line\nbreak"]
    assert idx.search("100")[0] == {"user": "100", "events": 5}
    assert "A17" in idx and "a17" not in idx and "A1" not in idx
    assert names(model_service.UserIndex.build([], []).search("a")) == []


def test_user_index_finds_the_least_active_of_many_users():
    """200,000 users (more than any picker lists): the least active one is found by any part
    of its id, and a common part returns the cap, most active first."""
    rng = np.random.default_rng(0)
    users = [f"user-{i:06d}-{c}" for i, c in enumerate(rng.choice(list("abcdef"), 200_000))]
    idx = model_service.UserIndex.build(users, list(range(len(users), 0, -1)))
    last = users[-1]
    for typed in (last, last[:11], last[5:], last[-8:].upper()):
        assert last in [r["user"] for r in idx.search(typed)], typed
    common = idx.search("user-", limit=50)
    assert [r["user"] for r in common] == users[:50]


def test_explain_user_list_searches_every_user_of_the_model(trained):  # noqa: F811
    """The Explain page lists the model's most active users and typing finds any other."""
    import trailscope.app.main  # noqa: F401
    from trailscope.app.pages import explain as page
    from trailscope.app.services import explain as explain_service

    model_id = model_service.default_row(model_service.trained_models("nyc"))["model_id"]
    every = model_service.user_index("nyc", model_id)
    listed = explain_service.user_options("nyc", model_id, limit=3)
    assert listed == list(every.users[:3])
    quiet = every.users[-1]
    found = [o["value"] for o in page.search_users(quiet, model_id, "nyc", listed[0])]
    assert found[:2] == [listed[0], quiet]           # the picked user kept, then the match
    assert page.search_users("no such user", model_id, "nyc", None) == []
    # no model, or one that cannot be read: the dataset's most active users
    dataset_top = explain_service.user_options("nyc", None, limit=3)
    assert len(dataset_top) == 3
    assert explain_service.user_options("nyc", "no-such-model", "x", limit=3) == dataset_top

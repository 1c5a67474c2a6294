"""How long the Explain page makes a user wait, measured in the browser: from the click on a
recommended item to the explanation's figures drawn, for the first explanation of a fresh
server and for a second user picked from the user list afterwards. The page itself shows that
time ("Explained in X s from your click ..."), measured with the browser's clock; the test
reads it, checks it against its own clock, and fails on any console error.

The workspace holds the NYC slice (tests/data, 361 users) and a briefly trained
st-transformer. The goals (first under 3 s, later ones under 1 s) are checked by
``bench.explain_bench --browser`` on a quiet machine; the bounds here are generous, so a loaded
2-core test machine passes, yet they fail when polls pile up again (that bug made explanations
take a minute).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

import pytest
from trailscope.app.views import ids

from tests.browser.conftest import serve

FIGURES = (ids.EXPLAIN_FIG_ATTRIBUTION, ids.EXPLAIN_FIG_GROUPS,
           ids.EXPLAIN_FIG_COUNTERFACTUAL, ids.EXPLAIN_FIG_ATTENTION)
FIRST_BOUND_S, LATER_BOUND_S = 30.0, 15.0   # generous: see the module doc
WAIT_S = 180  # longer than the bounds, so a slow run fails on its measured time
_SHOWN = re.compile(r"Explained in ([0-9.]+) s from your click .*: ([0-9.]+) s on the server, "
                    r"([0-9.]+) s of it computing")
_DRAWN = ("([figs, title, result]) =>"
          " figs.every(i => document.querySelector('#' + i + ' .main-svg'))"
          " && [...document.querySelectorAll('.card-title')].some(t => t.innerText === title)"
          " && document.querySelector('#' + result + ' .trailscope-deckmap[data-drawn]')")


def explain_once(page, rank: int = 1) -> dict[str, float | str]:
    """Click the item at 0-based ``rank`` in the recommendations and wait for the page to
    report its time; returns the item, the page's figure (``page_s``), the test's own clock
    from the click to the drawn figures and map (``clock_s``), the server's part (``server_s``:
    from the request to the finished job) and the computing part (``compute_s``)."""
    status = page.locator(f"#{ids.EXPLAIN_STATUS}")
    button = page.locator(".explain-rec-item").nth(rank)
    item = button.locator("strong").inner_text()
    t0 = time.perf_counter()
    button.click()
    page.wait_for_function(_DRAWN, arg=[list(FIGURES), f"Why {item}?", ids.EXPLAIN_RESULT],
                           polling=25, timeout=WAIT_S * 1000)
    clock = time.perf_counter() - t0
    page.wait_for_function("(re) => new RegExp(re).test(document.querySelector('#"
                           f"{ids.EXPLAIN_STATUS}').innerText)", arg=_SHOWN.pattern)
    m = _SHOWN.search(status.inner_text())
    return {"item": item, "page_s": float(m.group(1)), "clock_s": clock,
            "server_s": float(m.group(2)), "compute_s": float(m.group(3))}


def pick_user(page, user: str) -> None:
    """Choose ``user`` in the page's user list and wait for their recommendations."""
    page.click(f"#{ids.EXPLAIN_USER}")
    page.locator(".dash-dropdown-option", has_text=re.compile(rf"^\s*{re.escape(user)}\s*$")
                 ).first.click()
    page.locator(f"#{ids.EXPLAIN_RECS}", has_text=f"for user {user} ").wait_for()


def first_and_second(page, url: str, dataset: str, users: list[str]) -> list[dict]:
    """Open the Explain page on ``users[0]`` (default model), explain its second
    recommendation, then pick ``users[1]`` and explain theirs."""
    page.goto(f"{url}/explain?{urlencode({'dataset': dataset, 'user': users[0]})}")
    page.locator(".explain-rec-item").first.wait_for()
    out = [explain_once(page)]
    pick_user(page, users[1])
    out.append(explain_once(page))
    return out


@contextmanager
def explain_workspace(home, dataset: str, n_users: int | None, max_len: int,
                      users_sql: str) -> Iterator[dict]:
    """A dashboard over ``home`` holding the NYC slice (as ``dataset``: its first ``n_users``
    users, or all) and a briefly trained st-transformer; yields its url, the model id and the
    users ``users_sql`` selects (a query on ``{table}`` returning column ``u``)."""
    import torch
    from trailscope.models.api import train

    from tests.models.realdata import real_workspace, slice_dataset

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    store = real_workspace(home, "nyc")
    if n_users:
        slice_dataset(store, "nyc", dataset, n_users)
    res = train(store, dataset, model="st-transformer", epochs=1, pretrain_epochs=0,
                hidden=16, batch_size=128, max_len=max_len, log=lambda _m: None)
    users = store.query_df(users_sql.format(table=store.table(dataset)))["u"]
    store.close()
    torch.set_num_threads(before)
    with serve(home, {"OMP_NUM_THREADS": "1"}) as url:
        yield {"url": url, "model_id": res.model_id, "users": users.astype(str).tolist(),
               "home": home}


@pytest.fixture(scope="module")
def nyc_server(tmp_path_factory):
    from trailscope.analytics.schema import USER

    with explain_workspace(tmp_path_factory.mktemp("explain_times"), "nyc", None, 50,
                           f"SELECT {USER} AS u, count(*) AS n FROM {{table}} GROUP BY 1 "
                           "ORDER BY n DESC, 1 LIMIT 2") as server:
        yield server


def test_first_and_second_explanation_times(nyc_server, page, artifacts):
    s = nyc_server
    times = first_and_second(page, s["url"], "nyc", s["users"])
    for n, t in enumerate(times, 1):
        print(f"\nexplanation {n} (user {s['users'][n - 1]}, item {t['item']}): "
              f"{t['page_s']:.2f} s on the page, {t['clock_s']:.2f} s by the test's clock, "
              f"{t['server_s']:.2f} s on the server, {t['compute_s']:.2f} s computing")
    note = page.locator(f"#{ids.EXPLAIN_DEFAULT_NOTE}").inner_text()
    assert s["model_id"] in note and "best validation NDCG@10" in note
    page.screenshot(path=str(artifacts / "explain_times.png"), full_page=True)
    for t in times:
        # the page's figure runs from the click to the drawn figures: it cannot be shorter
        # than the computing part, nor longer than the test saw (plus polling slack)
        assert t["compute_s"] <= t["server_s"] <= t["page_s"] <= t["clock_s"] + 0.5
    assert times[0]["page_s"] < FIRST_BOUND_S and times[1]["page_s"] < LATER_BOUND_S
    assert page.console.errors == []

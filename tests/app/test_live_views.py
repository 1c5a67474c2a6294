"""The Live page's views (app/views/live.py) on real NYC check-ins: the headline cards name a
clock only beside a time, the empty feed says where to send events instead of bare headers,
and the feed offers "explain" only for users the model knows."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from dash import dcc, html
from trailscope.analytics import schema
from trailscope.app.views import live as views

from tests.app.helpers import texts
from tests.conftest import NYC


@pytest.fixture(scope="module")
def feed() -> pd.DataFrame:
    """Four NYC check-ins of each of the slice's first three users as the Live feed's rows
    (newest arrival first)."""
    raw = pd.read_csv(NYC, nrows=3000)
    first = raw["user_id"].drop_duplicates().head(3)
    raw = raw[raw["user_id"].isin(first)].groupby("user_id").head(4).sample(frac=1,
                                                                          random_state=0)
    ts = pd.to_datetime(raw["utc_time_minute"])
    out = pd.DataFrame({"arrived_at": pd.Timestamp("2026-12-06 12:00:00")
                        - pd.to_timedelta(range(len(raw)), unit="s"),
                        schema.TS: ts, schema.USER: raw["user_id"].astype(str),
                        schema.ITEM: raw["stan_poi_id"].astype(str),
                        schema.CATEGORY: raw["venue_category"], schema.BEHAVIOR: "visit",
                        schema.LAT: raw["latitude"], schema.LON: raw["longitude"]})
    assert out[schema.USER].nunique() == 3
    return out


def _links(component: Any) -> list[dcc.Link]:
    found, stack = [], [component]
    while stack:
        c = stack.pop()
        if isinstance(c, list | tuple):
            stack.extend(reversed(c))  # in reading order
        elif isinstance(c, dcc.Link):
            found.append(c)
        elif c is not None and not isinstance(c, str) and hasattr(c, "children"):
            stack.append(c.children)
    return found


def _kpi(cards: list[html.Div], label: str) -> tuple[str, str]:
    for card in cards:
        lab, value, hint = card.children
        if lab.children == label:
            return value.children, hint.children
    raise AssertionError(f"no card {label}")


def test_last_arrival_names_its_clock_only_beside_a_time() -> None:
    cards = views.kpis(0, None, 1234, "nyc")
    assert _kpi(cards, "Last arrival") == ("none yet", "")
    assert _kpi(cards, "Events in the dataset") == ("1,234", "nyc")
    cards = views.kpis(3, pd.Timestamp("2026-12-06 11:59:07"), 1237, "nyc")
    assert _kpi(cards, "Last arrival") == ("2026-12-06 11:59:07", "UTC")
    assert _kpi(cards, "Events arrived") == ("3", "through the API and streams")


def test_an_empty_feed_says_where_to_send_events(feed) -> None:
    endpoint = "/api/v1/datasets/nyc/events"
    empty = views.feed_table("nyc", feed.iloc[:0], "live-feed", endpoint=endpoint)
    assert empty.id == "live-feed" and isinstance(empty, html.P)
    lead, verb, code, rest = empty.children
    assert (lead, verb) == ("No events have arrived yet: ", "post some to ")
    assert isinstance(code, html.Code) and code.children == endpoint
    assert "show here" in rest
    bare = " ".join(texts(views.feed_table("nyc", feed.iloc[:0], "live-feed")))
    assert "No events have arrived yet" in bare and "HTTP API" in bare


def test_explain_is_offered_only_for_known_users(feed) -> None:
    users = feed[schema.USER].unique().tolist()
    known, unknown = users[0], users[1]
    table = views.feed_table("nyc", feed, "live-feed", known={known})
    assert isinstance(table, html.Table)
    rows = table.children[1].children
    assert len(rows) == len(feed)
    for row, user in zip(rows, feed[schema.USER], strict=True):
        names = [link.children for link in _links(row)]
        assert names[0] == user  # the Users link, always
        assert ("explain" in names) == (user == known)
        if user == known:
            assert _links(row)[-1].href == f"/explain?dataset=nyc&user={user}"
    assert unknown in " ".join(texts(table))
    # without the model's users no one is offered an explanation
    assert not [lk for lk in _links(views.feed_table("nyc", feed, "live-feed"))
                if lk.children == "explain"]


def test_changes_table_links_every_user_to_the_explanation() -> None:
    rows = pd.DataFrame({schema.USER: ["470", "979"], "change": [0.3, 0.1],
                         "overlap": [7, 9], "top": ["a, b, c", "d, e, f"]})
    div = views.changes_table("nyc", rows, None, "m1")
    explain = [lk.href for lk in _links(div) if lk.children == "explain"]
    assert explain == ["/explain?dataset=nyc&user=470", "/explain?dataset=nyc&user=979"]

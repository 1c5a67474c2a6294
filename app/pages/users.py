"""Users page: a placeholder until the view is built (no charts are faked)."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from app import pagekit

dash.register_page(__name__, path="/users", name="Users", title="Users · TrailScope",
                   order=3)


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    return pagekit.planned_page(
        "Users", "How individual users behave over time.",
        "Per-user timelines, periodicity (hour of day, weekday), favourite places and "
        "categories, and how a user's behaviour drifts.",
        dataset)

"""Map page: a placeholder until the view is built (no charts are faked)."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from app import pagekit

dash.register_page(__name__, path="/map", name="Map", title="Map · TrailScope",
                   order=2)


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    return pagekit.planned_page(
        "Map", "Where behaviour happens.",
        "A map of events and visited places, density by zone and movement paths between "
        "places, filtered by time and behaviour.",
        dataset)

"""Live page: a placeholder until the view is built (no charts are faked)."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from ..views import pagekit

dash.register_page(__name__, path="/live", name="Live", title="Live · TrailScope",
                   order=6)


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    return pagekit.planned_page(
        "Live", "Events as they arrive.",
        "A live feed of incoming events with running counts and the latest "
        "recommendations per user.",
        dataset)

"""Explain page: a placeholder until the view is built (no charts are faked)."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from app import pagekit

dash.register_page(__name__, path="/explain", name="Explain", title="Explain · TrailScope",
                   order=5)


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    return pagekit.planned_page(
        "Explain", "Why a model recommends what it does.",
        "Per-recommendation attributions: which past events, times and places drove each "
        "suggestion.",
        dataset)

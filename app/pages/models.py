"""Models page: a placeholder until the view is built (no charts are faked)."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from app import pagekit

dash.register_page(__name__, path="/models", name="Models", title="Models · TrailScope",
                   order=4)


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    return pagekit.planned_page(
        "Models", "Train and evaluate next-item models.",
        "Train sequence recommenders on this dataset, compare their accuracy (HR@K, "
        "NDCG@K) and manage checkpoints.",
        dataset)

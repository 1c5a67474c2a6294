"""Overview: headline numbers of the selected dataset (trend charts come in a later step)."""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from app import ids, pagekit, services, ui

dash.register_page(__name__, path="/overview", name="Overview", title="Overview · TrailScope",
                   order=1)


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    name, notes = pagekit.resolve(dataset)
    header = ui.page_header("Overview", "Headline numbers of the selected dataset.", name)
    if name is None:
        return html.Div([header, *notes, ui.no_dataset()])
    info = services.dataset_info(name)
    details = html.Dl(className="details", children=[
        html.Dt("Source"), html.Dd(info.source or "–"),
        html.Dt("Format"), html.Dd(info.format or "–"),
        html.Dt("Time span (UTC)"),
        html.Dd(f"{ui.fmt_time(info.time_min)} → {ui.fmt_time(info.time_max)}"),
        html.Dt("Bounding box"),
        html.Dd(ui.fmt_bbox(*info.bbox) if info.bbox else "no coordinates"),
        html.Dt("Imported"), html.Dd(f"{ui.fmt_time(info.imported_at)} UTC"),
    ])
    return html.Div([
        header, *notes,
        html.Div(ui.kpi_row(info), id=ids.OVERVIEW_KPIS),
        ui.card(details, title="Dataset"),
    ])

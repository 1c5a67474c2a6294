"""Presentational pieces the Overview, Map and Users pages share: control rows, graph cards,
the time-range chip, small tables, and ``guarded`` for turning failures into messages.

No callbacks and no data access here (pages call the service modules and pass frames in).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import pandas as pd
from dash import dcc, html

from ...analytics.store import StoreError
from ..services.messages import public_message
from ..services.workspace import ServiceError
from . import charts, ui

T = TypeVar("T")
log = logging.getLogger(__name__)

LOADING_COLOR = "#2563eb"
GRAPH_CONFIG = {"displaylogo": False, "responsive": True,
                "modeBarButtonsToRemove": ["lasso2d", "autoScale2d", "toggleSpikelines"]}


def guarded(what: str, fn: Callable[[], T], fallback: Callable[[str], T]) -> T:
    """``fn()``, or ``fallback(message)`` when it fails; the message says what went wrong.

    Errors the user can act on (bad input, dataset gone) are shown as they are; anything else
    is logged with its traceback and reported as a bug, so a page never breaks half-drawn.
    """
    try:
        return fn()
    except (ServiceError, StoreError, ValueError) as exc:
        return fallback(public_message(f"Cannot show {what}: {exc}"))
    except Exception as exc:  # noqa: BLE001 - the page must keep working; the log has details
        log.exception("computing %s failed", what)
        return fallback(public_message(
            f"Computing {what} failed ({exc}). This is a bug in TrailScope, not in your "
            "data; the server log has the details."))


def error_figure(message: str) -> Any:
    return charts.empty_figure(message)


def graph(graph_id: str, height: int = 340, **kwargs: Any) -> dcc.Loading:
    """A ``dcc.Graph`` inside a loading spinner, with a placeholder height while it loads."""
    return dcc.Loading(
        dcc.Graph(id=graph_id, config=GRAPH_CONFIG, style={"minHeight": f"{height}px"},
                  figure=charts.placeholder_figure("Loading…", height), **kwargs),
        type="dot", color=LOADING_COLOR, delay_show=150)


def segmented(control_id: str, options: Sequence[tuple[str, str]], value: str,
              label: str) -> html.Div:
    """A labelled row of radio buttons styled as a segmented control."""
    return html.Div(className="control", children=[
        html.Span(label, className="control-label"),
        dcc.RadioItems(id=control_id, value=value, className="segmented",
                       inputClassName="segmented-input", labelClassName="segmented-option",
                       options=[{"label": text, "value": v} for v, text in options]),
    ])


def dropdown(control_id: str, options: Sequence[tuple[str, str]], label: str,
             placeholder: str, multi: bool = True, value: Any = None,
             width: str = "240px") -> html.Div:
    return html.Div(className="control", children=[
        html.Span(label, className="control-label"),
        dcc.Dropdown(id=control_id, multi=multi, value=value, placeholder=placeholder,
                     options=[{"label": text, "value": v} for v, text in options],
                     style={"width": width}, className="control-dropdown"),
    ])


def controls(*children: Any) -> html.Div:
    return html.Div(list(children), className="controls")


def hint(text: Any) -> html.P:
    return html.P(text, className="hint")


def fmt_range(start: str | None, end: str | None) -> str:
    """``"2012-06-01 → 2012-08-15 (75 days)"`` of an ISO range."""
    return ui.fmt_span(start, end) if start and end else f"{start or '…'} → {end or '…'}"


def range_link(dataset: str, start: str | None, end: str | None, path: str = "/map") -> str:
    params = [("dataset", dataset)] + [(k, v) for k, v in (("start", start), ("end", end)) if v]
    return f"{path}?{urlencode(params)}"


def range_chip(dataset: str, time_range: dict | None, link_to_map: bool = True,
               idle: str = "") -> Any:
    """The selected time range as a chip (with an "Open on the map" link), or ``idle``."""
    if not time_range:
        return html.Span(idle, className="muted") if idle else ""
    start, end = time_range.get("start"), time_range.get("end")
    parts: list[Any] = [html.Span("Time range", className="chip-label"),
                        html.Strong(fmt_range(start, end))]
    if link_to_map:
        parts.append(dcc.Link("Open on the map →", href=range_link(dataset, start, end),
                              className="chip-link"))
    return html.Span(parts, className="chip")


def table(frame: pd.DataFrame, columns: Sequence[tuple[str, str]],
          formats: dict[str, Callable[[Any], Any]] | None = None,
          numeric: Sequence[str] = (),
          row_class: Callable[[pd.Series], str] | None = None) -> html.Div:
    """A compact HTML table of ``frame``; ``columns`` are (column, header) pairs, ``formats``
    maps a column to a function returning the cell's text or component, ``numeric`` columns
    are right-aligned."""
    formats = formats or {}
    align = {c: "num" if c in numeric else "" for c, _ in columns}
    head = html.Thead(html.Tr([html.Th(h, className=align[c]) for c, h in columns]))
    rows = []
    for _, r in frame.iterrows():
        cells = [html.Td(formats[c](r[c]) if c in formats else str(r[c]), className=align[c])
                 for c, _ in columns]
        rows.append(html.Tr(cells, className=row_class(r) if row_class else ""))
    return html.Div(html.Table([head, html.Tbody(rows)], className="table table-tight"),
                    className="table-wrap")


def num(digits: int = 1, suffix: str = "") -> Callable[[Any], str]:
    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "–"
        return f"{float(v):,.{digits}f}{suffix}"
    return fmt


def stat(label: str, value: Any, sub: Any = None) -> html.Div:
    """A small labelled number (inside cards; larger KPI cards are ``ui.kpi``)."""
    return html.Div(className="stat", children=[
        html.Div(label, className="stat-label"), html.Div(value, className="stat-value"),
        html.Div(sub or "", className="stat-sub")])


def card_head(title: str, subtitle: str | None = None) -> html.Div:
    return html.Div(className="card-head", children=[
        html.H2(title, className="card-title"),
        *([html.P(subtitle, className="card-subtitle")] if subtitle else [])])

"""Small presentational building blocks shared by the pages (no callbacks, no data access).

All text passes through Dash components, which escape it; nothing here renders raw HTML.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dash import dcc, html

from ...analytics.store import DatasetInfo
from ...models.explain.text import count_of as count_of  # the one pluraliser of every text
from ..services.messages import public_message


# -- formatting ----------------------------------------------------------------------------
def fmt_int(n: Any) -> str:
    """``1234567`` -> ``"1,234,567"``; missing values -> ``"–"``."""
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return "–"


def fmt_time(t: Any, seconds: bool = False) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM`` (UTC), ``"–"`` when missing."""
    if t is None or (not isinstance(t, str) and t != t):  # None or NaT/NaN
        return "–"
    try:
        ts = datetime.fromisoformat(str(t))
    except ValueError:
        return str(t)
    return ts.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def fmt_span(t0: Any, t1: Any) -> str:
    """``"1997-09-20 → 1998-04-22 (214 days)"``."""
    if t0 is None or t1 is None or t0 != t0 or t1 != t1:
        return "–"
    try:
        a, b = datetime.fromisoformat(str(t0)), datetime.fromisoformat(str(t1))
    except ValueError:
        return f"{t0} → {t1}"
    days = (b - a).total_seconds() / 86400
    length = f"{days:,.0f} days" if days >= 2 else f"{days * 24:,.1f} hours"
    return f"{a:%Y-%m-%d} → {b:%Y-%m-%d} ({length})"


def fmt_bbox(min_lat: Any, max_lat: Any, min_lon: Any, max_lon: Any) -> str:
    """Bounding box as ``"lat 40.55…40.99, lon −74.27…−73.68"``; ``"no coordinates"``."""
    vals = (min_lat, max_lat, min_lon, max_lon)
    if any(v is None or v != v for v in vals):
        return "no coordinates"
    return f"lat {min_lat:.2f}…{max_lat:.2f}, lon {min_lon:.2f}…{max_lon:.2f}"


# -- components ----------------------------------------------------------------------------
def page_header(title: str, subtitle: str, dataset: str | None = None) -> html.Div:
    badge = [html.Span(["Dataset ", html.Strong(dataset)], className="dataset-badge")] \
        if dataset else []
    return html.Div(className="page-header", children=[
        html.Div([html.H1(title), html.P(subtitle, className="page-subtitle")]),
        *badge,
    ])


def card(children: Any, title: str | None = None, className: str = "",
         **kwargs: Any) -> html.Section:
    head = [html.H2(title, className="card-title")] if title else []
    return html.Section([*head, *(children if isinstance(children, list) else [children])],
                        className=f"card {className}".strip(), **kwargs)


def kpi(label: str, value: str, hint: str | None = None) -> html.Div:
    return html.Div(className="kpi", children=[
        html.Div(label, className="kpi-label"),
        html.Div(value, className="kpi-value"),
        html.Div(hint or "", className="kpi-hint"),
    ])


def kpi_row(info: DatasetInfo) -> html.Div:
    """The four headline cards of a dataset: events, users, items, time span."""
    span = fmt_span(info.time_min, info.time_max)
    dates, _, length = span.partition(" (")
    return html.Div(className="kpi-row", children=[
        kpi("Events", fmt_int(info.rows), f"format: {info.format}"),
        kpi("Users", fmt_int(info.users),
            f"{info.rows / info.users:,.1f} events per user" if info.users else None),
        kpi("Items", fmt_int(info.items), _located_hint(info)),
        kpi("Time span", length.rstrip(")") or "–", dates),
    ])


def _located_hint(info: DatasetInfo) -> str:
    """How many items have coordinates (the import report counts the located ones; reports
    from before that count say only whether there are any)."""
    if not info.has_coordinates:
        return "no coordinates"
    located = (info.report or {}).get("located_items")
    if located is None or located == info.items:
        return "all with coordinates" if located is not None else "with coordinates"
    return f"{fmt_int(located)} with coordinates"


def error_box(title: str, message: str) -> html.Div:
    """A red box for an error a user can fix; ``message`` says what was wrong and what to do
    (absolute server paths in it are shown as file names)."""
    return html.Div(className="alert alert-error", role="alert", children=[
        html.Strong(title), html.Div(public_message(message), className="alert-body")])


def notice(message: Any, kind: str = "info") -> html.Div:
    return html.Div(message, className=f"alert alert-{kind}")


def empty_state(title: str, message: str, link_text: str | None = None,
                href: str | None = None) -> html.Div:
    link = [dcc.Link(link_text, href=href, className="btn btn-primary")] \
        if link_text and href else []
    return html.Div(className="empty-state", children=[
        html.H3(title), html.P(message), *link])


def no_dataset() -> html.Div:
    return empty_state("No dataset yet",
                       "Import an event log (CSV, TSV, Parquet, JSON lines) to start exploring.",
                       "Go to the Data page", "/data")


def dataset_not_found(requested: str, shown: str | None) -> html.Div:
    tail = f" Showing '{shown}' instead." if shown else ""
    return notice(f"There is no dataset named '{requested}'; pick one from the selector "
                  f"at the top or import it on the Data page.{tail}", "warning")

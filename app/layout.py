"""The app shell: top navigation, the shared dataset selector and its URL/Store syncing.

The selected dataset lives in three places kept in step by one callback: the dropdown, a
``dcc.Store`` (ids.DATASET_STORE) that page callbacks read, and the URL (``?dataset=NAME``)
so any view can be linked. Pages also receive ``dataset`` as a layout keyword argument from
Dash's router and resolve it with ``services.resolve_dataset``, which falls back to the
default the same way the shell does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import dash
from dash import Input, Output, ctx, dcc, html, no_update

from .services import workspace as services
from .views import ids


def _options(names: list[str]) -> list[dict[str, str]]:
    return [{"label": n, "value": n} for n in names]


def dataset_from_search(search: str | None) -> str | None:
    """The ``dataset`` parameter of a URL query string such as ``"?dataset=nyc"``."""
    for key, value in parse_qsl((search or "").lstrip("?")):
        if key == "dataset" and value:
            return value
    return None


def search_with_dataset(search: str | None, dataset: str | None) -> str:
    """``search`` with its ``dataset`` parameter set to ``dataset`` (removed if None)."""
    params = [(k, v) for k, v in parse_qsl((search or "").lstrip("?")) if k != "dataset"]
    if dataset:
        params.insert(0, ("dataset", dataset))
    return f"?{urlencode(params)}" if params else ""


def navbar() -> html.Header:
    links = [dcc.Link(label, href=path, id=ids.nav_link(key), className="nav-link")
             for key, label, path in ids.PAGES]
    return html.Header(id=ids.NAVBAR, className="navbar", children=[
        dcc.Link(className="brand", href="/overview", children=[
            html.Img(src=dash.get_asset_url("logo.svg"), alt="", className="brand-logo"),
            html.Span("TrailScope", className="brand-name"),
        ]),
        html.Nav(links, className="nav-links"),
        html.Div(className="dataset-picker", children=[
            html.Label("Dataset", htmlFor=ids.DATASET_DROPDOWN, className="picker-label"),
            dcc.Dropdown(id=ids.DATASET_DROPDOWN, options=[], value=None, clearable=False,
                         searchable=True, placeholder="No datasets yet",
                         className="picker-dropdown"),
        ]),
    ])


def shell_layout() -> html.Div:
    """The whole page: navbar, stores, and Dash's page container (evaluated per page load)."""
    return html.Div(className="shell", children=[
        dcc.Location(id=ids.URL, refresh="callback-nav"),
        dcc.Store(id=ids.DATASET_STORE, storage_type="memory"),
        dcc.Store(id=ids.CATALOG_VERSION, data=0, storage_type="memory"),
        navbar(),
        html.Main(dash.page_container, className="page"),
        html.Footer(className="footer", children=[
            html.Span("TrailScope · spatio-temporal behaviour analytics"),
        ]),
    ])


def register_shell_callbacks(app: dash.Dash) -> None:
    """Callbacks of the shell; registered on ``app`` so every created app gets its own copy."""

    @app.callback(
        Output(ids.DATASET_DROPDOWN, "options"),
        Output(ids.DATASET_DROPDOWN, "value"),
        Output(ids.DATASET_STORE, "data"),
        Output(ids.URL, "search"),
        Input(ids.URL, "search"),
        Input(ids.DATASET_DROPDOWN, "value"),
        Input(ids.CATALOG_VERSION, "data"),
    )
    def sync_dataset(search: str | None, value: str | None,
                     _version: Any) -> tuple[Any, Any, Any, Any]:
        names = services.dataset_names()
        requested = dataset_from_search(search)
        if ctx.triggered_id == ids.DATASET_DROPDOWN and value in names:
            chosen = value
        elif requested in names:
            chosen = requested
        elif ctx.triggered_id == ids.CATALOG_VERSION and value in names:
            chosen = value
        else:
            chosen = services.default_dataset()
        # Rewrite the URL only when the user picked another dataset: not on a plain page load
        # (Back keeps working) and not after an import or drop (that would re-render the page
        # and wipe its report). Nav links follow the Store, so the next page shows `chosen`.
        new_search: Any = no_update
        if ctx.triggered_id == ids.DATASET_DROPDOWN and chosen != requested:
            new_search = search_with_dataset(search, chosen)
        return _options(names), chosen, chosen, new_search

    @app.callback(
        [Output(ids.nav_link(key), "href") for key, _, _ in ids.PAGES],
        [Output(ids.nav_link(key), "className") for key, _, _ in ids.PAGES],
        Input(ids.URL, "pathname"),
        Input(ids.DATASET_STORE, "data"),
    )
    def update_nav(pathname: str | None, dataset: str | None) -> tuple[str, ...]:
        query = search_with_dataset("", dataset)
        hrefs = [path + query for _, _, path in ids.PAGES]
        current = "/overview" if pathname in (None, "", "/") else pathname.rstrip("/")
        classes = ["nav-link active" if path == current else "nav-link"
                   for _, _, path in ids.PAGES]
        return (*hrefs, *classes)

"""Live: what arrives through the HTTP API and Redis Streams, refreshed every few seconds.

Events per minute of arrival over the last hour, the newest located events on a map, a feed
of the latest events, and the recently active users whose top-10 recommendations changed
most, each linked to their Users and Explain views. A ``dcc.Interval`` asks every
REFRESH_MS whether the dataset changed (its stamp, app/services/live.py) and redraws only
then, without reloading the page. Before any event has arrived the page says how to send one.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html, no_update

from ..deckgl import deckmap
from ..services import live as svc
from ..views import analytics as views
from ..views import ids, pagekit, ui
from ..views import live as live_views

dash.register_page(__name__, path="/live", name="Live", title="Live · TrailScope", order=3)

REFRESH_MS = 3000


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    name, notes = pagekit.resolve(dataset)
    header = ui.page_header("Live", "Events as they arrive, refreshed every few seconds.", name)
    if name is None:
        return html.Div([header, *notes, ui.no_dataset()])
    return html.Div([
        header, *notes,
        dcc.Store(id=ids.LIVE_DATASET, data=name),
        dcc.Store(id=ids.LIVE_STAMP, data=None),
        dcc.Interval(id=ids.LIVE_TICK, interval=REFRESH_MS, n_intervals=0),
        html.Div(id=ids.LIVE_KPIS, className="kpi-row"),
        html.Div(id=ids.LIVE_EMPTY),
        html.P(id=ids.LIVE_STATUS, className="hint", **{"aria-live": "polite"}),
        html.Div(className="grid-2", children=[
            ui.card(title="Events per minute, last hour (arrival time)", children=[
                dcc.Graph(id=ids.LIVE_MINUTES, config=views.GRAPH_CONFIG,
                          style={"minHeight": "240px"})]),
            ui.card(title="Newest events", children=[deckmap.DeckMap(ids.LIVE_MAP, height=320)]),
        ]),
        ui.card(title="Latest events", children=[html.Div(id=ids.LIVE_FEED_BOX)]),
        ui.card(title="Whose recommendations changed", children=[
            html.Div(id=ids.LIVE_CHANGES)]),
    ])


@callback(
    Output(ids.LIVE_STAMP, "data"),
    Output(ids.LIVE_KPIS, "children"),
    Output(ids.LIVE_EMPTY, "children"),
    Output(ids.LIVE_MINUTES, "figure"),
    Output(deckmap.spec_id(ids.LIVE_MAP), "data"),
    Output(ids.LIVE_FEED_BOX, "children"),
    Output(ids.LIVE_STATUS, "children"),
    Input(ids.LIVE_TICK, "n_intervals"),
    State(ids.LIVE_DATASET, "data"),
    State(ids.LIVE_STAMP, "data"),
)
def refresh(_tick: int, name: str | None, drawn: str | None) -> tuple[Any, ...]:
    if not name:
        return (no_update,) * 7

    def build() -> tuple[Any, ...]:
        stamp = svc.version(name)
        if stamp == drawn:
            return (no_update,) * 7
        snap = svc.snapshot(name)
        kpis = live_views.kpis(snap.total, snap.last_arrival, snap.rows, name)
        empty = live_views.how_to_send(name, snap.endpoint) if not snap.total else None
        return (stamp, kpis, empty, live_views.minutes_figure(snap.per_minute),
                live_views.map_spec(snap.newest),
                live_views.feed_table(name, snap.feed, ids.LIVE_FEED, known=snap.known,
                                      endpoint=snap.endpoint),
                f"Updated {live_views.when(snap.now)} UTC.")

    def failed(message: str) -> tuple[Any, ...]:
        return (no_update,) * 6 + (ui.notice(message, "error"),)

    return views.guarded("the live events", build, failed)


@callback(
    Output(ids.LIVE_CHANGES, "children"),
    Input(ids.LIVE_STAMP, "data"),
    State(ids.LIVE_DATASET, "data"),
)
def changes(stamp: str | None, name: str | None) -> Any:
    if not name or not stamp:
        return no_update

    def build() -> Any:
        got = svc.top_changes(name)
        return live_views.changes_table(name, got.rows, got.note, got.model_id)

    return views.guarded("whose recommendations changed", build,
                         lambda message: ui.notice(message, "error"))

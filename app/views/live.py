"""The Live page's pieces: the per-minute chart, the map of the newest events, the feed, the
users whose recommendations changed, and the sentence saying how to send events.

Data in (app/services/live.py frames), Dash components or figures out; no data access. The
chart is wrapped by ``plot_safe`` (app/views/plotsafe.py) like every figure builder; the map
goes through app/deckgl like the Map page's.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from ...analytics.schema import BEHAVIOR, CATEGORY, ITEM, LAT, LON, TS, USER
from ..deckgl import deckmap
from . import ui
from .charts import PALETTE, _style, empty_figure
from .plotsafe import plot_safe

MINUTE, EVENTS = "minute", "events"


@plot_safe
def minutes_figure(per_minute: pd.DataFrame) -> go.Figure:
    """Events per minute of arrival over the last hour (bars; an empty hour says so)."""
    if per_minute.empty or not int(per_minute[EVENTS].sum()):
        return empty_figure("No events arrived in the last hour.", height=240)
    fig = go.Figure(go.Bar(x=per_minute[MINUTE].dt.strftime("%Y-%m-%d %H:%M").tolist(),
                           y=per_minute[EVENTS].astype(int).tolist(),  # no int64 typed array
                           marker_color=PALETTE[0],
                           hovertemplate="%{x|%H:%M} UTC: %{y:,} events<extra></extra>"))
    fig.update_xaxes(title_text="arrival time (UTC)")
    fig.update_yaxes(title_text="events per minute", rangemode="tozero")
    return _style(fig, 240, legend=False)


def map_spec(newest: pd.DataFrame) -> dict[str, Any] | None:
    """A deck.gl spec of the newest located events (the newest drawn larger), or None."""
    pts = newest.dropna(subset=[LAT, LON])
    if pts.empty:
        return None
    pts = pts.assign(**{USER: pts[USER].astype(str), ITEM: pts[ITEM].astype(str),
                        "when": pd.to_datetime(pts[TS]).dt.strftime("%Y-%m-%d %H:%M")})
    layers = [deckmap.scatter_layer(pts.iloc[1:], id="live-events", color=(37, 99, 235),
                                    radius_px=4, tooltip="{user_id} at {item_id}, {when}"),
              deckmap.scatter_layer(pts.iloc[:1], id="live-newest", color=(220, 38, 38),
                                    radius_px=9, tooltip="newest: {user_id} at {item_id}, "
                                                         "{when}")]
    return deckmap.deck_spec(layers, deckmap.view_for(pts[LAT], pts[LON], quantile=0.01))


def when(value: Any) -> str:
    """A time to the second (UTC), empty when there is none."""
    return "" if value is None or pd.isna(value) else ui.fmt_time(pd.Timestamp(value), True)


def kpis(total: int, last_arrival: Any, rows: int, dataset: str) -> list[html.Div]:
    """The headline cards: events arrived, the last arrival (its clock named only when there
    is one), events in the dataset."""
    last = when(last_arrival)
    return [ui.kpi("Events arrived", f"{total:,}", "through the API and streams"),
            ui.kpi("Last arrival", last or "none yet", "UTC" if last else None),
            ui.kpi("Events in the dataset", f"{rows:,}", dataset)]


def user_links(dataset: str, user: str, explain: bool = True) -> list[Any]:
    """Links to the user's Users view and, when ``explain`` (the model knows the user), to
    their Explain view (the parameters those pages read)."""
    q = urlencode([("dataset", dataset), ("user", user)])
    link = dcc.Link(user, href=f"/users?{q}", className="live-user")
    if not explain:
        return [link]
    return [link, " · ", dcc.Link("explain", href=f"/explain?{q}", className="live-explain")]


def feed_table(dataset: str, feed: pd.DataFrame, table_id: str,
               known: Collection[str] | None = None,
               endpoint: str | None = None) -> html.Table | html.P:
    """The latest events, newest first: arrival, event time, user (linked), item, category.

    Each user links to their Users view, and to their Explain view only when in ``known``
    (the users the current model knows; None: no one is known to be). With no event yet, a
    sentence saying where to send them (``endpoint``, the API path) instead of bare headers.
    """
    if feed.empty:
        where = (["post some to ", html.Code(endpoint)] if endpoint
                 else ["post some through the HTTP API as shown above"])
        return html.P(["No events have arrived yet: ", *where,
                       " and the newest show here within seconds."],
                      id=table_id, className="live-feed-empty")
    explainable = set(known or ())
    head = html.Tr([html.Th(h) for h in ("Arrived (UTC)", "Event time", "User", "Item",
                                         "Category", "Behaviour")])
    rows = [html.Tr([html.Td(when(r["arrived_at"])), html.Td(when(r[TS])),
                     html.Td(user_links(dataset, str(r[USER]), str(r[USER]) in explainable)),
                     html.Td(str(r[ITEM])),
                     html.Td("" if pd.isna(r[CATEGORY]) else str(r[CATEGORY])),
                     html.Td("" if pd.isna(r[BEHAVIOR]) else str(r[BEHAVIOR]))],
                    className="live-feed-row")
            for _, r in feed.iterrows()]
    return html.Table([html.Thead(head), html.Tbody(rows)], id=table_id,
                      className="table live-feed")


def changes_table(dataset: str, rows: pd.DataFrame, note: str | None,
                  model_id: str | None) -> html.Div:
    """The users whose top-10 changed most (1 - overlap / 10), linked, or the note. Every
    user here got recommendations from the model, so each links to their explanation."""
    out: list[Any] = []
    if model_id:
        out.append(html.P(f"Model {model_id}: each user's top-10 now against the top-10 "
                          "before their latest events.", className="hint"))
    if note:
        out.append(html.P(note, className="live-note"))
    if len(rows):
        head = html.Tr([html.Th(h) for h in ("User", "Changed", "Kept of 10", "Top 3 now")])
        body = [html.Tr([html.Td(user_links(dataset, str(r[USER]))),
                         html.Td(f"{float(r['change']):.0%}"), html.Td(str(int(r["overlap"]))),
                         html.Td(str(r["top"]))]) for _, r in rows.iterrows()]
        out.append(html.Table([html.Thead(head), html.Tbody(body)], className="table"))
    return html.Div(out)


def how_to_send(dataset: str, endpoint: str) -> html.Div:
    """What an empty live table shows: the endpoint and a curl line to send an event."""
    body = ('[{"user_id": "u1", "item_id": "cafe-7", "ts": "2024-05-01T18:00:09Z", '
            '"lat": 52.52, "lon": 13.40}]')
    return ui.card(className="live-empty", title="No events have arrived yet", children=[
        html.P([f"Send events to dataset {dataset} with a POST to ", html.Code(endpoint),
                " (a JSON array of events, or one JSON event per line; each needs user_id, "
                "item_id and ts). They show here within seconds, and on the Overview and the "
                "Map. A server with an API token also needs the header Authorization: Bearer "
                "followed by the token."]),
        html.Pre(f"curl -X POST -H 'Content-Type: application/json' \\\n"
                 f"  --data '{body}' \\\n  http://HOST:PORT{endpoint}",
                 className="live-curl"),
    ])

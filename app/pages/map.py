"""Map: where behaviour happens, and how it moves over time.

Layers (toggled above the map): a heat layer of events replayed over a time window, H3 hexagon
counts, aggregation zones coloured by their trend, movement paths replayed as trips, and
zone-to-zone flows. A slider with Play moves the replay time in the browser (no server round
trip per frame); filters by category, behaviour and user segment re-query DuckDB (memoised).
The time range picked on the Overview trend (``ids.TIME_RANGE``) or given as ``?start=&end=``
limits everything. Datasets without coordinates get an explanation instead of a map.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, State, callback, dcc, html, no_update

from ...analytics.schema import BEHAVIOR, CATEGORY
from ..deckgl import deckmap
from ..services import analytics as svc
from ..services import maps as map_service
from ..views import analytics as views
from ..views import charts, ids, pagekit, ui
from ..views import maps as map_views

dash.register_page(__name__, path="/map", name="Map", title="Map · TrailScope", order=2)

_SEGMENTS = (("all", "All users"), ("light", "Light"), ("medium", "Medium"), ("heavy", "Heavy"))
_LOADING_OVERLAY = {"visibility": "visible", "opacity": 0.55}


def layout(dataset: Any = None, start: Any = None, end: Any = None,
           **_query: Any) -> html.Div:
    name, notes = pagekit.resolve(dataset)
    header = ui.page_header("Map", "Where behaviour happens, and how it moves over time.", name)
    if name is None:
        return html.Div([header, *notes, ui.no_dataset()])
    why_not = map_service.coordinates_note(name)
    if why_not:
        return html.Div([header, *notes, ui.card(className="no-map", children=[
            ui.empty_state("No map for this dataset", why_not, "See its Overview",
                           f"/overview?dataset={name}"),
        ])])
    url_range = None
    if start or end:
        try:
            flt = svc.EventFilter.make(start=_first(start), end=_first(end))
            url_range = {"dataset": name, "start": flt.start, "end": flt.end}
        except svc.ServiceError as exc:
            notes.append(ui.notice(f"Ignoring the time range in the address: {exc}", "warning"))
    cats = svc.top_values(name, CATEGORY, 40)
    behs = svc.top_values(name, BEHAVIOR, 20)
    return html.Div([
        header, *notes,
        dcc.Store(id=ids.MAP_DATASET, data=name),
        dcc.Store(id=ids.TIME_RANGE, storage_type="session"),
        dcc.Store(id=ids.MAP_URL_RANGE, data=url_range),
        ui.card(className="card-filters", children=[
            views.controls(
                html.Div(className="control", children=[
                    html.Span("Layers", className="control-label"),
                    dcc.Checklist(id=ids.MAP_LAYERS, value=list(map_views.DEFAULT_LAYERS),
                                  options=[{"label": t, "value": v}
                                           for v, t in map_views.LAYERS],
                                  className="segmented toggles",
                                  inputClassName="segmented-input",
                                  labelClassName="segmented-option"),
                ]),
                views.segmented(ids.MAP_WINDOW, map_views.WINDOWS, "auto", "Replay window"),
            ),
            views.controls(
                views.dropdown(ids.MAP_CATEGORY, _options(cats), "Category",
                               "All categories" if len(cats) else "No categories",
                               width="300px"),
                views.dropdown(ids.MAP_BEHAVIOR, _options(behs), "Behaviour",
                               "All behaviours", width="220px"),
                views.segmented(ids.MAP_SEGMENT, _SEGMENTS, "all", "User segment"),
            ),
            html.Div(className="range-row", children=[
                html.Div(id=ids.MAP_RANGE_NOTE, className="range-note"),
                html.Button("Clear range", id=ids.MAP_RANGE_CLEAR, n_clicks=0,
                            className="btn btn-small btn-ghost", style={"display": "none"}),
            ]),
        ]),
        ui.card(className="card-map", children=[
            dcc.Loading(deckmap.DeckMap(ids.MAP_DECK, height=560), type="dot",
                        color=views.LOADING_COLOR, overlay_style=_LOADING_OVERLAY,
                        delay_show=150),
            html.Div(id=ids.MAP_REPLAY, className="replay-row"),
            html.Div(id=ids.MAP_SUMMARY, className="map-summary"),
        ]),
        html.Div(className="grid-2 grid-2-wide", children=[
            ui.card([views.card_head("Zone trends", "Visits per complete window of the "
                                     "busiest aggregation zones, coloured by trend."),
                     views.graph(ids.MAP_ZONE_TREND, 300)]),
            ui.card([views.card_head("Zones", "Clusters of visited places (DBSCAN, 100 m), "
                                     "split until none is wider than 1.5 km or holds over 5% "
                                     "of the events unless it is one venue; found on the "
                                     "whole dataset, recounted for the filters. Trend: a "
                                     "Mann-Kendall test on each zone's share of visits over "
                                     "complete windows; change: its Sen line, first to last "
                                     "complete window."),
                     dcc.Loading(html.Div(id=ids.MAP_ZONE_TABLE), type="dot",
                                 color=views.LOADING_COLOR)]),
        ]),
    ])


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _options(values: Any) -> list[tuple[str, str]]:
    return [(str(v), f"{v} ({n:,})") for v, n in zip(values["value"], values["events"],
                                                    strict=True)]


def _active_range(name: str, time_range: Any, url_range: Any) -> dict | None:
    for r in (url_range, time_range):
        if isinstance(r, dict) and r.get("dataset") == name and (r.get("start") or r.get("end")):
            return r
    return None


@callback(
    Output(deckmap.spec_id(ids.MAP_DECK), "data"),
    Output(ids.MAP_REPLAY, "children"),
    Output(ids.MAP_SUMMARY, "children"),
    Output(ids.MAP_RANGE_NOTE, "children"),
    Output(ids.MAP_RANGE_CLEAR, "style"),
    Input(ids.MAP_LAYERS, "value"),
    Input(ids.MAP_WINDOW, "value"),
    Input(ids.MAP_CATEGORY, "value"),
    Input(ids.MAP_BEHAVIOR, "value"),
    Input(ids.MAP_SEGMENT, "value"),
    Input(ids.TIME_RANGE, "data"),
    Input(ids.MAP_URL_RANGE, "data"),
    State(ids.MAP_DATASET, "data"),
)
def draw_map(layers: list[str], window: str, categories: list[str] | None,
             behaviors: list[str] | None, segment: str, time_range: Any, url_range: Any,
             name: str | None) -> tuple[Any, ...]:
    if not name:
        return (no_update,) * 5
    picked = _active_range(name, time_range, url_range)
    chip = views.range_chip(name, picked, link_to_map=False,
                            idle="Whole dataset. Pick a time range on the Overview trend to "
                                 "focus the map.")
    clear_style = {} if picked else {"display": "none"}

    def build() -> tuple[Any, ...]:
        flt = svc.EventFilter.make(start=(picked or {}).get("start"),
                                   end=(picked or {}).get("end"), categories=categories,
                                   behaviors=behaviors, segment=segment)
        m = map_views.map_spec(name, flt, layers or [], window)
        replay = deckmap.replay_controls(ids.MAP_DECK, 0.0, m.span_s, origin=m.origin,
                                         value=m.span_s, interval_ms=200)
        return (m.spec, [html.Span("Time", className="control-label"), replay],
                _summary(m, layers or []), chip, clear_style)

    def failed(message: str) -> tuple[Any, ...]:
        return (None, "", ui.notice(message, "warning"), chip, clear_style)

    return views.guarded("the map", build, failed)


def _summary(m: map_views.MapSpec, layers: list[str]) -> Any:
    c = m.counts
    parts = [f"{c['events']:,} located events"]
    if c["drawn"] < c["events"]:
        parts[0] += f" ({c['drawn']:,} sampled for the heat layer)"
    if "zones" in c:
        parts.append(f"{c['zones']:,} zones holding {c.get('zone_coverage', 0.0):.0%} of "
                     "the located events")
        if c.get("zones_drawn", c["zones"]) < c["zones"]:
            parts[-1] += f" (the {c['zones_drawn']:,} busiest drawn)"

    if "hexagons" in c:
        parts.append(f"{c['hexagons']:,} hexagons")
    if "flows" in c:
        parts.append(f"{c['flows']:,} flows")
    if "paths" in c:
        parts.append(f"{c['paths']:,} trips of {c['path_users']:,} sampled users")
    return html.Div([
        map_views.legend(layers, m.hex_range),
        html.P(" · ".join(parts) + f". Replay shows {m.window_label}; press Play or drag "
               "the slider. Hover a zone, hexagon or flow for details.", className="hint"),
    ])


@callback(
    Output(ids.TIME_RANGE, "data", allow_duplicate=True),
    Output(ids.MAP_URL_RANGE, "data"),
    Input(ids.MAP_RANGE_CLEAR, "n_clicks"),
    prevent_initial_call=True,
)
def clear_range(_n: int) -> tuple[Any, Any]:
    return None, None


@callback(
    Output(ids.MAP_ZONE_TREND, "figure"),
    Output(ids.MAP_ZONE_TABLE, "children"),
    Input(deckmap.status_id(ids.MAP_DECK), "data"),
    Input(ids.MAP_SUMMARY, "children"),
    State(ids.MAP_REPLAY, "children"),
    State(ids.MAP_CATEGORY, "value"),
    State(ids.MAP_BEHAVIOR, "value"),
    State(ids.MAP_SEGMENT, "value"),
    State(ids.TIME_RANGE, "data"),
    State(ids.MAP_URL_RANGE, "data"),
    State(ids.MAP_DATASET, "data"),
)
def draw_zones(status: Any, _summary: Any, replay: Any, categories: list[str] | None,
               behaviors: list[str] | None, segment: str, time_range: Any, url_range: Any,
               name: str | None) -> tuple[Any, Any]:
    # The zones follow the map: they are drawn once the map has drawn its spec for the same
    # filters (or once the map callback found nothing to draw), so the chart's work in the
    # browser and the server never delays the map.
    if not name or not _map_settled(list(dash.ctx.triggered_prop_ids.values()), status,
                                    replay):
        return no_update, no_update
    picked = _active_range(name, time_range, url_range) or {}

    def build() -> tuple[Any, Any]:
        flt = svc.EventFilter.make(start=picked.get("start"), end=picked.get("end"),
                                   categories=categories, behaviors=behaviors, segment=segment)
        z = map_service.zones(name, flt)
        fig = charts.zone_trend_figure(z.zones, z.complete_activity(), window=z.window)
        return fig, _zone_table(z)

    return views.guarded("the zones", build, lambda m: (views.error_figure(m), ""))


def _map_settled(triggers: list[Any], status: Any, replay: Any) -> bool:
    """Whether the map is done for the current filters, given the ids that triggered the
    zones (Dash may deliver both at once): it drew a spec (``status``), or its callback
    answered without one (a summary but no replay controls)."""
    if deckmap.status_id(ids.MAP_DECK) in triggers and isinstance(status, dict) and \
            status.get("spec"):
        return True
    return ids.MAP_SUMMARY in triggers and not replay


def _zone_table(z: map_service.ZoneResult) -> Any:
    if z.zones.empty:
        if z.filtered:
            return views.hint("No zones here: the events these filters keep fall outside the "
                              "dataset's zones. Widen the filters.")
        return views.hint(f"No zones: no group of places reaches {z.min_visits} visits within "
                          f"{z.eps_m:.0f} m by at least 3 users.")
    counts = z.zones["trend"].value_counts()
    top = map_views.zone_labels(z.zones.head(10)).assign(
        change=lambda d: d["rel_change"] * 100,
        test=lambda d: list(zip(d["trend"], d["p_value"], strict=True)))
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("emerging", "stable", "declining"))
    note = (f" Left out of the trend test as partial: {z.partial}." if z.partial else "")
    return html.Div([
        html.P([html.Strong(f"{len(z.zones):,} zones"),
                f" hold {z.coverage:.0%} of the {z.located:,} located events ({summary}); "
                f"trend per {z.window}.{note} Stable: no significant trend (p ≥ 0.05) or a "
                "change under 20%."], className="hint"),
        views.table(top, [("zone_id", "Zone"), ("name", "Name"), ("visits", "Visits"),
                          ("extent_km", "Km"), ("change", "Change"), ("test", "Trend (p)")],
                    formats={"name": _name, "visits": views.num(0), "extent_km": views.num(1),
                             "change": _change, "test": _trend},
                    numeric=("zone_id", "visits", "extent_km", "change")),
    ])


def _name(name: str, width: int = 24) -> html.Span:
    """A zone's name cut to ``width`` characters; the whole name on hover."""
    text = str(name)
    return html.Span(text if len(text) <= width else text[:width - 1] + "…", title=text)


def _trend(test: tuple[str, float]) -> html.Span:
    """A zone's trend label and the p-value of the test it comes from."""
    label, p = test
    return html.Span([html.Span(label, className=f"trend trend-{label}"),
                      f" {p:.3f}" if p == p else ""], style={"whiteSpace": "nowrap"})


def _change(value: Any) -> str:
    """A zone's change in percent; a Sen line that starts at 0 has no relative change."""
    return "new" if value != value else f"{float(value):+,.0f}%"

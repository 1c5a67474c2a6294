"""Users: one user's behaviour over time and space, and the users whose interests changed most.

Pick a user in the searchable dropdown (or link here with ``?user=ID``): their event timeline,
interest drift (the mix per window over categories, or over areas when the data has none, and
its Jensen-Shannon divergence from the previous window, shrunk for small windows, next to the
median user), mobility metrics per window, their movement paths on the map (with
replay), and their churn risk from the dataset's churn model with its backtest. The
"most-changed users" list links back here. Heavy dataset-wide parts are memoised in
app/users_service.py; each panel loads in its own callback behind a spinner.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import pandas as pd
from dash import Input, Output, State, callback, dcc, html, no_update

from ...analytics.schema import CATEGORY, USER
from ..deckgl import deckmap
from ..services import maps as map_service
from ..services import users
from ..views import analytics as views
from ..views import charts, ids, pagekit, ui
from ..views import drift as drift_views
from ..views import maps as map_views

dash.register_page(__name__, path="/users", name="Users", title="Users · TrailScope", order=3)

_OVERLAY = {"visibility": "visible", "opacity": 0.55}


def user_href(dataset: str, user: str) -> str:
    """Link to a user's page: ``/users?dataset=..&user=..``."""
    return "/users?" + urlencode([("dataset", dataset), ("user", user)])


def layout(dataset: Any = None, user: Any = None, **_query: Any) -> html.Div:
    name, notes = pagekit.resolve(dataset)
    header = ui.page_header("Users", "How individual users behave and change over time.", name)
    if name is None:
        return html.Div([header, *notes, ui.no_dataset()])
    requested = user[0] if isinstance(user, list) and user else user
    requested = str(requested) if requested not in (None, "") else None
    top = users.active_users(name)
    chosen = requested if requested and users.user_exists(name, requested) else None
    if requested and chosen is None:
        notes.append(ui.notice(f"There is no user {requested!r} in {name!r}; showing the most "
                               "active user instead. Search for part of an id above.",
                               "warning"))
    chosen = chosen or (str(top[USER].iloc[0]) if len(top) else None)
    options = _options(top, chosen)
    basis = users.drift_basis(name)
    no_map = map_service.coordinates_note(name)
    map_body: Any = (ui.empty_state("No map for this dataset", no_map) if no_map else html.Div([
        dcc.Loading(deckmap.DeckMap(ids.USERS_DECK, height=440, renderer="canvas"), type="dot",
                    color=views.LOADING_COLOR, overlay_style=_OVERLAY, delay_show=150),
        html.Div(id=ids.USERS_MAP_BOX, className="replay-compact"),
    ]))
    return html.Div([
        header, *notes,
        dcc.Store(id=ids.USERS_DATASET, data=name),
        ui.card(className="card-filters", children=[
            views.controls(html.Div(className="control control-wide", children=[
                html.Span("User", className="control-label"),
                dcc.Dropdown(id=ids.USERS_PICK, options=options, value=chosen,
                             clearable=False, searchable=True,
                             placeholder="Type part of a user id…",
                             className="control-dropdown", style={"width": "340px"}),
                html.Span("Most active users are listed; type to search all of them.",
                          className="muted"),
            ])),
            dcc.Loading(html.Div(id=ids.USERS_SUMMARY), type="dot",
                        color=views.LOADING_COLOR),
        ]),
        ui.card([views.card_head("Timeline", "Every event of the user by category; colour "
                                 "shows the behaviour."),
                 views.graph(ids.USERS_TIMELINE, 300)]),
        html.Div(className="grid-2", children=[
            ui.card([views.card_head("Interest drift", "Interest mix per window, and how "
                                     "much it changed from the previous active window."),
                     views.graph(ids.USERS_DRIFT, 360), views.hint(_drift_note(basis.note))]),
            ui.card([views.card_head("Mobility over time", "Activity, distinct places, radius "
                                     "of gyration and distance travelled per window."),
                     views.graph(ids.USERS_MOBILITY, 420)]),
        ]),
        html.Div(className="grid-2", children=[
            ui.card([views.card_head("Paths", "The user's trips (events at most 12 h apart) "
                                     "and visited places; Play replays them."), map_body]),
            ui.card([views.card_head("Churn risk", "Probability of no activity in the next "
                                     "window, from recency and frequency trends."),
                     dcc.Loading(html.Div(id=ids.USERS_CHURN), type="dot",
                                 color=views.LOADING_COLOR)]),
        ]),
        ui.card([views.card_head("Most-changed users", "Highest mean drift between consecutive "
                                 f"windows, over at least {users.DRIFT_MIN_PAIRS} pairs; "
                                 "click a user to open them here."),
                 views.hint(basis.note),
                 dcc.Loading(html.Div(id=ids.USERS_CHANGERS), type="dot",
                             color=views.LOADING_COLOR)]),
    ])


def _drift_note(basis_note: str) -> str:
    """The basis and the rules behind the drift figures, in a sentence or three."""
    return (f"{basis_note} Windows with fewer than {users.DRIFT_MIN_EVENTS} events are not "
            "compared, and each window's mix is shrunk toward the user's overall mix as if "
            f"{users.DRIFT_PRIOR:g} of their usual events were added, so a few events cannot "
            "read as a complete change; the dashed line is the unshrunk drift.")


def _options(frame: pd.DataFrame, keep: str | None) -> list[dict[str, str]]:
    opts = [{"label": f"{u}  ·  {n:,} events", "value": str(u)}
            for u, n in zip(frame[USER], frame["events"], strict=True)]
    if keep and keep not in {o["value"] for o in opts}:
        opts.insert(0, {"label": str(keep), "value": str(keep)})
    return opts


@callback(
    Output(ids.USERS_PICK, "options"),
    Input(ids.USERS_PICK, "search_value"),
    State(ids.USERS_PICK, "value"),
    State(ids.USERS_DATASET, "data"),
    prevent_initial_call=True,
)
def search(text: str | None, value: str | None, name: str | None) -> Any:
    if not name or text is None:
        return no_update
    return views.guarded("the user search", lambda: _options(users.search_users(name, text),
                                                             value), lambda _m: no_update)


# -- one user --------------------------------------------------------------------------------
@callback(
    Output(ids.USERS_SUMMARY, "children"),
    Output(ids.USERS_CHURN, "children"),
    Input(ids.USERS_PICK, "value"),
    State(ids.USERS_DATASET, "data"),
)
def show_summary(user: str | None, name: str | None) -> tuple[Any, Any]:
    if not name or not user:
        return "", ""

    def build() -> tuple[Any, Any]:
        s = users.user_summary(name, user)
        row = html.Div(className="stat-row", children=[
            views.stat("Events", f"{s['events']:,}"),
            views.stat("Distinct items", f"{s['items']:,}"),
            views.stat("Active", ui.fmt_span(s["first"], s["last"]).split(" (")[0],
                       ui.fmt_span(s["first"], s["last"]).partition(" (")[2].rstrip(")")),
            views.stat("Top category", s["top_category"] or "–"),
        ])
        return row, _churn_panel(name, user)

    return views.guarded("this user", build, lambda m: (ui.notice(m, "warning"), ""))


def _churn_panel(name: str, user: str) -> Any:
    res = users.churn(name)
    if res.note:
        return views.hint(res.note)
    mine = res.risk[res.risk[USER].astype(str) == user]
    if mine.empty:
        return views.hint("This user has no events before the scoring time.")
    r = mine.iloc[0]
    risk = float(r["risk"])
    level = "high" if risk >= 0.66 else "medium" if risk >= 0.33 else "low"
    trend = float(r["trend"])
    bt = res.backtest.set_index("model")["roc_auc"]
    auc_model, auc_recency = float(bt.get("logistic", float("nan"))), float(
        bt.get("recency_only", float("nan")))
    test_cut = pd.Timestamp(res.backtest["test_cut"].iloc[0]).strftime("%Y-%m-%d")
    return html.Div([
        html.Div(className="stat-row", children=[
            views.stat("Risk", html.Span(f"{risk:.0%}", className=f"risk risk-{level}"),
                       f"{level} · next {res.window.replace('D', ' days')}"),
            views.stat("Rank", f"#{int(r['rank']):,}", f"of {len(res.risk):,} users"),
            views.stat("Days since last event", f"{float(r['recency_days']):,.1f}"),
            views.stat("Activity trend", f"{trend:+.1f}",
                       "events per window: " + ("more each window" if trend > 0 else
                                                "fewer each window" if trend < 0 else
                                                "steady")),
        ]),
        views.hint([f"Backtest (fit at one cut, scored at {test_cut}): ROC-AUC ",
                    html.Strong(f"{auc_model:.3f}"), " for the model vs ",
                    html.Strong(f"{auc_recency:.3f}"), " for recency alone."]),
    ])


@callback(
    Output(ids.USERS_TIMELINE, "figure"),
    Input(ids.USERS_PICK, "value"),
    State(ids.USERS_DATASET, "data"),
)
def draw_timeline(user: str | None, name: str | None) -> Any:
    if not name or not user:
        return charts.empty_figure("Pick a user above.")
    return views.guarded("the timeline",
                         lambda: charts.timeline_figure(users.user_events(name, user)),
                         views.error_figure)


@callback(
    Output(ids.USERS_DRIFT, "figure"),
    Input(ids.USERS_PICK, "value"),
    State(ids.USERS_DATASET, "data"),
)
def draw_drift(user: str | None, name: str | None) -> Any:
    if not name or not user:
        return charts.empty_figure("Pick a user above.")

    def build() -> Any:
        d = users.user_drift(name, user)
        if d.basis.column is None:
            return charts.empty_figure(d.basis.note)
        return drift_views.drift_figure(d.profiles, d.drift, d.reference, d.freq,
                                        d.basis.column, _labels(d.basis.column,
                                                                d.profiles[d.basis.column]))

    return views.guarded("interest drift", build, views.error_figure)


@callback(
    Output(ids.USERS_MOBILITY, "figure"),
    Input(ids.USERS_PICK, "value"),
    State(ids.USERS_DATASET, "data"),
)
def draw_mobility(user: str | None, name: str | None) -> Any:
    if not name or not user:
        return charts.empty_figure("Pick a user above.")
    return views.guarded(
        "mobility", lambda: charts.mobility_figure(users.user_mobility(name, user),
                                                   users.drift_freq(name)),
        views.error_figure)


@callback(
    Output(deckmap.spec_id(ids.USERS_DECK), "data"),
    Output(ids.USERS_MAP_BOX, "children"),
    Input(ids.USERS_PICK, "value"),
    State(ids.USERS_DATASET, "data"),
)
def draw_user_map(user: str | None, name: str | None) -> tuple[Any, Any]:
    if not name or not user:
        return None, ""

    def build() -> tuple[Any, Any]:
        m = map_views.user_map_spec(name, user, users.user_events(name, user))
        if m is None:
            return None, views.hint("This user's events have no coordinates.")
        replay = deckmap.replay_controls(ids.USERS_DECK, 0.0, m.span_s, origin=m.origin,
                                         value=m.span_s, interval_ms=200)
        return m.spec, html.Div([
            html.Div([html.Span("Time", className="control-label"), replay],
                     className="replay-inner"),
            views.hint(f"{m.counts['trips']:,} trips, {m.counts['places']:,} places; replay "
                       f"shows {m.window_label}.")])

    return views.guarded("the user's map", build,
                         lambda msg: (None, ui.notice(msg, "warning")))


def _labels(column: str, values: pd.Series) -> dict[str, str] | None:
    """Readable names of the zones among ``values`` (None for categories)."""
    return None if column == CATEGORY else users.zone_labels(values.dropna().unique())


# -- most-changed users ----------------------------------------------------------------------
@callback(
    Output(ids.USERS_CHANGERS, "children"),
    Input(ids.USERS_DATASET, "data"),
)
def show_changers(name: str | None) -> Any:
    if not name:
        return ""

    def build() -> Any:
        basis = users.drift_basis(name)
        if basis.column is None:
            return views.hint(basis.note)
        top = users.top_changers(name)
        if top.empty:
            return views.hint(f"No user has {users.DRIFT_MIN_PAIRS + 1} windows with at least "
                              f"{users.DRIFT_MIN_EVENTS} events each to compare.")
        labels = _labels(basis.column, pd.concat([top["gained"], top["lost"]]))
        return drift_views.changers_table(
            top, lambda u: dcc.Link(u, href=user_href(name, u)), labels)

    return views.guarded("the most-changed users", build, lambda m: ui.notice(m, "warning"))

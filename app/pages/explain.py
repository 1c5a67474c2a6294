"""Explain: why a model recommends an item to a user.

``/explain?dataset=..&user=..&model=..``: pick a model and a user, see their top-K, click an
item. Attribution runs in a background thread (app/explain_service.py) while a progress bar
polls it; the result shows the summary, per-event attributions over the timeline, feature
groups, the counterfactual deletion test, the attention heatmap and the events on the map
coloured by attribution. Results are cached per model, user and item. The export card
downloads HTML/PDF reports, one user or a batch.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from ..reports.report import safe_filename
from ..services import explain as svc
from ..services.workspace import ServiceError
from ..views import explain as views
from ..views import pagekit, ui

dash.register_page(__name__, path="/explain", name="Explain", title="Explain · TrailScope",
                   order=5)

log = logging.getLogger(__name__)


def _first(value: Any) -> str | None:
    v = value[0] if isinstance(value, list) and value else value
    return str(v) if v not in (None, "", []) else None


def layout(dataset: Any = None, user: Any = None, model: Any = None, **_query: Any) -> html.Div:
    name, notes = pagekit.resolve(dataset)
    header = ui.page_header("Explain", "Why a model recommends what it does.", name)
    if name is None:
        return html.Div([header, *notes, ui.no_dataset()])
    models = svc.explainable_models(name)
    if not models:
        return html.Div([header, *notes, ui.empty_state(
            "No trained model to explain",
            f"Train a model on {name!r} first (st-transformer, sasrec, gru or a baseline).",
            "Go to Models", f"/models?dataset={name}")])
    wanted = _first(model)
    ids = [m["model_id"] for m in models]
    if wanted and wanted not in ids:
        notes.append(ui.notice(f"There is no current model {wanted!r} for {name!r}; showing "
                               f"{ids[0]} instead.", "warning"))
    chosen_model = wanted if wanted in ids else ids[0]
    users = svc.user_options(name)
    chosen_user = _first(user) or (users[0] if users else None)
    if chosen_user and chosen_user not in users:
        users = [chosen_user, *users]
    return html.Div([
        header, *notes,
        dcc.Store(id=views.DATASET, data=name),
        dcc.Store(id=views.JOB), dcc.Store(id=views.REQUEST),
        dcc.Interval(id=views.TICK, interval=400, disabled=True, n_intervals=0),
        ui.card(className="card-filters", children=html.Div(className="form-row", children=[
            html.Label("Model", htmlFor=views.MODEL, className="form-label"),
            dcc.Dropdown(id=views.MODEL, options=views.model_options(models),
                         value=chosen_model, clearable=False, style={"minWidth": "380px"}),
            html.Label("User", htmlFor=views.USER, className="form-label"),
            dcc.Dropdown(id=views.USER, options=[{"label": u, "value": u} for u in users],
                         value=chosen_user, clearable=False, searchable=True,
                         style={"minWidth": "200px"}),
        ])),
        ui.card(title="Recommendations", children=dcc.Loading(html.Div(id=views.RECS),
                                                             type="dot")),
        html.Div(id=views.PROGRESS, className="progress", style=views.HIDDEN,
                 children=html.Div(id=views.PROGRESS_BAR, className="progress-bar",
                                   style={"width": "0%"})),
        html.Div(id=views.STATUS, className="muted"),
        html.Div(id=views.RESULT),
        views.export_card(),
    ])


@callback(Output(views.RECS, "children"), Input(views.MODEL, "value"),
          Input(views.USER, "value"), State(views.DATASET, "data"))
def show_recommendations(model_id: str | None, user: str | None, name: str | None) -> Any:
    if not (model_id and user and name):
        return ui.notice("Pick a model and a user.")
    try:
        return views.recommendation_list(svc.recommendations(name, user, model_id))
    except ServiceError as exc:
        return ui.error_box("No recommendations", str(exc))


@callback(
    Output(views.JOB, "data"), Output(views.TICK, "disabled"),
    Output(views.PROGRESS, "style"), Output(views.STATUS, "children"),
    Output(views.RESULT, "children", allow_duplicate=True),
    Input({"type": views.REC_BUTTON, "item": ALL}, "n_clicks"),
    State(views.MODEL, "value"), State(views.USER, "value"), State(views.DATASET, "data"),
    prevent_initial_call=True,
)
def start_explaining(clicks: list[int | None], model_id: str, user: str,
                     name: str) -> tuple[Any, ...]:
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not any(c for c in clicks or []) or not (
            ctx.triggered and ctx.triggered[0]["value"]):
        return (no_update,) * 5
    item = str(trigger["item"])
    job = svc.start(name, user, item, model_id)
    request = {"job": job, "dataset": name, "user": user, "item": item, "model_id": model_id}
    return request, False, {}, f"Explaining {item}…", None


@callback(
    Output(views.PROGRESS_BAR, "style"), Output(views.STATUS, "children", allow_duplicate=True),
    Output(views.TICK, "disabled", allow_duplicate=True),
    Output(views.RESULT, "children"), Output(views.REQUEST, "data"),
    Output(views.PROGRESS, "style", allow_duplicate=True),
    Output(views.EXPORT_HTML, "disabled"), Output(views.EXPORT_PDF, "disabled"),
    Input(views.TICK, "n_intervals"), State(views.JOB, "data"), prevent_initial_call=True,
)
def poll(_n: int, job: dict | None) -> tuple[Any, ...]:
    if not job:
        return (no_update,) * 8
    try:
        snap = svc.job(job["job"])
    except ServiceError as exc:
        return {"width": "0%"}, str(exc), True, None, None, views.HIDDEN, True, True
    bar, msg = views.progress(snap["progress"], snap["message"])
    if snap["status"] == "running":
        return bar, msg, False, no_update, no_update, {}, True, True
    if snap["status"] == "error":
        return (bar, "", True, ui.error_box("Could not explain this item", snap["error"]),
                None, views.HIDDEN, True, True)
    ex = svc.cached(job["dataset"], job["model_id"], job["user"], job["item"])
    if ex is None:
        return bar, "The result expired from the cache; click the item again.", True, \
            None, None, views.HIDDEN, True, True
    request = {k: job[k] for k in ("dataset", "user", "item", "model_id")}
    return bar, msg, True, views.result_panels(ex), request, views.HIDDEN, False, False


@callback(
    Output(views.DOWNLOAD, "data"), Output(views.EXPORT_STATUS, "children"),
    Input(views.EXPORT_HTML, "n_clicks"), Input(views.EXPORT_PDF, "n_clicks"),
    State(views.REQUEST, "data"), prevent_initial_call=True,
)
def export_report(_h: int, _p: int, request: dict | None) -> tuple[Any, Any]:
    if not request or not ctx.triggered or not ctx.triggered[0]["value"]:
        return no_update, no_update
    fmt = "pdf" if ctx.triggered_id == views.EXPORT_PDF else "html"
    try:
        data = svc.report_bytes(request["dataset"], request["user"], request["item"],
                                request["model_id"], fmt)
    except (ServiceError, ValueError, OSError) as exc:
        return no_update, ui.error_box("Export failed", str(exc))
    fname = safe_filename(f"{request['dataset']}-{request['user']}-{request['item']}")
    return dcc.send_bytes(data, f"{fname}.{fmt}"), f"{fmt.upper()} report ready."


@callback(
    Output(views.BATCH_DOWNLOAD, "data"), Output(views.BATCH_STATUS, "children"),
    Input(views.BATCH_BUTTON, "n_clicks"), State(views.BATCH_USERS, "value"),
    State(views.BATCH_FORMAT, "value"), State(views.DATASET, "data"),
    State(views.MODEL, "value"), prevent_initial_call=True,
)
def export_batch(n: int, text: str | None, fmt: str, name: str,
                 model_id: str) -> tuple[Any, Any]:
    if not n:
        return no_update, no_update
    try:
        users = svc.parse_users(text)
        data, out = svc.batch_zip(name, users, fmt or "html", model_id)
    except (ServiceError, ValueError, OSError) as exc:
        return no_update, ui.error_box("Batch export failed", str(exc))
    msg = f"{len(out['written'])} report(s) exported"
    if out["failed"]:
        msg += f"; {len(out['failed'])} failed (see failures.txt in the zip)"
    return dcc.send_bytes(data, safe_filename(f"{name}-reports") + ".zip"), msg

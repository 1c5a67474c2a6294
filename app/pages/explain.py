"""Explain: why a model recommends an item to a user.

``/explain?dataset=..&user=..&model=..``: pick a model and a user, see their top-K, click an
item. Attribution runs as a background job (app/services/explain.py on app/services/jobs.py)
while a progress bar polls it; the result shows the summary, per-event attributions over the
timeline, feature groups, the counterfactual deletion test, the attention heatmap and the
events on the map coloured by attribution. Results are memoised per model, user and item
(app/services/cache.py). The export card downloads HTML/PDF reports, one user or a batch.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import dash
from dash import (
    ALL,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
    no_update,
)

from ..deckgl import deckmap
from ..services import explain as svc
from ..services.workspace import ServiceError
from ..views import explain as views
from ..views import ids, pagekit, ui

dash.register_page(__name__, path="/explain", name="Explain", title="Explain · TrailScope",
                   order=5)

log = logging.getLogger(__name__)
#: How often the page asks how an explanation is going (ms). Polls are cheap (the result is
#: drawn in the job and handed out once), so a short interval only cuts the wait after the end.
POLL_MS = 200


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
    model_ids = [m["model_id"] for m in models]
    best = svc.preselected(models) or models[0]
    if wanted and wanted not in model_ids:
        notes.append(ui.notice(f"There is no current model {wanted!r} for {name!r}; showing "
                               f"{best['model_id']} instead.", "warning"))
    chosen_model = wanted if wanted in model_ids else best["model_id"]
    svc.warm(name, chosen_model)
    users = svc.user_options(name, chosen_model)
    chosen_user = _first(user) or (users[0] if users else None)
    if chosen_user and chosen_user not in users:
        users = [chosen_user, *users]
    return html.Div([
        header, *notes,
        dcc.Store(id=ids.EXPLAIN_DATASET, data=name),
        dcc.Store(id=ids.EXPLAIN_JOB), dcc.Store(id=ids.EXPLAIN_REQUEST),
        dcc.Store(id=ids.EXPLAIN_CLICKED),
        dcc.Interval(id=ids.EXPLAIN_TICK, interval=POLL_MS, disabled=True, n_intervals=0),
        ui.card(className="card-filters", children=[html.Div(className="form-row", children=[
            html.Label("Model", htmlFor=ids.EXPLAIN_MODEL, className="form-label"),
            dcc.Dropdown(id=ids.EXPLAIN_MODEL, options=views.model_options(models),
                         value=chosen_model, clearable=False, style={"minWidth": "380px"}),
            html.Label("User", htmlFor=ids.EXPLAIN_USER, className="form-label"),
            dcc.Dropdown(id=ids.EXPLAIN_USER, options=[{"label": u, "value": u} for u in users],
                         value=chosen_user, clearable=False, searchable=True,
                         placeholder="Type part of a user id…", style={"minWidth": "200px"}),
        ]), html.P(views.default_note(best, chosen_model), id=ids.EXPLAIN_DEFAULT_NOTE,
                   className="muted")]),
        ui.card(title="Recommendations", children=dcc.Loading(html.Div(id=ids.EXPLAIN_RECS),
                                                             type="dot")),
        html.Div(id=ids.EXPLAIN_PROGRESS, className="progress", style=views.HIDDEN,
                 children=html.Div(id=ids.EXPLAIN_PROGRESS_BAR, className="progress-bar",
                                   style={"width": "0%"})),
        html.Div(id=ids.EXPLAIN_STATUS, className="muted"),
        html.Div(id=ids.EXPLAIN_RESULT),
        views.preload(),
        views.export_card(),
    ])


@callback(
    Output(ids.EXPLAIN_USER, "options"),
    Input(ids.EXPLAIN_USER, "search_value"), State(ids.EXPLAIN_MODEL, "value"),
    State(ids.EXPLAIN_DATASET, "data"), State(ids.EXPLAIN_USER, "value"),
    prevent_initial_call=True,
)
def search_users(text: str | None, model_id: str | None, name: str | None,
                 current: str | None) -> Any:
    """Typing in the user list searches every user the model knows (the list shows the most
    active ones); the picked user stays in the list."""
    if text is None or not name:
        return no_update
    users = svc.user_options(name, model_id, text)
    if current and current not in users:
        users = [current, *users]
    return [{"label": u, "value": u} for u in users]


@callback(Output(ids.EXPLAIN_RECS, "children"), Input(ids.EXPLAIN_MODEL, "value"),
          Input(ids.EXPLAIN_USER, "value"), State(ids.EXPLAIN_DATASET, "data"))
def show_recommendations(model_id: str | None, user: str | None, name: str | None) -> Any:
    if not (model_id and user and name):
        return ui.notice("Pick a model and a user.")
    try:
        return views.recommendation_list(svc.recommendations(name, user, model_id))
    except ServiceError as exc:
        return ui.error_box("No recommendations", str(exc))


@callback(
    Output(ids.EXPLAIN_JOB, "data"), Output(ids.EXPLAIN_TICK, "disabled"),
    Output(ids.EXPLAIN_PROGRESS, "style"), Output(ids.EXPLAIN_STATUS, "children"),
    Output(ids.EXPLAIN_RESULT, "children", allow_duplicate=True),
    Input({"type": ids.EXPLAIN_REC_BUTTON, "item": ALL}, "n_clicks"),
    State(ids.EXPLAIN_MODEL, "value"), State(ids.EXPLAIN_USER, "value"),
    State(ids.EXPLAIN_DATASET, "data"),
    prevent_initial_call=True,
)
def start_explaining(clicks: list[int | None], model_id: str, user: str,
                     name: str) -> tuple[Any, ...]:
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not any(c for c in clicks or []) or not (
            ctx.triggered and ctx.triggered[0]["value"]):
        return (no_update,) * 5
    item = str(trigger["item"])
    try:
        job = svc.start(name, user, item, model_id)
    except ServiceError as exc:  # too many explanations waiting
        return None, True, views.HIDDEN, "", ui.error_box("Could not explain this item", str(exc))
    request = {"job": job, "dataset": name, "user": user, "item": item, "model_id": model_id}
    return request, False, {}, f"Explaining {item}…", None


@callback(
    Output(ids.EXPLAIN_PROGRESS_BAR, "style"),
    Output(ids.EXPLAIN_STATUS, "children", allow_duplicate=True),
    Output(ids.EXPLAIN_TICK, "disabled", allow_duplicate=True),
    Output(ids.EXPLAIN_RESULT, "children"), Output(ids.EXPLAIN_REQUEST, "data"),
    Output(ids.EXPLAIN_PROGRESS, "style", allow_duplicate=True),
    Output(ids.EXPLAIN_EXPORT_HTML, "disabled"), Output(ids.EXPLAIN_EXPORT_PDF, "disabled"),
    Input(ids.EXPLAIN_TICK, "n_intervals"),
    State(ids.EXPLAIN_JOB, "data"), prevent_initial_call=True,
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
    out = svc.take(job["job"])
    if out is None:  # an earlier poll already handed this result out
        return (no_update, no_update, True) + (no_update,) * 5
    request = {k: job[k] for k in ("dataset", "user", "item", "model_id")}
    request.update(waited=round(snap["waited"], 3),
                   seconds=round(out["explanation"].seconds, 3), map=out["map"])
    return (bar, views.done_text(snap["waited"]), True, out["panels"], request, views.HIDDEN,
            False, False)


# The click's time (browser clock), and once the result is on the page the time since then:
# the wait the user really had (queueing, the job, polling, transfer and drawing). The events
# map gets its spec here, once its store is on the page (a map inserted with its spec inline
# is not drawn, and a callback on the request can run before the new store is there).
clientside_callback(
    """function(clicks) {
        const t = (dash_clientside.callback_context.triggered || [])[0];
        return t && t.value ? Date.now() : dash_clientside.no_update;
    }""",
    Output(ids.EXPLAIN_CLICKED, "data"),
    Input({"type": ids.EXPLAIN_REC_BUTTON, "item": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
clientside_callback(
    """function(request, clicked) {
        if (!request) { return dash_clientside.no_update; }
        const figs = FIGURES;
        const map = () => document.querySelector("#RESULT .trailscope-deckmap[data-drawn]");
        const drawn = () => figs.every(id => document.querySelector("#" + id + " .main-svg"))
            && (!request.map || map());
        const mapBox = () => document.querySelector("#RESULT .trailscope-deckmap");
        let mapSent = !request.map;
        return new Promise(function(resolve) {
            const until = Date.now() + 120000;
            (function check() {
                if (!mapSent && mapBox()) {  // the map's store is on the page: send its spec
                    dash_clientside.set_props(SPEC_ID, {data: request.map});
                    mapSent = true;
                }
                if (!drawn() && Date.now() < until) { setTimeout(check, 25); return; }
                requestAnimationFrame(function() {
                    if (!clicked) { resolve(dash_clientside.no_update); return; }
                    const shown = (Date.now() - clicked) / 1000;
                    resolve("Explained in " + shown.toFixed(2) + " s from your click to the " +
                            "drawn figures and map: " + request.waited.toFixed(2) + " s on " +
                            "the server, " + request.seconds.toFixed(2) + " s of it computing " +
                            "the explanation.");
                });
            })();
        });
    }""".replace("FIGURES", json.dumps([ids.EXPLAIN_FIG_ATTRIBUTION, ids.EXPLAIN_FIG_GROUPS,
                                          ids.EXPLAIN_FIG_COUNTERFACTUAL,
                                          ids.EXPLAIN_FIG_ATTENTION])
                 ).replace("RESULT", ids.EXPLAIN_RESULT).replace(
                     "SPEC_ID", json.dumps(deckmap.spec_id(ids.EXPLAIN_MAP))),
    Output(ids.EXPLAIN_STATUS, "children", allow_duplicate=True),
    Input(ids.EXPLAIN_REQUEST, "data"), State(ids.EXPLAIN_CLICKED, "data"),
    prevent_initial_call=True,
)


@callback(
    Output(ids.EXPLAIN_DOWNLOAD, "data"), Output(ids.EXPLAIN_EXPORT_STATUS, "children"),
    Input(ids.EXPLAIN_EXPORT_HTML, "n_clicks"), Input(ids.EXPLAIN_EXPORT_PDF, "n_clicks"),
    State(ids.EXPLAIN_REQUEST, "data"), prevent_initial_call=True,
)
def export_report(_h: int, _p: int, request: dict | None) -> tuple[Any, Any]:
    if not request or not ctx.triggered or not ctx.triggered[0]["value"]:
        return no_update, no_update
    fmt = "pdf" if ctx.triggered_id == ids.EXPLAIN_EXPORT_PDF else "html"
    try:
        data = svc.report_bytes(request["dataset"], request["user"], request["item"],
                                request["model_id"], fmt)
    except (ServiceError, ValueError, OSError) as exc:
        return no_update, ui.error_box("Export failed", str(exc))
    fname = svc.download_name(request["dataset"], request["user"], request["item"])
    return dcc.send_bytes(data, f"{fname}.{fmt}"), f"{fmt.upper()} report ready."


@callback(
    Output(ids.EXPLAIN_BATCH_JOB, "data"), Output(ids.EXPLAIN_BATCH_POLL, "disabled"),
    Output(ids.EXPLAIN_BATCH_STATUS, "children"), Output(ids.EXPLAIN_BATCH_BUTTON, "disabled"),
    Output(ids.EXPLAIN_BATCH_CANCEL, "disabled"),
    Input(ids.EXPLAIN_BATCH_BUTTON, "n_clicks"), State(ids.EXPLAIN_BATCH_USERS, "value"),
    State(ids.EXPLAIN_BATCH_FORMAT, "value"), State(ids.EXPLAIN_DATASET, "data"),
    State(ids.EXPLAIN_MODEL, "value"), prevent_initial_call=True,
)
def export_batch(n: int, text: str | None, fmt: str, name: str,
                 model_id: str) -> tuple[Any, ...]:
    if not n:
        return (no_update,) * 5
    try:
        job_id = svc.start_batch(name, text, fmt or "html", model_id)
    except ServiceError as exc:
        return None, True, ui.error_box("Batch export failed", str(exc)), False, True
    return job_id, False, "Exporting…", True, False


@callback(
    Output(ids.EXPLAIN_BATCH_CANCEL, "disabled", allow_duplicate=True),
    Output(ids.EXPLAIN_BATCH_STATUS, "children", allow_duplicate=True),
    Input(ids.EXPLAIN_BATCH_CANCEL, "n_clicks"), State(ids.EXPLAIN_BATCH_JOB, "data"),
    prevent_initial_call=True,
)
def cancel_batch(n: int, job_id: str | None) -> tuple[Any, Any]:
    if not n or not job_id:
        return no_update, no_update
    return True, "Cancelling after the current report…" if svc.cancel(job_id) else no_update


@callback(
    Output(ids.EXPLAIN_BATCH_DOWNLOAD, "data"),
    Output(ids.EXPLAIN_BATCH_STATUS, "children", allow_duplicate=True),
    Output(ids.EXPLAIN_BATCH_POLL, "disabled", allow_duplicate=True),
    Output(ids.EXPLAIN_BATCH_BUTTON, "disabled", allow_duplicate=True),
    Output(ids.EXPLAIN_BATCH_CANCEL, "disabled", allow_duplicate=True),
    Input(ids.EXPLAIN_BATCH_POLL, "n_intervals"), State(ids.EXPLAIN_BATCH_JOB, "data"),
    State(ids.EXPLAIN_DATASET, "data"), prevent_initial_call=True,
)
def poll_batch(_n: int, job_id: str | None, name: str | None) -> tuple[Any, ...]:
    if not job_id:
        return no_update, no_update, True, False, True
    try:
        state = svc.batch_state(job_id)
    except ServiceError as exc:
        return no_update, ui.error_box("Batch export failed", str(exc)), True, False, True
    if state["status"] == "running":
        return no_update, no_update if state["cancelling"] else state["message"], False, \
            True, no_update
    if state["status"] == "cancelled":
        return no_update, ui.notice("Batch export cancelled.", "warning"), True, False, True
    if state["status"] == "error":
        return (no_update, ui.error_box("Batch export failed", state["error"]), True, False,
                True)
    msg = f"{ui.count_of(state['written'], 'report')} exported"
    if state["failed"]:
        msg += f"; {state['failed']} failed (see failures.txt in the zip)"
    return (dcc.send_bytes(state["zip"], svc.download_name(name or "", "reports") + ".zip"),
            msg, True, False, True)

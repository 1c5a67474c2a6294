"""Models page: train next-item models in the background, compare them, inspect one.

Training runs as a thread job (app/services/jobs.py, started through app/services/models.py); a
``dcc.Interval`` polls its snapshot for the progress bar, the status line and the live
loss / validation NDCG@10 curve, and is switched off when the job ends, which bumps a version
store that refreshes the comparison table and the model pickers. A page reload finds a still
running job of the dataset and follows it again. Rendering lives in app/views/models.py.
"""

from __future__ import annotations

import logging
from typing import Any

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from ..deckgl import deckmap
from ..services import models as model_service
from ..views import charts, ids, pagekit, ui
from ..views import models as mv

dash.register_page(__name__, path="/models", name="Models", title="Models · TrailScope",
                   order=4)

log = logging.getLogger(__name__)
_HIDDEN = {"display": "none"}
_POLL_MS = 700
_UNEXPECTED = "This is a bug in TrailScope; the server log has the details."
#: Users the recommendation picker lists (most active first); typing searches all of them.
_LISTED = 100


def _field(label: str, control: Any, width: str = "150px") -> html.Div:
    return html.Div([html.Label(label, htmlFor=control.id, className="form-label"), control],
                    style={"display": "flex", "flexDirection": "column", "gap": "4px",
                           "width": width})


def _train_card(choices: list[dict[str, Any]], active: dict[str, Any] | None) -> html.Section:
    names = [c["name"] for c in choices]
    cuda = model_service.cuda_available()
    return ui.card(title="Train a model", children=[
        html.Div(className="form-row", style={"alignItems": "flex-end"}, children=[
            _field("Model", dcc.Dropdown(id=ids.MODELS_MODEL_PICK,
                                         options=mv.model_options(choices),
                                         value="markov" if "markov" in names else names[0],
                                         clearable=False), "260px"),
            _field("Split", dcc.Dropdown(id=ids.MODELS_SPLIT_PICK, clearable=False,
                                         value="leave-last",
                                         options=list(model_service.SPLITS))),
            _field("Epochs", dcc.Input(id=ids.MODELS_EPOCHS, type="number", min=1, max=500, step=1,
                                       value=10, className="text-input",
                                       style={"width": "90px"}), "100px"),
            _field("Max length", dcc.Input(id=ids.MODELS_MAX_LEN, type="number", min=2, max=500,
                                           step=1, value=50, className="text-input",
                                           style={"width": "90px"}), "100px"),
            _field("Hidden size", dcc.Input(id=ids.MODELS_HIDDEN, type="number", min=8, max=1024,
                                            step=8, value=64, className="text-input",
                                            style={"width": "90px"}), "100px"),
            _field("Patience", dcc.Input(id=ids.MODELS_PATIENCE, type="number", min=1, max=1000,
                                         step=1, value=3, className="text-input",
                                         style={"width": "90px"}), "100px"),
            html.Div(_field("Processes", dcc.Input(
                id=ids.MODELS_PROCESSES, type="number", min=1, max=64, step=1, value=1,
                className="text-input", style={"width": "90px"}), "100px"),
                title="Training processes (PyTorch DistributedDataParallel): one GPU each on "
                      "CUDA; the training batch size must divide by it"),
            _field("Device", dcc.RadioItems(
                id=ids.MODELS_DEVICE, value="auto", inline=True, className="checklist",
                options=[{"label": " auto", "value": "auto"}, {"label": " cpu", "value": "cpu"},
                         {"label": " cuda", "value": "cuda", "disabled": not cuda}]), "220px"),
        ]),
        html.P(id=ids.MODELS_SETTINGS_HINT, className="muted"),
        html.Div(className="form-row", children=[
            html.Button("Train", id=ids.MODELS_TRAIN, n_clicks=0, className="btn btn-primary",
                        disabled=active is not None),
            html.Button("Cancel", id=ids.MODELS_CANCEL, n_clicks=0, className="btn btn-danger",
                        disabled=active is None,
                        title="Stop the training; the best epoch so far is kept"),
        ]),
        html.Div(id=ids.MODELS_TRAIN_ERROR),
        html.Div(id=ids.MODELS_PROGRESS, className="progress", style={} if active else _HIDDEN,
                 children=html.Div(id=ids.MODELS_PROGRESS_BAR, className="progress-bar",
                                   style=mv.progress_width(active))),
        html.Div(mv.status_text(active), id=ids.MODELS_STATUS, className="upload-status"),
        html.Div(dcc.Graph(id=ids.MODELS_CURVE, figure=mv.curve_figure(active),
                           config={"displaylogo": False}),
                 id=ids.MODELS_CURVE_WRAP, style={} if active else _HIDDEN),
        html.Div(mv.messages_view(active), id=ids.MODELS_MESSAGES),
        dcc.Store(id=ids.MODELS_JOB_STORE, data=active["id"] if active else None),
        dcc.Interval(id=ids.MODELS_POLL, interval=_POLL_MS, disabled=active is None),
    ])


def _preselect(models: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]], str]:
    """The default model's id, the picker's options and the note saying why."""
    best = model_service.default_row(models)
    best_id = best["model_id"] if best else None
    return best_id, mv.inspect_options(models, best_id), mv.default_note(best)


def _user_options(users: list[dict[str, Any]], keep: str | None = None) -> list[dict[str, str]]:
    """The user picker's options: the first ``_LISTED`` of ``users`` (most active first),
    plus ``keep`` (the picked user) when it is not among them."""
    opts = [{"label": f"{u['user']}  ({u['events']:,} events)", "value": u["user"]}
            for u in users[:_LISTED]]
    if keep and keep not in {o["value"] for o in opts}:
        opts.insert(0, {"label": keep, "value": keep})
    return opts


def _model_users(dataset: str, model_id: str | None,
                 text: str | None = None) -> list[dict[str, Any]]:
    """The first ``_LISTED`` of the model's users whose id contains ``text`` (all when empty),
    most active first (the service searches every user the model knows)."""
    if not model_id:
        return []
    try:
        return model_service.search_model_users(dataset, model_id, text, limit=_LISTED)
    except model_service.user_errors():
        return []


def _knows(dataset: str, model_id: str, user: str | None) -> bool:
    try:
        return model_service.model_knows_user(dataset, model_id, user)
    except model_service.user_errors():
        return False


def _inspect_cards(name: str, models: list[dict[str, Any]], coords: bool) -> list[Any]:
    first, opts, note = _preselect(models)
    # the default model's users come with the page, so its recommendations load at once
    # instead of waiting for a round trip that lists the users first
    users = _model_users(name, first)
    user = users[0]["user"] if users else None
    no_map = (f"Dataset {name!r} has no coordinates (lat/lon), so there is no map of the "
              "user's path and the recommended places; re-import it with latitude/longitude "
              "columns mapped to see one.")
    where = (deckmap.DeckMap(ids.MODELS_MAP, height=420, renderer="canvas") if coords
             else ui.notice(no_map, "info"))
    return [
        ui.card(title="Per-slice quality", children=[
            html.Div(className="form-row", children=[
                _field("Model", dcc.Dropdown(id=ids.MODELS_INSPECT_PICK, options=opts, value=first,
                                             clearable=False,
                                             placeholder="Train a model first"), "420px"),
                _field("Slice by", dcc.Dropdown(
                    id=ids.MODELS_SLICE_KIND, clearable=False, value="hour",
                    options=[{"label": v, "value": k} for k, v in mv.SLICE_KINDS.items()]),
                    "260px"),
                _field("Metric", dcc.Dropdown(
                    id=ids.MODELS_SLICE_METRIC, clearable=False, value="ndcg@10",
                    options=[{"label": v, "value": k} for k, v in mv.SLICE_METRICS.items()])),
            ]),
            html.P(note, id=ids.MODELS_DEFAULT_NOTE, className="muted"),
            dcc.Loading(dcc.Graph(id=ids.MODELS_SLICE_GRAPH, config={"displaylogo": False}),
                        type="dot", color="#2563eb"),
        ]),
        ui.card(title="Top-K recommendations", children=[
            html.P("For the model picked above: the items it would recommend next to a user, "
                   f"from their full history. The {_LISTED} most active users are listed; type "
                   "to search all of them.", className="muted"),
            html.Div(className="form-row", children=[
                _field("User", dcc.Dropdown(id=ids.MODELS_USER_PICK, clearable=False,
                                            options=_user_options(users), value=user,
                                            placeholder="Type part of a user id…"), "300px"),
                _field("K", dcc.Input(id=ids.MODELS_TOPK, type="number", min=1, max=100, step=1,
                                      value=10, debounce=True, className="text-input",
                                      style={"width": "80px"}), "90px"),
            ]),
            html.Div(id=ids.MODELS_RECS_NOTE, className="muted"),
            html.Div(style={"display": "flex", "gap": "18px", "flexWrap": "wrap"}, children=[
                html.Div(dcc.Loading(html.Div(id=ids.MODELS_RECS), type="dot", color="#2563eb"),
                         style={"flex": "1 1 380px", "minWidth": "320px"}),
                html.Div(where, style={"flex": "1 1 460px", "minWidth": "320px"}),
            ]),
        ]),
    ]


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    name, notes = pagekit.resolve(dataset)
    header = ui.page_header("Models", "Train next-item models, compare them and inspect their "
                            "recommendations.", name)
    if name is None:
        return html.Div([header, *notes, ui.no_dataset()])
    try:
        models = model_service.trained_models(name)
    except model_service.user_errors() as exc:
        models = []
        notes.append(ui.error_box("Could not list the trained models", str(exc)))
    active = model_service.active_job(name)
    return html.Div([
        header, *notes,
        dcc.Store(id=ids.MODELS_DATASET, data=name),
        dcc.Store(id=ids.MODELS_VERSION, data=0),
        _train_card(model_service.model_choices(), active),
        ui.card(title="Trained models", children=[
            html.P("Validation NDCG@10 picks the default model (best first); test metrics "
                   "over all items (leave-last or time split as trained) report it. "
                   "HR@K: the next item is in the top K; NDCG@10 and MRR reward ranking it "
                   "high; coverage is the share of items ever recommended; popularity the "
                   "mean training count of recommended items.", className="muted"),
            dcc.Loading(html.Div(mv.comparison_table(models, name, _preselect(models)[0]),
                                 id=ids.MODELS_TABLE), type="dot", color="#2563eb"),
            html.Div(id=ids.MODELS_DELETE_STATUS),
            dcc.ConfirmDialog(id=ids.MODELS_DELETE_CONFIRM),
            dcc.Store(id=ids.MODELS_DELETE_TARGET),
        ]),
        *_inspect_cards(name, models, model_service.has_coordinates(name)),
    ])


# -- training ------------------------------------------------------------------------------
@callback(
    Output(ids.MODELS_HIDDEN, "disabled"), Output(ids.MODELS_HIDDEN, "value"),
    Output(ids.MODELS_EPOCHS, "disabled"),
    Output(ids.MODELS_PATIENCE, "disabled"), Output(ids.MODELS_SETTINGS_HINT, "children"),
    Input(ids.MODELS_MODEL_PICK, "value"),
)
def on_model(model: str | None) -> tuple[Any, ...]:
    choice = next((c for c in model_service.model_choices() if c["name"] == model), None)
    # a model without a hidden size keeps the field's last value, greyed out: an emptied
    # number input reaches the browser as "NaN" (a console warning on every such pick)
    if choice is None:
        return True, no_update, True, True, mv.settings_hint(None)
    hidden = choice["defaults"].get("hidden") if choice["has_hidden"] else no_update
    return (not choice["has_hidden"], hidden, not choice["trainable"],
            not choice["trainable"], mv.settings_hint(choice))


@callback(
    Output(ids.MODELS_JOB_STORE, "data"), Output(ids.MODELS_TRAIN_ERROR, "children"),
    Input(ids.MODELS_TRAIN, "n_clicks"),
    State(ids.MODELS_DATASET, "data"), State(ids.MODELS_MODEL_PICK, "value"),
    State(ids.MODELS_SPLIT_PICK, "value"),
    State(ids.MODELS_EPOCHS, "value"), State(ids.MODELS_MAX_LEN, "value"),
    State(ids.MODELS_HIDDEN, "value"),
    State(ids.MODELS_DEVICE, "value"), State(ids.MODELS_PATIENCE, "value"),
    State(ids.MODELS_PROCESSES, "value"),
    prevent_initial_call=True,
)
def start_training(n_clicks: int, dataset: str | None, model: str | None, split: str,
                   epochs: Any, max_len: Any, hidden: Any, device: str,
                   patience: Any = 3, processes: Any = 1) -> tuple[Any, Any]:
    if not n_clicks:
        return no_update, no_update
    running = model_service.active_job(dataset)
    if running is not None:
        return running["id"], ui.notice(
            f"A training of {running['meta'].get('model')} on this dataset is already running; "
            "wait for it or cancel it first.", "warning")
    try:
        job_id = model_service.start_training(dataset, model, split, epochs, max_len, hidden,
                                              device or "auto", patience=patience,
                                              processes=processes)
    except model_service.user_errors() as exc:
        return no_update, ui.error_box("Cannot start the training", str(exc))
    return job_id, None


@callback(
    Output(ids.MODELS_CANCEL, "disabled", allow_duplicate=True),
    Input(ids.MODELS_CANCEL, "n_clicks"), State(ids.MODELS_JOB_STORE, "data"),
    prevent_initial_call=True,
)
def cancel_training(n_clicks: int, job_id: str | None) -> Any:
    if not n_clicks or not job_id:
        return no_update
    try:
        model_service.cancel_job(job_id)
    except KeyError:
        pass  # the job is gone (server restarted); the next poll says so
    return True


@callback(
    Output(ids.MODELS_PROGRESS, "style"), Output(ids.MODELS_PROGRESS_BAR, "style"),
    Output(ids.MODELS_STATUS, "children"),
    Output(ids.MODELS_CURVE_WRAP, "style"), Output(ids.MODELS_CURVE, "figure"),
    Output(ids.MODELS_MESSAGES, "children"),
    Output(ids.MODELS_POLL, "disabled"),
    Output(ids.MODELS_TRAIN, "disabled"), Output(ids.MODELS_CANCEL, "disabled"),
    Output(ids.MODELS_VERSION, "data"),
    Input(ids.MODELS_POLL, "n_intervals"), Input(ids.MODELS_JOB_STORE, "data"),
    State(ids.MODELS_VERSION, "data"),
    prevent_initial_call=True,
)
def poll(_n: int | None, job_id: str | None, version: int | None) -> tuple[Any, ...]:
    if not job_id:
        return (no_update,) * 10
    try:
        snap = model_service.job_snapshot(job_id)
    except KeyError as exc:
        return (_HIDDEN, no_update, str(exc), _HIDDEN, no_update, None, True, False, True,
                no_update)
    active = bool(snap["active"])
    bump = no_update if active else int(version or 0) + 1
    return ({}, mv.progress_width(snap), mv.status_text(snap), {}, mv.curve_figure(snap),
            mv.messages_view(snap), not active, active,
            not active or bool(snap["cancel_requested"]), bump)


# -- comparison and inspection -------------------------------------------------------------
@callback(
    Output(ids.MODELS_TABLE, "children"), Output(ids.MODELS_INSPECT_PICK, "options"),
    Output(ids.MODELS_INSPECT_PICK, "value"), Output(ids.MODELS_DEFAULT_NOTE, "children"),
    Input(ids.MODELS_VERSION, "data"), State(ids.MODELS_DATASET, "data"),
    State(ids.MODELS_INSPECT_PICK, "value"),
    prevent_initial_call=True,
)
def refresh_models(_version: int, dataset: str | None, current: str | None) -> tuple[Any, ...]:
    if not dataset:
        return no_update, no_update, no_update, no_update
    try:
        models = model_service.trained_models(dataset)
    except model_service.user_errors() as exc:
        return ui.error_box("Could not list the trained models", str(exc)), [], None, ""
    best, opts, note = _preselect(models)
    usable = [o["value"] for o in opts if not o["disabled"]]
    return (mv.comparison_table(models, dataset, best), opts,
            current if current in usable else best, note)


# -- deleting a model ----------------------------------------------------------------------
@callback(
    Output(ids.MODELS_DELETE_CONFIRM, "displayed"), Output(ids.MODELS_DELETE_CONFIRM, "message"),
    Output(ids.MODELS_DELETE_TARGET, "data"),
    Input({"type": ids.MODELS_DELETE, "model": ALL}, "n_clicks"), prevent_initial_call=True,
)
def ask_delete(clicks: list[int | None]) -> tuple[Any, ...]:
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not (ctx.triggered and ctx.triggered[0]["value"]):
        return no_update, no_update, no_update  # the table was redrawn, nobody clicked
    model_id = str(trigger["model"])
    return (True, f"Delete model {model_id}? Its checkpoint file is removed; this cannot be "
            "undone.", model_id)


@callback(
    Output(ids.MODELS_DELETE_STATUS, "children"),
    Output(ids.MODELS_VERSION, "data", allow_duplicate=True),
    Input(ids.MODELS_DELETE_CONFIRM, "submit_n_clicks"),
    State(ids.MODELS_DELETE_TARGET, "data"), State(ids.MODELS_DATASET, "data"),
    State(ids.MODELS_VERSION, "data"), prevent_initial_call=True,
)
def delete_model(n: int | None, model_id: str | None, dataset: str | None,
                 version: int | None) -> tuple[Any, Any]:
    if not n or not model_id or not dataset:
        return no_update, no_update
    try:
        gone = model_service.delete_model(dataset, model_id)
    except model_service.user_errors() as exc:
        return ui.error_box("Could not delete the model", str(exc)), no_update
    return ui.notice(f"Deleted {gone}.", "info"), int(version or 0) + 1


@callback(
    Output(ids.MODELS_SLICE_GRAPH, "figure"),
    Input(ids.MODELS_INSPECT_PICK, "value"), Input(ids.MODELS_SLICE_KIND, "value"),
    Input(ids.MODELS_SLICE_METRIC, "value"), State(ids.MODELS_DATASET, "data"),
)
def draw_slices(model_id: str | None, kind: str, metric: str, dataset: str | None) -> Any:
    if not model_id or not dataset:
        return charts.empty_figure("Train a model first: its test quality per slice appears "
                                   "here.")
    try:
        slices = model_service.model_slices(dataset, model_id)
    except model_service.user_errors():
        slices = {}
    return mv.slice_figure(slices, kind or "hour", metric or "ndcg@10")


@callback(
    Output(ids.MODELS_USER_PICK, "options"), Output(ids.MODELS_USER_PICK, "value"),
    Input(ids.MODELS_INSPECT_PICK, "value"), State(ids.MODELS_DATASET, "data"),
    State(ids.MODELS_USER_PICK, "value"),
    prevent_initial_call=True,  # the layout lists the default model's users
)
def user_options(model_id: str | None, dataset: str | None,
                 current: str | None) -> tuple[Any, Any]:
    if not model_id or not dataset:
        return [], None
    users = _model_users(dataset, model_id)
    keep = current if _knows(dataset, model_id, current) else None
    chosen = keep or (users[0]["user"] if users else None)
    return _user_options(users, chosen), chosen


@callback(
    Output(ids.MODELS_USER_PICK, "options", allow_duplicate=True),
    Input(ids.MODELS_USER_PICK, "search_value"), State(ids.MODELS_INSPECT_PICK, "value"),
    State(ids.MODELS_DATASET, "data"), State(ids.MODELS_USER_PICK, "value"),
    prevent_initial_call=True,
)
def search_users(text: str | None, model_id: str | None, dataset: str | None,
                 current: str | None) -> Any:
    """Typing in the user picker searches every user the model knows: the id typed, then
    ids starting with it, then ids containing it, each most active first."""
    if text is None or not model_id or not dataset:
        return no_update
    found = _model_users(dataset, model_id, text)
    if current and current not in {u["user"] for u in found}:  # keep its label with counts
        found = [u for u in _model_users(dataset, model_id, current)[:1]
                 if u["user"] == current] + found
    return _user_options(found, current)


@callback(
    Output(ids.MODELS_RECS, "children"), Output(ids.MODELS_RECS_NOTE, "children"),
    Output({**deckmap.spec_id(ids.MODELS_MAP), "id": ALL}, "data"),
    Input(ids.MODELS_USER_PICK, "value"), Input(ids.MODELS_TOPK, "value"),
    State(ids.MODELS_INSPECT_PICK, "value"),
    State(ids.MODELS_DATASET, "data"),
)
def show_recs(user: str | None, k: Any, model_id: str | None,
              dataset: str | None) -> tuple[Any, Any, list[Any]]:
    n_maps = len(ctx.outputs_list[2]) if ctx.outputs_list else 0
    empty = [None] * n_maps
    if not dataset or not model_id:
        return (ui.empty_state("No recommendations yet", "Train a model above; its top-K "
                               "items for any user appear here."), None, empty)
    if not user:
        return None, "Pick a user.", empty
    try:
        rec = model_service.recommend(dataset, user, k, model_id)
    except model_service.user_errors() as exc:
        return ui.error_box("Cannot recommend", str(exc)), None, empty
    except Exception:  # shown to the user instead of a silent failed callback
        log.exception("recommend failed for %s / %s / %s", dataset, model_id, user)
        return ui.error_box("Unexpected error", _UNEXPECTED), None, empty
    spec = None
    if n_maps:
        spec = mv.recs_map_spec(rec, model_service.recent_events(dataset, user))
    return (mv.recs_table(rec, with_coords=bool(n_maps)), mv.recs_summary(rec),
            [spec] * n_maps)

"""Data page: the workspace's datasets, and importing a new file (chunked upload -> sniff ->
column mapping -> import job -> import report).

The upload itself runs in the browser (assets/upload.js posts the file in chunks to the routes
in app/services/upload.py) and ends by setting ``ids.UPLOAD_STORE`` to the upload's id; the
callbacks below take it from there. The browser names uploads by id only, never by path. The
import (and its summary build) runs as a background job (app/services/imports.py) that the page
polls, so a long import never holds a request open.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from ...analytics.schema import DATASET_NAME_MAX, LAT, LON
from ..services import imports, upload, writer
from ..services import workspace as services
from ..views import data as data_views
from ..views import ids, pagekit, ui

dash.register_page(__name__, path="/data", name="Data", title="Data · TrailScope", order=0)

_HIDDEN = {"display": "none"}
_POLL_MS = 400
log = logging.getLogger(__name__)
_UNEXPECTED = ("This is a bug in TrailScope, not in your file; the server log has the details. "
               "Try another format or mapping, or import the file with `trailscope import`.")


def _upload_card() -> html.Section:
    return ui.card(title="Import a file", children=[
        html.Div(id=ids.UPLOAD_ZONE, className="dropzone", children=[
            html.Div("⇪", className="dropzone-icon"),
            html.Div([html.Strong("Drop an event log here"), " or click to choose a file"],
                     className="dropzone-text"),
            html.Div("CSV, TSV, JSON lines, Parquet, optionally gzipped: check-ins, clicks, "
                     "purchases, ratings or GPS fixes. Large files are sent in 8 MB chunks.",
                     className="dropzone-hint"),
            html.Div(id=ids.UPLOAD_SLOT, className="upload-slot"),
        ]),
        html.Div(id=ids.UPLOAD_PROGRESS, className="progress", style=_HIDDEN,
                 children=html.Div(id=ids.UPLOAD_PROGRESS_BAR, className="progress-bar",
                                   style={"width": "0%"})),
        html.Div(className="upload-status-row", children=[
            html.Div(id=ids.UPLOAD_STATUS, className="upload-status"),
            html.Button("Cancel upload", id=ids.UPLOAD_CANCEL, className="btn btn-small",
                        style=_HIDDEN),
        ]),
        dcc.Store(id=ids.UPLOAD_STORE),
        html.Div(id=ids.SNIFF_ERROR),
        html.Div(id=ids.SNIFF_PANEL, style=_HIDDEN, className="sniff-panel", children=[
            html.Div(id=ids.SNIFF_SUMMARY),
            html.Div(className="form-row", children=[
                html.Label("Format", htmlFor=ids.FORMAT_DROPDOWN, className="form-label"),
                dcc.Dropdown(id=ids.FORMAT_DROPDOWN, clearable=False,
                             options=data_views.format_options(services.formats()),
                             className="format-dropdown"),
                html.Span("Change it if the guess is wrong; the preview and mapping follow.",
                          className="muted"),
            ]),
            html.H3("Preview"),
            html.Div(id=ids.PREVIEW_TABLE),
            html.H3("Column mapping"),
            html.P("Pick the column of the file that holds each field. Fields marked * are "
                   "required; leave the others empty if the file has no such column.",
                   className="muted"),
            html.Div(id=ids.MAPPING_FORM),
            html.Div(className="form-row", children=[
                html.Button("⇄ Swap latitude and longitude", id=ids.MAP_SWAP_BUTTON,
                            className="btn btn-small", n_clicks=0,
                            title="Exchange the columns mapped to latitude and longitude"),
                html.Span("For a file whose latitude and longitude columns are the wrong way "
                          "round (the importer warns above when they look swapped).",
                          className="muted"),
            ]),
            html.Div(className="form-row import-row", children=[
                html.Label("Dataset name", htmlFor=ids.NAME_INPUT, className="form-label"),
                html.Div(className="name-field", children=[
                    dcc.Input(id=ids.NAME_INPUT, type="text", debounce=False,
                              maxLength=DATASET_NAME_MAX, className="text-input",
                              placeholder="e.g. nyc_checkins"),
                    html.Div(id=ids.NAME_LIMIT, className="name-limit", **{"aria-live": "polite"}),
                ]),
                dcc.Checklist(id=ids.IMPORT_OPTIONS, className="checklist", value=[],
                              options=[{"label": " Replace an existing dataset",
                                        "value": "replace"},
                                       {"label": " Keep duplicate events",
                                        "value": "keep_duplicates"}]),
                html.Button("Import", id=ids.IMPORT_BUTTON, className="btn btn-primary",
                            n_clicks=0),
            ]),
        ]),
        html.Div(id=ids.IMPORT_STATUS, className="upload-status"),
        dcc.Store(id=ids.IMPORT_JOB),
        dcc.Interval(id=ids.IMPORT_POLL, interval=_POLL_MS, disabled=True),
        html.Div(id=ids.IMPORT_RESULT),
    ])


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    selected, notes = pagekit.resolve(dataset)
    return html.Div([
        ui.page_header("Data", "Import event logs and manage the datasets of this workspace.",
                       selected),
        *notes,
        ui.card(title="Datasets", children=[
            html.Div(data_views.datasets_table(services.list_datasets(), selected),
                     id=ids.DATASETS_TABLE),
            html.Div(id=ids.DROP_MESSAGE),
            dcc.ConfirmDialog(id=ids.DROP_CONFIRM),
            dcc.Store(id=ids.DROP_PENDING),
        ]),
        _upload_card(),
    ])


# -- datasets table ------------------------------------------------------------------------
@callback(
    Output(ids.DATASETS_TABLE, "children"),
    Input(ids.CATALOG_VERSION, "data"),
    State(ids.DATASET_STORE, "data"),
    prevent_initial_call=True,
)
def refresh_table(_version: Any, selected: str | None) -> Any:
    return data_views.datasets_table(services.list_datasets(), selected)


@callback(
    Output(ids.DROP_CONFIRM, "displayed"),
    Output(ids.DROP_CONFIRM, "message"),
    Output(ids.DROP_PENDING, "data"),
    Input({"type": ids.DROP_BUTTON, "name": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def ask_drop(_clicks: list[int | None]) -> tuple[Any, Any, Any]:
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not (ctx.triggered and ctx.triggered[0]["value"]):
        return no_update, no_update, no_update  # buttons re-rendered, not clicked
    name = trigger["name"]
    try:
        rows = ui.fmt_int(services.dataset_info(name).rows)
    except KeyError:  # DatasetNotFound: dropped meanwhile (another tab)
        rows = "all"
    return True, (f"Drop dataset '{name}'? This deletes its {rows} events from the "
                  "workspace and cannot be undone."), name


@callback(
    Output(ids.DROP_MESSAGE, "children"),
    Output(ids.CATALOG_VERSION, "data", allow_duplicate=True),
    Input(ids.DROP_CONFIRM, "submit_n_clicks"),
    State(ids.DROP_PENDING, "data"),
    prevent_initial_call=True,
)
def do_drop(_submit: int | None, name: str | None) -> tuple[Any, Any]:
    if not name:
        return no_update, no_update
    try:
        writer.drop_dataset(name)  # behind the appends queued before it
    except services.ServiceError as exc:
        return ui.error_box("Could not drop the dataset", str(exc)), time.time()
    return ui.notice(f"Dropped dataset '{name}'.", "ok"), time.time()


# -- upload -> sniff -----------------------------------------------------------------------
@callback(
    Output(ids.SNIFF_PANEL, "style"),
    Output(ids.SNIFF_ERROR, "children"),
    Output(ids.SNIFF_SUMMARY, "children"),
    Output(ids.PREVIEW_TABLE, "children"),
    Output(ids.MAPPING_FORM, "children"),
    Output(ids.NAME_INPUT, "value"),
    Output(ids.FORMAT_DROPDOWN, "value"),
    Output(ids.IMPORT_RESULT, "children"),
    Input(ids.UPLOAD_STORE, "data"),
    Input(ids.FORMAT_DROPDOWN, "value"),
    State(ids.NAME_INPUT, "value"),
    prevent_initial_call=True,
)
def on_upload(uploaded: dict | None, fmt: str | None, name: str | None) -> tuple[Any, ...]:
    keep = (no_update,) * 8
    if not uploaded:
        return keep
    fresh = ctx.triggered_id == ids.UPLOAD_STORE
    try:
        path = upload.resolve_upload(str(uploaded.get("upload_id", "")))
        sn = services.sniff(path, "auto" if fresh else (fmt or "auto"))
    except (upload.UploadError, services.ServiceError) as exc:
        title = "Upload problem" if isinstance(exc, upload.UploadError) else \
            "Could not read this file"
        # After a format change keep the panel, so the format can be changed back.
        return (_HIDDEN if fresh else {}, ui.error_box(title, str(exc)), None, None, None,
                no_update, no_update, None)
    except Exception:  # shown to the user instead of a silent failed callback
        log.exception("sniffing upload %s failed", uploaded)
        return (_HIDDEN, ui.error_box("Unexpected error while reading the file", _UNEXPECTED),
                None, None, None, no_update, no_update, None)
    filename = path.name
    if fresh or not name:
        name = data_views.suggest_name(filename, services.dataset_names())
    return (
        {},
        None,
        data_views.sniff_summary(sn, filename, int(uploaded.get("size") or path.stat().st_size)),
        data_views.preview_table(sn.preview, sn.mapping),
        data_views.mapping_form([str(c) for c in sn.columns], sn.mapping, sn.format,
                                sn.variant),
        name,
        sn.format,
        None,
    )


@callback(
    Output({"type": ids.MAP_FIELD, "field": LAT}, "value"),
    Output({"type": ids.MAP_FIELD, "field": LON}, "value"),
    Input(ids.MAP_SWAP_BUTTON, "n_clicks"),
    State({"type": ids.MAP_FIELD, "field": LAT}, "value"),
    State({"type": ids.MAP_FIELD, "field": LON}, "value"),
    prevent_initial_call=True,
)
def swap_lat_lon(n_clicks: int | None, lat: str | None, lon: str | None) -> tuple[Any, Any]:
    if not n_clicks:
        return no_update, no_update
    swapped = data_views.swap_lat_lon({LAT: lat, LON: lon})
    return swapped[LAT], swapped[LON]


@callback(
    Output(ids.PREVIEW_TABLE, "children", allow_duplicate=True),
    Input({"type": ids.MAP_FIELD, "field": ALL}, "value"),
    State({"type": ids.MAP_FIELD, "field": ALL}, "id"),
    State(ids.UPLOAD_STORE, "data"),
    State(ids.FORMAT_DROPDOWN, "value"),
    prevent_initial_call=True,
)
def preview_follows_mapping(values: list[Any], field_ids: list[dict], uploaded: dict | None,
                            fmt: str | None) -> Any:
    """The preview's "→ field" headers follow the mapping form (a change or the Swap)."""
    if not uploaded or not field_ids:
        return no_update
    try:
        path = upload.resolve_upload(str(uploaded.get("upload_id", "")))
        sn = services.sniff(path, fmt or "auto")
    except (upload.UploadError, services.ServiceError):
        return no_update  # the sniff panel already says what is wrong
    mapping = {fid["field"]: v for fid, v in zip(field_ids, values, strict=True) if v}
    return data_views.preview_table(sn.preview, mapping)


@callback(
    Output(ids.NAME_LIMIT, "children"),
    Output(ids.NAME_LIMIT, "className"),
    Input(ids.NAME_INPUT, "value"),
)
def name_limit(name: str | None) -> tuple[str, str]:
    return data_views.name_limit_note(name)


# -- import --------------------------------------------------------------------------------
@callback(
    Output(ids.IMPORT_RESULT, "children", allow_duplicate=True),
    Output(ids.IMPORT_JOB, "data"),
    Output(ids.IMPORT_POLL, "disabled"),
    Output(ids.IMPORT_STATUS, "children"),
    Output(ids.IMPORT_BUTTON, "disabled"),
    Input(ids.IMPORT_BUTTON, "n_clicks"),
    State(ids.UPLOAD_STORE, "data"),
    State(ids.FORMAT_DROPDOWN, "value"),
    State({"type": ids.MAP_FIELD, "field": ALL}, "value"),
    State({"type": ids.MAP_FIELD, "field": ALL}, "id"),
    State(ids.NAME_INPUT, "value"),
    State(ids.IMPORT_OPTIONS, "value"),
    prevent_initial_call=True,
)
def do_import(n_clicks: int, uploaded: dict | None, fmt: str | None, values: list[Any],
              field_ids: list[dict], name: str | None,
              options: list[str] | None) -> tuple[Any, ...]:
    if not n_clicks:
        return (no_update,) * 5
    if not uploaded:
        return ui.error_box("Nothing to import", "Upload a file first."), None, True, None, False
    mapping = {fid["field"]: v for fid, v in zip(field_ids, values, strict=True) if v}
    opts = set(options or [])
    try:
        path = upload.resolve_upload(str(uploaded.get("upload_id", "")))
        job_id = imports.start_import(
            path, name or "", fmt or "auto", mapping, replace="replace" in opts,
            keep_duplicates="keep_duplicates" in opts)
    except upload.UploadError as exc:
        return ui.error_box("Upload problem", str(exc)), None, True, None, False
    except services.ServiceError as exc:
        return ui.error_box("Import failed", str(exc)), None, True, None, False
    return None, job_id, False, "Importing…", True


@callback(
    Output(ids.IMPORT_RESULT, "children", allow_duplicate=True),
    Output(ids.IMPORT_STATUS, "children", allow_duplicate=True),
    Output(ids.IMPORT_POLL, "disabled", allow_duplicate=True),
    Output(ids.IMPORT_BUTTON, "disabled", allow_duplicate=True),
    Output(ids.CATALOG_VERSION, "data", allow_duplicate=True),
    Input(ids.IMPORT_POLL, "n_intervals"),
    State(ids.IMPORT_JOB, "data"),
    prevent_initial_call=True,
)
def poll_import(_n: int, job_id: str | None) -> tuple[Any, ...]:
    if not job_id:
        return no_update, no_update, True, False, no_update
    try:
        state = imports.import_state(job_id)
    except services.ServiceError as exc:
        return ui.error_box("Import failed", str(exc)), None, True, False, no_update
    if state["status"] == "running":
        return no_update, state["message"], False, True, no_update
    if state["status"] == "error":
        box = (ui.error_box("Unexpected error while importing", _UNEXPECTED)
               if state["unexpected"] else ui.error_box("Import failed", state["error"]))
        return box, None, True, False, no_update
    return data_views.import_report(state["report"]), None, True, False, time.time()

"""Rendering for the Data page: datasets table, sniff preview, mapping form, import report.

Pure functions from plain data (DataFrames, dicts, the importer's Sniff) to Dash components;
the callbacks in app/pages/data.py call them. Every user-provided string (file contents,
column names, dataset names) goes through Dash components, which escape it.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
from dash import dcc, html

from ...analytics import schema
from ...analytics.ingest.types import FLAG_TEXT, REASON_TEXT
from ..services.upload import fmt_bytes
from . import ids, ui

#: What each canonical field means, shown next to its mapping dropdown.
FIELD_HELP: dict[str, str] = {
    schema.USER: "who acted (required)",
    schema.ITEM: "what: place, product, movie (required)",
    schema.TS: "when: date/time or unix seconds (required)",
    schema.LAT: "latitude, WGS84 degrees",
    schema.LON: "longitude, WGS84 degrees",
    schema.BEHAVIOR: f"pv, cart, buy, rate… (default {schema.DEFAULT_BEHAVIOR})",
    schema.CATEGORY: "item category, venue type, genre",
    schema.VALUE: "rating, amount, dwell time",
    schema.TZ_OFFSET: "minutes east of UTC",
}
#: Friendly names of the importer's formats (analytics.ingest.FORMATS); unknown ones show as is.
FORMAT_LABELS: dict[str, str] = {
    "gowalla": "Gowalla check-in export",
    "tsmc": "Foursquare TSMC check-ins",
    "snap": "SNAP Gowalla / Brightkite",
    "taobao": "Taobao UserBehavior",
    "tianchi": "Tianchi mobile",
    "movielens": "MovieLens ratings",
    "geolife": "GeoLife GPS trajectories",
    "generic": "Generic event table",
}
#: The importer's numbers of a GeoLife import (``extra``), in words.
GEOLIFE_TEXT = ("{fixes_kept:,} GPS fixes grouped into {stay_points:,} stay points at "
                "{places:,} places.")
PREVIEW_ROWS = 8
_CELL_MAX = 48


# -- datasets table ------------------------------------------------------------------------
def datasets_table(df: pd.DataFrame, selected: str | None = None) -> html.Div:
    """The workspace's datasets with their stats and a drop button each."""
    if df.empty:
        return ui.empty_state("No datasets yet",
                              "Upload a file below to create the first dataset.")
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "Name", "Rows", "Users", "Items", "Time span", "Bounding box", "Format",
        "Imported (UTC)", "")]))
    rows = []
    for rec in df.to_dict("records"):
        name = str(rec["name"])
        rows.append(html.Tr(className="selected" if name == selected else None, children=[
            html.Td(dcc.Link(name, href=f"/overview?dataset={name}", className="ds-name")),
            html.Td(ui.fmt_int(rec["rows"]), className="num"),
            html.Td(ui.fmt_int(rec["users"]), className="num"),
            html.Td(ui.fmt_int(rec["items"]), className="num"),
            html.Td(ui.fmt_span(rec["time_min"], rec["time_max"])),
            html.Td(ui.fmt_bbox(rec["min_lat"], rec["max_lat"], rec["min_lon"], rec["max_lon"])),
            html.Td(html.Span(str(rec["format"] or "–"), className="tag")),
            html.Td(ui.fmt_time(rec["imported_at"])),
            html.Td(html.Button("Drop", id={"type": ids.DROP_BUTTON, "name": name},
                                className="btn btn-danger btn-small", n_clicks=0,
                                title=f"Delete dataset {name} and its events")),
        ]))
    return html.Div(html.Table([head, html.Tbody(rows)], className="table"),
                    className="table-wrap")


# -- sniff ---------------------------------------------------------------------------------
def format_options(formats: tuple[str, ...] | list[str]) -> list[dict[str, str]]:
    return [{"label": FORMAT_LABELS.get(f, f), "value": f} for f in formats]


def suggest_name(filename: str, taken: list[str]) -> str:
    """A valid, unused dataset name from an uploaded file name (``u.data`` -> ``u``)."""
    stem = filename.split(".")[0] if not filename.startswith(".") else filename
    stem = re.sub(r"[^A-Za-z0-9_\-]+", "_", stem).strip("_-")[:56] or "dataset"
    if not stem[0].isalnum():
        stem = "d" + stem
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}_{n}", n + 1
    return name


def name_limit_note(name: str | None) -> tuple[str, str]:
    """What the dataset name field says under it, and its class: the characters allowed and
    the length against ``DATASET_NAME_MAX``; at the limit it says so (the field takes no more
    characters, so a longer name typed or pasted was cut there, never silently)."""
    limit = schema.DATASET_NAME_MAX
    text = name or ""
    if not text:
        return f"Letters, digits, '_' and '-'; at most {limit} characters.", "name-limit"
    if len(text) >= limit:
        return (f"{len(text)} of {limit} characters: a dataset name holds at most {limit}, "
                "so anything typed or pasted beyond that was left out. Check the end of the "
                "name.", "name-limit at-limit")
    if not schema.DATASET_NAME_RE.fullmatch(text):
        return (f"{len(text)} of {limit} characters. Use only letters, digits, '_' and '-', "
                "starting with a letter or digit.", "name-limit at-limit")
    return f"{len(text)} of {limit} characters.", "name-limit"


def sniff_summary(sn: Any, filename: str, size: int) -> html.Div:
    """Detected format, delimiter, header and column count of an uploaded file."""
    delim = getattr(sn, "delimiter", None)
    delim_text = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}.get(
        delim, f"“{delim}”" if delim else "–")
    header = getattr(sn, "has_header", None)
    facts = [
        ("File", f"{filename} ({fmt_bytes(size)})"),
        ("Detected format", FORMAT_LABELS.get(str(sn.format), str(sn.format))),
        ("Delimiter", delim_text),
        ("Header row", "yes" if header else ("no" if header is not None else "–")),
        ("Columns", str(len(sn.columns))),
    ]
    notes = [ui.notice(str(n), "info") for n in (getattr(sn, "notes", None) or [])]
    warnings = [ui.notice(str(w), "warning") for w in (getattr(sn, "warnings", None) or [])]
    return html.Div([html.Div(className="facts", children=[
        html.Div([html.Span(k, className="fact-label"), html.Span(v, className="fact-value")],
                 className="fact")
        for k, v in facts]), *warnings, *notes])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value)
    return text if len(text) <= _CELL_MAX else text[: _CELL_MAX - 1] + "…"


def preview_table(preview: pd.DataFrame, mapping: dict[str, str]) -> html.Div:
    """First rows of the file; each header shows the canonical field it is mapped to."""
    mapped = {src: canon for canon, src in (mapping or {}).items() if src}
    cols = [str(c) for c in preview.columns]
    head = html.Thead(html.Tr([html.Th([html.Div(c), html.Div(
        f"→ {mapped[c]}" if c in mapped else "not used",
        className="maps-to" if c in mapped else "maps-to unused")]) for c in cols]))
    body = html.Tbody([html.Tr([html.Td(_cell(v)) for v in row])
                       for row in preview.head(PREVIEW_ROWS).itertuples(index=False)])
    return html.Div(html.Table([head, body], className="table table-compact"),
                    className="table-wrap scroll-x")  # a file's columns: meant to scroll


def swap_lat_lon(mapping: dict[str, str | None]) -> dict[str, str | None]:
    """The mapping with the latitude and longitude columns exchanged (the Swap button)."""
    out = dict(mapping)
    out[schema.LAT], out[schema.LON] = mapping.get(schema.LON), mapping.get(schema.LAT)
    return out


#: Fields a format's import fills by itself, so no column is mapped to them: what the empty
#: dropdown says and the help under it, by (format, variant); variant "" = every variant.
FILLED_BY_FORMAT: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("geolife", ""): {schema.ITEM: (
        "— from stay points —",
        "filled by the import: each place where the GPS fixes stay a while is an item")},
    ("geolife", "plt"): {schema.USER: (
        "— from the folder name —",
        "filled by the import: the user's folder above Trajectory (Data/000/Trajectory)")},
}


def filled_fields(fmt: str | None, variant: str | None = None) -> dict[str, tuple[str, str]]:
    """The fields the import of format ``fmt`` (``variant``) fills without a column:
    field -> (what the empty dropdown says, the help under it)."""
    return {**FILLED_BY_FORMAT.get((fmt or "", ""), {}),
            **FILLED_BY_FORMAT.get((fmt or "", variant or ""), {})}


def mapping_form(columns: list[str], mapping: dict[str, str], fmt: str | None = None,
                 variant: str | None = None) -> html.Div:
    """One dropdown per canonical field, pre-filled with the importer's guesses. A field the
    import of ``fmt`` fills by itself (GeoLife's items come from stay points) says so instead
    of "not in file", without the required mark."""
    options = [{"label": str(c), "value": str(c)} for c in columns]
    filled = filled_fields(fmt, variant)
    fields = []
    for field in schema.COLUMNS:
        guess = (mapping or {}).get(field)
        value = guess if guess in {o["value"] for o in options} else None
        placeholder, help_text = "— not in file —", FIELD_HELP.get(field, "")
        if field in filled and value is None:
            placeholder, help_text = filled[field]
        required = field in schema.REQUIRED and not (field in filled and value is None)
        fields.append(html.Div(className="map-field", children=[
            html.Label([html.Code(field), html.Span(" *", className="req") if required else None],
                       className="map-label"),
            dcc.Dropdown(id={"type": ids.MAP_FIELD, "field": field}, options=options,
                         value=value, placeholder=placeholder, clearable=True),
            html.Div(help_text, className="map-help"),
        ]))
    return html.Div(fields, className="map-grid")


# -- import report -------------------------------------------------------------------------
def _examples_for(examples: Any, reason: str) -> str:
    """Example line numbers of one rejection reason, whatever shape the report gives them."""
    if isinstance(examples, dict):
        found = examples.get(reason, [])
    elif isinstance(examples, list):
        found = [e.get("line", e) for e in examples
                 if isinstance(e, dict) and e.get("reason") == reason]
    else:
        found = []
    if isinstance(found, (int, str)):
        found = [found]
    items = [str(e.get("line", e)) if isinstance(e, dict) else str(e) for e in found][:8]
    return ", ".join(items) if items else "–"


def _reason_row(reason: str, count: Any, examples: Any) -> html.Tr:
    return html.Tr([
        html.Td([html.Code(reason), " ",
                 html.Span(REASON_TEXT.get(reason, ""), className="muted")]),
        html.Td(ui.fmt_int(count), className="num"),
        html.Td(_examples_for(examples, reason), className="examples"),
    ])


def import_report(report: dict[str, Any]) -> html.Div:
    """The importer's report: kept/rejected counts, reasons with example lines, flags, span."""
    name = str(report.get("name", ""))
    read, kept = report.get("rows_read"), report.get("rows_kept")
    rejected = report.get("rows_rejected", 0) or 0
    reasons = report.get("rejected_by_reason") or {}
    flags = report.get("flags") or {}
    dates, _, length = ui.fmt_span(report.get("time_min"), report.get("time_max")).partition(" (")
    if isinstance(flags, dict):
        # location_dropped is said in the report's notes, with what "invalid" means
        flags = [f"{ui.fmt_int(n)} {FLAG_TEXT[k]} (kept; check them)"
                 for k, n in flags.items() if n and k in FLAG_TEXT]
    blocks: list[Any] = [
        html.Div(className="report-head", children=[
            html.H3(["Imported ", html.Span(name, className="report-name")]),
            dcc.Link("Open in Overview →", href=f"/overview?dataset={name}",
                     className="btn btn-primary"),
        ]),
        html.Div(className="kpi-row", children=[
            ui.kpi("Rows read", ui.fmt_int(read)),
            html.Div(ui.kpi("Rows kept", ui.fmt_int(kept)), className="report-kept"),
            html.Div(ui.kpi("Rows rejected", ui.fmt_int(rejected)), className="report-rejected"),
            ui.kpi("Users", ui.fmt_int(report.get("users"))),
            ui.kpi("Items", ui.fmt_int(report.get("items"))),
            ui.kpi("Time span", length.rstrip(")") or "–", dates),
        ]),
    ]
    reasons = {r: n for r, n in reasons.items() if n}
    if reasons:
        examples = report.get("examples") or {}
        blocks.append(html.H4("Rejected rows by reason"))
        blocks.append(html.Table(className="table table-compact", children=[
            html.Thead(html.Tr([html.Th("Reason"), html.Th("Rows"),
                                html.Th("Example line numbers")])),
            html.Tbody([_reason_row(str(r), n, examples) for r, n in reasons.items()]),
        ]))
    warnings = [str(w) for w in report.get("warnings") or []]
    if warnings:
        blocks.append(html.Div([ui.notice(w, "warning") for w in warnings],
                               className="report-warnings"))
    notes = [*flags, *report_notes(report)]
    if notes:
        blocks.append(html.H4("Notes from the importer"))
        blocks.append(html.Ul([html.Li(str(f)) for f in notes], className="flags"))
    return html.Div(blocks, className="report alert-ok-border")


def report_notes(report: dict[str, Any]) -> list[str]:
    """The report's notes in sentences: how the file was read, what was kept, the located
    events and items, GeoLife's stay points. Never the raw ``extra`` data (lists, keys)."""
    extra = report.get("extra") if isinstance(report.get("extra"), dict) else {}
    notes = [str(n) for n in report.get("notes") or extra.get("notes") or []]
    if all(k in extra for k in ("fixes_kept", "stay_points", "places")):
        notes.append(GEOLIFE_TEXT.format(**extra))
    located, items = report.get("located_rows"), report.get("located_items")
    if located and items is not None and located != report.get("rows_kept"):
        notes.append(f"{ui.fmt_int(located)} of the events have coordinates, at "
                     f"{ui.fmt_int(items)} items.")
    return notes

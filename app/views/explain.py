"""Components of the Explain page: the recommendation list, progress, the result panels and
the export card (component ids: app/views/ids.py). Text goes through Dash components
(escaped); figures come from explain_figures.py (which escapes user strings for plotly).
"""

from __future__ import annotations

from typing import Any

from dash import dash_table, dcc, html

from ...models.explain.text import deletion_rows
from ..deckgl import deckmap
from . import ids, ui
from .charts import empty_figure
from .explain_figures import (
    attention_figure,
    attribution_figure,
    counterfactual_figure,
    events_map_spec,
    groups_figure,
)

HIDDEN = {"display": "none"}
_GRAPH = {"displaylogo": False}


def model_options(models: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for m in models:
        val, test = m.get("val_ndcg@10"), m.get("ndcg@10")
        score = (f", validation NDCG@10 {val:.3f}" if isinstance(val, float) else "") + (
            f", test {test:.3f}" if isinstance(test, float) else "")
        flag = " (cancelled training)" if m.get("cancelled") else ""
        out.append({"label": f"{m['model']} · {m['model_id']}{score}{flag}",
                    "value": m["model_id"]})
    return out


def default_note(best: dict[str, Any] | None, chosen: str | None) -> str:
    """Why the page opened with its model: the best validation NDCG@10 (or the link asked
    for another one)."""
    if not best:
        return ""
    if chosen != best["model_id"]:
        return (f"Showing {chosen}, as the link asked; the default would be "
                f"{best['model_id']}.")
    val = best.get("val_ndcg@10")
    why = (f"best validation NDCG@10: {val:.3f}" if isinstance(val, float)
           else "no model has a validation score; the newest is shown")
    if best.get("cancelled"):
        why += "; its training was cancelled, and no finished model is there"
    return f"Preselected {best['model']} · {best['model_id']} ({why})."


def warm_figures() -> None:
    """Build one styled figure, so plotly's validators and the page template are loaded (the
    first figure of a process costs about a second more than later ones)."""
    empty_figure("")


def preload() -> html.Div:
    """A hidden, empty graph, so the browser loads dcc.Graph's own code (its async-graph.js
    chunk, fetched when a page first shows a graph) while the user picks an item, not after
    the first explanation arrived. plotly.js itself starts loading with the shell
    (assets/plotlyjs.js). Timed with ``bench.explain_bench --browser --compare-preload``:
    without it the first explanation was not faster (median 1.12x and 1.14x the time with it
    in two runs at load 7-9, within the noise there; bench/results/
    explain-preload-2026-12-06-s8.txt), so it stays. (The events map is drawn on a canvas,
    without deck.gl.)"""
    return html.Div([dcc.Graph(figure={"data": [], "layout": {}}, config={"staticPlot": True},
                               style={"height": "1px"})],
                    style={"height": "1px", "overflow": "hidden", "visibility": "hidden"},
                    **{"aria-hidden": "true"})


def done_text(waited: float) -> str:
    """The status line once the result arrives (the page replaces it with the time from the
    click, measured in the browser)."""
    return f"Explained in {waited:.2f} s (from the request to the result on the server)."


def recommendation_list(recs: dict[str, Any], chosen: str | None = None) -> html.Div:
    """Top-K as buttons; clicking one explains it."""
    items = recs.get("items", [])
    if not items:
        return ui.notice("This model recommends nothing to this user.", "warning")
    rows = []
    for rank, it in enumerate(items, 1):
        cls = "explain-rec-item" + (" is-chosen" if str(it["item_id"]) == chosen else "")
        rows.append(html.Button(
            [html.Span(f"{rank}.", className="explain-rec-rank"),
             html.Strong(str(it["item_id"])),
             html.Span(f" {it.get('category') or ''}", className="muted"),
             html.Span(f"{it['score']:.4f}", className="explain-rec-score")],
            id={"type": ids.EXPLAIN_REC_BUTTON, "item": str(it["item_id"])}, n_clicks=0,
            className=cls,
            title=f"Explain why {it['item_id']} is recommended"))
    return html.Div([
        html.P(f"Top {len(items)} from {recs['model']} for user {recs['user']} "
               f"({recs['history_used']} recent events used). Click an item to explain it.",
               className="muted"),
        html.Div(rows, className="explain-rec-list")])


def progress(fraction: float, message: str) -> tuple[dict, str]:
    return {"width": f"{max(0.0, min(1.0, fraction)) * 100:.0f}%"}, message


def map_spec(ex: Any) -> dict | None:
    """The deck.gl spec of the explanation's events map (None: no event has coordinates)."""
    return events_map_spec(ex)


def result_panels(ex: Any, spec: dict | None) -> html.Div:
    """Every view of one explanation. The map is drawn empty: the page sends ``spec`` to
    its spec store afterwards (a map inserted with its spec inline is not drawn)."""
    facts = (f"{ex.method}" + (f", {ex.n_steps} integration steps" if ex.n_steps else "")
             + f" · score {ex.score:.4f} · baseline {ex.baseline_score:.4f} · convergence "
             f"delta {ex.delta:.2e} · {ex.seconds:.2f} s")
    cf_rows = [{"history": label, "rank": round(rank, 1) if isinstance(rank, float) else rank}
               for label, rank, _score in deletion_rows(ex)]
    return html.Div([
        ui.card(title=f"Why {ex.item_id}?", children=[
            html.P(ex.summary, id=ids.EXPLAIN_SUMMARY, className="explain-summary"),
            html.P(facts, className="muted")]),
        ui.card(title="Per-event attribution over the timeline", children=[
            dcc.Graph(id=ids.EXPLAIN_FIG_ATTRIBUTION, figure=attribution_figure(ex),
                      config=_GRAPH)]),
        html.Div(className="grid-2", children=[
            ui.card(title="Feature groups", children=[
                dcc.Graph(id=ids.EXPLAIN_FIG_GROUPS, figure=groups_figure(ex), config=_GRAPH)]),
            ui.card(title="Counterfactual: deleting events", children=[
                dcc.Graph(id=ids.EXPLAIN_FIG_COUNTERFACTUAL, figure=counterfactual_figure(ex),
                          config=_GRAPH),
                dash_table.DataTable(
                    data=cf_rows, columns=[{"name": "History", "id": "history"},
                                           {"name": "Rank of the item", "id": "rank"}],
                    style_cell={"fontFamily": "inherit", "padding": "4px 8px"},
                    style_cell_conditional=[{"if": {"column_id": "history"},
                                             "textAlign": "left"}],
                    style_header={"fontWeight": 600})
                if cf_rows else html.Div()]),
        ]),
        ui.card(title="Attention of the scoring position", children=[
            dcc.Graph(id=ids.EXPLAIN_FIG_ATTENTION, figure=attention_figure(ex), config=_GRAPH)]),
        ui.card(title="Events on the map, coloured by attribution", children=[
            deckmap.DeckMap(ids.EXPLAIN_MAP, height=420, renderer="canvas") if spec is not None else
            ui.empty_state("No map", "None of these events has coordinates.")]),
    ])


def export_card() -> html.Section:
    return ui.card(title="Export", children=[
        html.P("A report holds provenance, the user's behaviour evolution, the "
               "recommendations and every view above. HTML opens offline; PDF is printed "
               "by Chromium.", className="muted"),
        html.Div(className="form-row", children=[
            html.Button("Export HTML report", id=ids.EXPLAIN_EXPORT_HTML, n_clicks=0,
                        className="btn", disabled=True),
            html.Button("Export PDF report", id=ids.EXPLAIN_EXPORT_PDF, n_clicks=0,
                        className="btn", disabled=True),
            dcc.Loading(html.Span(id=ids.EXPLAIN_EXPORT_STATUS), type="dot"),
        ]),
        dcc.Download(id=ids.EXPLAIN_DOWNLOAD),
        html.H3("Batch export"),
        html.P("Reports for a list of users (one per line or comma-separated), each "
               "explaining its top recommendation, as one zip.", className="muted"),
        dcc.Textarea(id=ids.EXPLAIN_BATCH_USERS, placeholder="user ids", className="text-input",
                     style={"width": "100%", "height": "80px"}),
        html.Div(className="form-row", children=[
            dcc.RadioItems(id=ids.EXPLAIN_BATCH_FORMAT, value="html", inline=True,
                           options=[{"label": " HTML ", "value": "html"},
                                    {"label": " PDF ", "value": "pdf"}]),
            html.Button("Export batch", id=ids.EXPLAIN_BATCH_BUTTON, n_clicks=0, className="btn"),
            html.Button("Cancel", id=ids.EXPLAIN_BATCH_CANCEL, n_clicks=0, className="btn",
                        disabled=True, title="Stop after the report being written"),
            html.Span(id=ids.EXPLAIN_BATCH_STATUS),
        ]),
        dcc.Download(id=ids.EXPLAIN_BATCH_DOWNLOAD),
        dcc.Store(id=ids.EXPLAIN_BATCH_JOB),
        dcc.Interval(id=ids.EXPLAIN_BATCH_POLL, interval=500, disabled=True),
    ])

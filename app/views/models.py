"""Rendering for the Models page: training progress, curves, comparison table, per-slice
charts, recommendation table and map spec (component ids: app/views/ids.py).

Pure functions from plain data (job snapshots of app/services/jobs.py, rows of
models.api.list_models / evaluate / recommend, event frames) to Dash components, plotly figures
and deck.gl specs; the callbacks in app/pages/models.py call them. User strings only reach the
page through Dash components (escaped), figures wrapped in ``plot_safe`` (app/views/plotsafe.py)
or deck.gl text tooltips (shown with innerText).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import html

from ...analytics import schema
from ..deckgl import deckmap
from ..services.messages import public_message
from . import charts, ids, ui
from .plotsafe import plot_safe

#: Comparison table: (column key, header).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("hr@1", "HR@1"), ("hr@5", "HR@5"), ("hr@10", "HR@10"), ("hr@20", "HR@20"),
    ("ndcg@10", "NDCG@10"), ("mrr", "MRR"), ("coverage@10", "Coverage@10"),
    ("popularity@10", "Popularity@10"))
SLICE_KINDS: dict[str, str] = {"hour": "Hour of day", "weekday": "Weekday",
                               "activity": "User activity (training events)",
                               "cold": "Cold vs warm users"}
SLICE_METRICS: dict[str, str] = {"ndcg@10": "NDCG@10", "hr@10": "HR@10", "hr@1": "HR@1",
                                 "mrr": "MRR"}
PHASES = {"queued": "Waiting for another training to finish", "data": "Preparing the data",
          "pretrain": "Pre-training", "train": "Training", "valid": "Validating",
          "evaluate": "Evaluating the best epoch", "done": "Evaluating on the test part"}
_ACCENT, _ORANGE, _MUTED = "#2563eb", "#ea580c", "#64748b"


def _layout(fig: go.Figure, height: int = 300, **kw: Any) -> go.Figure:
    fig.update_layout(template=charts.TEMPLATE, height=height,
                      margin={"l": 56, "r": 56, "t": 30, "b": 44},
                      font={"family": "Inter, system-ui, sans-serif", "size": 12},
                      legend={"orientation": "h", "y": 1.12, "x": 0}, **kw)
    return fig


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{float(x):.{digits}f}"


# -- settings ------------------------------------------------------------------------------
def model_options(choices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dropdown options for the registry's models."""
    return [{"label": f"{c['name']} ({'neural' if c['trainable'] else 'count baseline'})",
             "value": c["name"]} for c in choices]


def settings_hint(choice: dict[str, Any] | None) -> str:
    """One line on what the chosen model's settings mean."""
    if choice is None:
        return "Pick a model."
    if not choice["trainable"]:
        return (f"{choice['name']} counts the training data in one pass: epochs and hidden "
                "size do not apply; it trains in seconds.")
    text = f"{choice['name']} trains by gradient descent with early stopping on validation " \
           "NDCG@10 (Patience: epochs without improvement before it stops); Cancel keeps " \
           "the best epoch so far."
    if choice.get("pretrains"):
        text += " It first pre-trains (masked events) for 2 epochs."
    return text


# -- training progress ---------------------------------------------------------------------
def progress_width(snap: dict[str, Any] | None) -> dict[str, str]:
    """Style of the progress bar for a job snapshot."""
    pct = 0.0 if not snap else 100.0 * float(snap.get("fraction") or 0.0)
    if snap and snap.get("status") == "done":
        pct = 100.0
    return {"width": f"{pct:.1f}%"}


def status_text(snap: dict[str, Any] | None) -> str:
    """``"Training gru on nyc · epoch 2/5 · step 3/12 · loss 4.2100 · valid NDCG@10 0.0410 ·
    6 s"``; inside the slow steps ``"Preparing the data for gru on nyc: splitting each user's
    history (4/7) · 2 s"`` or ``"Validating gru on nyc · epoch 3/5: 40% · ..."``."""
    if not snap:
        return ""
    meta, status, ev = snap.get("meta", {}), snap.get("status"), snap.get("progress", {})
    what = f"{meta.get('model', '?')} on {meta.get('dataset', '?')}"
    secs = f"{snap.get('elapsed', 0.0):.0f} s"
    if status == "failed":
        return f"Training {what} failed after {secs}: {snap.get('error')}"
    summary = snap.get("summary") or {}
    if status in ("done", "cancelled"):
        mid = summary.get("model_id")
        ndcg = (summary.get("metrics") or {}).get("ndcg@10")
        if status == "cancelled" and not mid:
            return f"Cancelled {what} after {secs}, before the first epoch ended: nothing saved."
        head = "Cancelled" if status == "cancelled" else "Finished"
        keep = " (kept the best epoch so far)" if status == "cancelled" else ""
        return f"{head} {what} in {secs}{keep}: saved {mid}, test NDCG@10 {_fmt(ndcg)}."
    if status == "queued":
        return f"{PHASES['queued']} ({what})."
    phase = ev.get("phase", "data")
    joiner = {"data": "for ", "evaluate": "of "}.get(phase, "")
    parts = [f"{PHASES.get(phase, phase)} {joiner}{what}"]
    plan = snap.get("plan", {})
    step, steps = int(ev.get("step") or 0), int(ev.get("steps") or 0)
    if phase in ("train", "valid", "pretrain") and ev.get("epoch"):
        total = plan.get("pretrain" if phase == "pretrain" else "train")
        parts.append(f"epoch {ev['epoch']}/{total}" if total else f"epoch {ev['epoch']}")
    if phase == "valid" and steps:  # the epoch's validation batches ranked so far
        parts[-1] += f": {100 * min(step, steps) // steps}%"
    elif phase in ("data", "evaluate") and ev.get("detail"):  # which step, how far
        parts[0] += f": {ev['detail']}" + (f" ({step}/{steps})" if steps else "")
    elif steps:
        parts.append(f"step {step}/{steps}")
    if ev.get("loss") is not None:
        parts.append(f"loss {_fmt(ev['loss'])}")
    if snap.get("valid"):
        parts.append(f"valid NDCG@10 {_fmt(snap['valid'][-1][1])}")
    parts.append(secs)
    if snap.get("cancel_requested"):
        parts.append("cancelling…")
    return " · ".join(parts)


@plot_safe
def curve_figure(snap: dict[str, Any] | None) -> go.Figure:
    """Training loss per step (left axis) and validation NDCG@10 per epoch (right axis)."""
    fig = go.Figure()
    loss, valid = (snap or {}).get("loss") or [], (snap or {}).get("valid") or []
    if loss:
        fig.add_trace(go.Scatter(x=[p[0] for p in loss], y=[p[1] for p in loss],
                                 mode="lines", name="training loss",
                                 line={"color": _ACCENT, "width": 1.5}))
    if valid:
        fig.add_trace(go.Scatter(x=[p[0] for p in valid], y=[p[1] for p in valid],
                                 mode="lines+markers", name="validation NDCG@10",
                                 yaxis="y2", line={"color": _ORANGE, "width": 2}))
    if not loss and not valid:
        note = "No curve yet: it appears with the first training step." if snap else \
            "Train a neural model to see its loss and validation curve here."
        if snap and not (snap.get("plan") or {}).get("train"):
            note = "Count baselines train in one pass: there is no curve to draw."
        fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper",
                           yref="paper", font={"color": _MUTED, "size": 13})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return _layout(fig, height=280, xaxis={"title": "epoch"},
                   yaxis={"title": "loss"},
                   yaxis2={"title": "valid NDCG@10", "overlaying": "y", "side": "right",
                           "rangemode": "tozero", "showgrid": False})


def messages_view(snap: dict[str, Any] | None) -> html.Details | None:
    """The data preparation report and training log of a job, folded."""
    msgs = (snap or {}).get("messages") or []
    if not msgs:
        return None
    return html.Details([html.Summary(f"Training log ({len(msgs)} lines)"),
                         html.Ul([html.Li(public_message(m)) for m in msgs[-40:]],
                                 className="muted")],
                        className="details")


# -- comparison ----------------------------------------------------------------------------
def comparison_rows(models: list[dict[str, Any]], best: str | None = None
                    ) -> list[dict[str, Any]]:
    """Models by validation NDCG@10 (best first; the test metrics are for reporting),
    cancelled trainings after finished ones, stale ones last; ``best`` marks the default
    model (``services.models.default_row``), which the page preselects."""
    def key(m: dict[str, Any]) -> tuple:
        v = m.get("val_ndcg@10")
        return (bool(m.get("stale")), bool(m.get("cancelled")),
                -(v if v is not None else -math.inf))

    rows = [dict(m) for m in sorted(models, key=key)]
    for r in rows:
        r["best"] = best is not None and r["model_id"] == best
    return rows


def default_note(row: dict[str, Any] | None) -> str:
    """Why the page preselects its model."""
    if not row:
        return ""
    val = row.get("val_ndcg@10")
    why = (f"best validation NDCG@10: {_fmt(val, 3)}" if val is not None
           else "no model has a validation score; the newest is shown")
    if row.get("cancelled"):
        why += "; its training was cancelled, and no finished model is there"
    return f"Preselected {row['model']} · {row['model_id']} ({why})."


def comparison_table(models: list[dict[str, Any]], dataset: str | None = None,
                     best: str | None = None) -> html.Div:
    """Every trained model of a dataset with its validation and test metrics, a Delete
    button each, or how to train the first."""
    if not models:
        return ui.empty_state(
            "No trained model yet",
            "Pick a model above and press Train: markov or pop train in seconds, neural models "
            f"take longer. From a shell: trailscope train {dataset or 'NAME'} --model markov")
    head = html.Thead(html.Tr([html.Th("Model"), html.Th("Split"),
                               html.Th("Valid NDCG@10", className="num"),
                               *[html.Th(h, className="num") for _, h in COLUMNS],
                               html.Th("Train s", className="num"), html.Th("Trained (UTC)"),
                               html.Th(""), html.Th("")]))
    body = []
    for r in comparison_rows(models, best):
        flags = []
        if r.get("stale"):
            flags.append(html.Span("stale", className="tag", title=(
                "the dataset changed since this model was trained: retrain it")))
        if r.get("cancelled"):
            flags.append(html.Span("cancelled", className="tag", title=(
                "training was cancelled; the best epoch so far was kept. It is never "
                "preselected while a finished model is there")))
        if r.get("best"):
            flags.append(html.Span("best", className="tag",
                                   title="best validation NDCG@10: preselected below"))
        body.append(html.Tr(className="selected" if r["best"] else None, children=[
            html.Td([html.Strong(str(r["model"])), html.Br(),
                     html.Span(str(r["model_id"]), className="muted")]),
            html.Td(str(r.get("split") or "–")),
            html.Td(_fmt(r.get("val_ndcg@10")), className="num"),
            *[html.Td(_fmt(r.get(k), 2 if k == "popularity@10" else 4), className="num")
              for k, _ in COLUMNS],
            html.Td(_fmt(r.get("train_seconds"), 1), className="num"),
            html.Td(ui.fmt_time(r.get("created"))),
            html.Td(flags),
            html.Td(html.Button("Delete", id={"type": ids.MODELS_DELETE,
                                              "model": str(r["model_id"])},
                                n_clicks=0, className="btn btn-danger",
                                title=f"Delete {r['model_id']} (asks first)")),
        ]))
    return html.Div(html.Table([head, html.Tbody(body)], className="table"),
                    className="table-wrap")


def inspect_options(models: list[dict[str, Any]],
                    best: str | None = None) -> list[dict[str, Any]]:
    """Dropdown options for choosing a trained model, in the table's order (stale ones
    disabled: they cannot load; cancelled ones marked)."""
    return [{"label": f"{m['model_id']}  (valid NDCG@10 {_fmt(m.get('val_ndcg@10'))}, "
             f"test {_fmt(m.get('ndcg@10'))})"
             + ("  cancelled" if m.get("cancelled") else "")
             + ("  stale: retrain" if m.get("stale") else ""),
             "value": m["model_id"], "disabled": bool(m.get("stale"))}
            for m in comparison_rows(models, best)]


# -- slices --------------------------------------------------------------------------------
def slice_frame(slices: dict[str, Any], kind: str, metric: str) -> pd.DataFrame:
    """Tidy ``slice, n, value`` rows of one slice kind, in the evaluator's order."""
    groups = (slices or {}).get(kind) or {}
    rows = [{"slice": str(k), "n": int(v.get("n") or 0), "value": v.get(metric)}
            for k, v in groups.items()]
    return pd.DataFrame(rows, columns=["slice", "n", "value"])


@plot_safe
def slice_figure(slices: dict[str, Any], kind: str, metric: str = "ndcg@10") -> go.Figure:
    """Bar chart of one test metric per slice; hover shows how many test targets each has."""
    df = slice_frame(slices, kind, metric)
    fig = go.Figure()
    label = SLICE_METRICS.get(metric, metric)
    if df.empty:
        return charts.empty_figure("This model has no slice metrics of this kind.")
    fig.add_trace(go.Bar(x=df["slice"], y=df["value"], customdata=df["n"],
                         marker_color=_ACCENT, name=label,
                         hovertemplate="%{x}: %{fullData.name} %{y:.4f}<br>%{customdata} "
                         "test targets<extra></extra>"))
    return _layout(fig, xaxis={"title": SLICE_KINDS.get(kind, kind), "type": "category"},
                   yaxis={"title": label, "rangemode": "tozero"}, showlegend=False)


# -- recommendations -----------------------------------------------------------------------
#: Keys of an item in models.api.recommend's answer -> canonical column names.
_REC_KEYS = {"item_id": schema.ITEM, "score": "score", "category": schema.CATEGORY,
             "lat": schema.LAT, "lon": schema.LON}

def recs_frame(rec: dict[str, Any]) -> pd.DataFrame:
    """The recommended items with their 1-based rank."""
    items = rec.get("items") or []
    df = pd.DataFrame(items, columns=list(_REC_KEYS)).rename(columns=_REC_KEYS)
    df.insert(0, "rank", range(1, len(df) + 1))
    return df


def recs_table(rec: dict[str, Any], with_coords: bool = False) -> html.Div:
    df = recs_frame(rec)
    if df.empty:
        return ui.notice("The model has no item left to recommend for this user (every item "
                         "they know is already in their history).", "warning")
    cols = [("rank", "#"), (schema.ITEM, "Item"), ("score", "Score"),
            (schema.CATEGORY, "Category")]
    if with_coords:
        cols += [(schema.LAT, "Lat"), (schema.LON, "Lon")]
    head = html.Thead(html.Tr([html.Th(h) for _, h in cols]))
    body = []
    for r in df.to_dict("records"):
        cells = []
        for c, _ in cols:
            v = r[c]
            if c in ("score", schema.LAT, schema.LON):
                text = _fmt(v, 4 if c == "score" else 5)
            else:
                text = "–" if v is None or (isinstance(v, float) and v != v) else str(v)
            cells.append(html.Td(text, className=None if c in (schema.ITEM, schema.CATEGORY)
                                 else "num"))
        body.append(html.Tr(cells))
    return html.Div(html.Table([head, html.Tbody(body)], className="table table-compact"),
                    className="table-wrap")


def recs_summary(rec: dict[str, Any]) -> str:
    skipped = int(rec.get("unknown_items_skipped") or 0)
    extra = (f"; {ui.count_of(skipped, 'event')} of items the model does not know "
             f"{'was' if skipped == 1 else 'were'} skipped") if skipped else ""
    used = int(rec.get("history_used") or 0)
    return (f"Top {len(rec.get('items') or [])} for user {rec.get('user')} by "
            f"{rec.get('model_id')}, from their last {ui.count_of(used, 'event')}, "
            f"as of {ui.fmt_time(rec.get('at'))} UTC{extra}.")


def recs_map_spec(rec: dict[str, Any], events: pd.DataFrame) -> dict[str, Any] | None:
    """Map spec: the user's recent path (line + visited points) and the recommended items
    (orange, their rank in the tooltip). None when nothing has coordinates."""
    recs = recs_frame(rec).dropna(subset=[schema.LAT, schema.LON])
    ev = events.dropna(subset=[schema.LAT, schema.LON]) if not events.empty else events
    if recs.empty and ev.empty:
        return None
    layers = []
    if not ev.empty:
        paths = deckmap.paths_from_events(ev)
        if not paths.empty:
            layers.append(deckmap.path_layer(paths, id="user-path", color=(100, 116, 139),
                                             width_px=2.5))
        seen = ev.assign(when=ev[schema.TS].astype(str))
        layers.append(deckmap.scatter_layer(seen, id="user-events", color=(100, 116, 139),
                                            radius_px=4,
                                            tooltip=f"visited {{{schema.ITEM}}}\n{{when}}"))
    if not recs.empty:
        recs = recs.assign(**{schema.CATEGORY: recs[schema.CATEGORY].fillna("–"),
                              "score_text": recs["score"].map(lambda s: f"{s:.4f}"),
                              "rank_text": recs["rank"].astype(str)})
        layers.append(deckmap.scatter_layer(  # reversed: rank 1 is drawn on top
            recs.iloc[::-1], id="recommended", color=(234, 88, 12), radius_px=8,
            tooltip=f"#{{rank_text}} {{{schema.ITEM}}}\n{{{schema.CATEGORY}}}\n"
                    "score {score_text}"))
    lat = pd.concat([ev[schema.LAT], recs[schema.LAT]])
    lon = pd.concat([ev[schema.LON], recs[schema.LON]])
    # a canvas draws these few points and one path at once; deck.gl's software WebGL took
    # seconds to start in a browser without a GPU (issue #13)
    return deckmap.deck_spec(layers, deckmap.view_for(lat, lon, width=700, height=420),
                             renderer="canvas")

"""Figures of an explanation (models.explain_types.Explanation), shared by the Explain page and
the reports: per-event attributions over the timeline, feature groups, attention heatmap,
counterfactual ranks, and the events on a map coloured by attribution.

Every builder is wrapped in ``plot_safe`` (app/views/plotsafe.py), which escapes the strings a
figure shows (item ids, categories, model names); the map spec's tooltips are plain text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...analytics.schema import CATEGORY, ITEM, LAT, LON, TS
from ...models.explain.text import deletion_rows
from ...models.explain.types import ATTRIBUTION, GROUP_COLUMNS, GROUPS, HOUR, POSITION, Explanation
from ..deckgl.deckmap import deck_spec, path_layer, scatter_layer, view_for
from .charts import _style, empty_figure
from .plotsafe import plot_safe

GROUP_COLORS = {"item": "#2563eb", "time": "#f59e0b", "distance": "#10b981",
                "category": "#8b5cf6"}
GROUP_LABELS = {"item": "item", "time": "time", "distance": "distance",
                "category": "category"}


def _labels(ev: pd.DataFrame) -> list[str]:
    ts = pd.to_datetime(ev[TS])
    return [f"#{int(p) + 1} {t:%Y-%m-%d %H:%M}" for p, t in zip(ev[POSITION], ts, strict=True)]


@plot_safe
def attribution_figure(ex: Explanation) -> go.Figure:
    """Per past event (oldest left): attribution stacked by feature group; hover names the
    item, category and local hour."""
    ev = ex.events
    if ev.empty:
        return empty_figure("This history has no events to attribute.")
    if not any(np.any(ev[GROUP_COLUMNS[g]].to_numpy(dtype=float)) for g in GROUPS):
        return empty_figure("No past event moved the score: every event's attribution is 0.",
                            360)
    x = _labels(ev)
    custom = np.column_stack([[str(v) for v in ev[ITEM]],
                              [v if isinstance(v, str) else "–" for v in ev[CATEGORY]],
                              ev[HOUR].astype(int), ev[ATTRIBUTION].round(4)])
    fig = go.Figure()
    for g in GROUPS:
        vals = ev[GROUP_COLUMNS[g]].to_numpy(dtype=float)
        if not np.any(vals):
            continue
        fig.add_trace(go.Bar(
            x=x, y=vals, name=GROUP_LABELS[g], marker_color=GROUP_COLORS[g], customdata=custom,
            hovertemplate=("%{x}<br>item %{customdata[0]} · %{customdata[1]}<br>"
                           "local hour %{customdata[2]}<br>" + g + " %{y:.4f}<br>"
                           "event total %{customdata[3]}<extra></extra>")))
    fig.update_layout(barmode="relative", bargap=0.15)
    fig.update_xaxes(type="category", tickangle=-45, title_text="past events (oldest first)")
    fig.update_yaxes(title_text="attribution to the score", zeroline=True)
    return _style(fig, 360)


@plot_safe
def groups_figure(ex: Explanation) -> go.Figure:
    """Total attribution per feature group (item, time, distance, category)."""
    vals = [float(ex.groups.get(g, 0.0)) for g in GROUPS]
    if not any(vals):
        return empty_figure("No feature group moved the score.")
    fig = go.Figure(go.Bar(x=vals, y=[GROUP_LABELS[g] for g in GROUPS], orientation="h",
                           marker_color=[GROUP_COLORS[g] for g in GROUPS],
                           hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="total attribution", zeroline=True)
    return _style(fig, 240, legend=False)


@plot_safe
def attention_figure(ex: Explanation) -> go.Figure:
    """Heatmap: one row per layer and head, one column per past event, the weight the
    scoring position gives each event."""
    att = ex.attention
    if att is None or att.empty:
        return empty_figure(f"{ex.model} has no self-attention to show.")
    wide = att.pivot_table(index=["layer", "head"], columns=POSITION, values="weight")
    ev = ex.events.set_index(POSITION)
    cols = [c for c in wide.columns if c in ev.index]
    x = _labels(ev.loc[cols].reset_index())
    y = [f"layer {int(layer) + 1} · head {int(head) + 1}" for layer, head in wide.index]
    z = wide[cols].to_numpy()
    top = float(np.nanmax(z)) if np.isfinite(z).any() else 0.0
    # the scale starts at 0 (plotly ignores zmin without zmax), so near-uniform attention
    # looks uniform; two significant digits keep the ticks (multiples of 1, 2 or 5 x 10^k
    # from 0) distinct
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, colorscale="Blues", zmin=0,
                               zmax=top if top > 0 else 1.0,
                               colorbar={"title": {"text": "weight"}, "tickformat": ".2~g"},
                               hovertemplate="%{y}<br>%{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(autorange="reversed")
    return _style(fig, max(220, 40 * len(y) + 140), legend=False)


@plot_safe
def counterfactual_figure(ex: Explanation) -> go.Figure:
    """Rank of the item with its full history and after deleting k events chosen by the
    explanation, by attention, or at random (lower is better for the item)."""
    bars = [(label.replace(" (", "<br>("), rank) for label, rank, _score in deletion_rows(ex)]
    if not bars:
        return empty_figure("No deletion test for this explanation (too few events, or a "
                            "count baseline).")
    fig = go.Figure(go.Bar(x=[b[0] for b in bars], y=[b[1] for b in bars],
                           marker_color=["#64748b", "#dc2626", "#f59e0b", "#94a3b8"][:len(bars)],
                           text=[f"{b[1]:.0f}" for b in bars], textposition="outside",
                           hovertemplate="%{x}: rank %{y:.1f}<extra></extra>"))
    fig.update_yaxes(title_text="rank of the item (1 = top)", rangemode="tozero")
    return _style(fig, 300, legend=False)


def _geo_events(ex: Explanation) -> pd.DataFrame:
    ev = ex.events
    ok = ev[LAT].notna() & ev[LON].notna()
    out = ev.loc[ok, [POSITION, ITEM, CATEGORY, TS, LAT, LON, ATTRIBUTION]].copy()
    out[ITEM] = [str(v) for v in out[ITEM]]
    out[CATEGORY] = [v if isinstance(v, str) else "–" for v in out[CATEGORY]]
    out["attr"] = out[ATTRIBUTION].round(4)
    return out


def events_map_spec(ex: Explanation) -> dict | None:
    """Deck map spec: the user's path, past events coloured by attribution (diverging) and the
    recommended item; None when no event has coordinates."""
    pts = _geo_events(ex)
    if pts.empty:
        return None
    layers = []
    if len(pts) >= 2:
        path = pd.DataFrame({"path": [pts[[LON, LAT]].to_numpy().tolist()]})
        layers.append(path_layer(path, id="path", color=[100, 116, 139, 140], width_px=2))
    layers.append(scatter_layer(pts, id="events", color_by=ATTRIBUTION, radius_px=7,
                                tooltip="{item_id} ({category}): attribution {attr}"))
    lats, lons = list(pts[LAT]), list(pts[LON])
    if ex.item_lat is not None and ex.item_lon is not None:
        rec = pd.DataFrame({LAT: [ex.item_lat], LON: [ex.item_lon], ITEM: [str(ex.item_id)]})
        layers.append(scatter_layer(rec, id="recommended", color=[220, 38, 38], radius_px=11,
                                    tooltip="recommended: {item_id}"))
        lats.append(ex.item_lat)
        lons.append(ex.item_lon)
    # a canvas draws this one path and its events at once; deck.gl's software WebGL took
    # seconds to start in a browser without a GPU (issue #13). A report without
    # assets/canvasmap.js draws the same spec with deck.gl.
    return deck_spec(layers, view_for(lats, lons), basemap="none", renderer="canvas")


@plot_safe
def events_map_figure(ex: Explanation) -> go.Figure:
    """A static stand-in for the map (reports, PDF): lon/lat scatter coloured by attribution,
    the path as a line, the recommended item as a red star. No tiles, no network."""
    pts = _geo_events(ex)
    if pts.empty:
        return empty_figure("None of these events has coordinates.")
    lim = float(np.abs(pts[ATTRIBUTION]).max()) or 1.0
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=pts[LON], y=pts[LAT], mode="lines", name="path",
                             line={"color": "#cbd5e1", "width": 1.5}, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=pts[LON], y=pts[LAT], mode="markers", name="past events",
        marker={"size": 11, "color": pts[ATTRIBUTION], "colorscale": "RdBu", "cmin": -lim,
                "cmax": lim, "reversescale": True, "line": {"width": 1, "color": "#fff"},
                "colorbar": {"title": {"text": "attribution"}}},
        customdata=np.column_stack([pts[ITEM], pts[CATEGORY], pts["attr"]]),
        hovertemplate="%{customdata[0]} (%{customdata[1]})<br>attribution "
                      "%{customdata[2]}<extra></extra>"))
    if ex.item_lat is not None and ex.item_lon is not None:
        fig.add_trace(go.Scatter(x=[ex.item_lon], y=[ex.item_lat], mode="markers",
                                 name="recommended", marker={"symbol": "star", "size": 18,
                                                             "color": "#dc2626"},
                                 text=[str(ex.item_id)],
                                 hovertemplate="recommended %{text}<extra></extra>"))
    fig.update_xaxes(title_text="longitude")
    fig.update_yaxes(title_text="latitude", scaleanchor="x",
                     scaleratio=1 / max(np.cos(np.radians(float(pts[LAT].mean()))), 0.2))
    return _style(fig, 420)


def explanation_figures(ex: Explanation, static_map: bool = True) -> dict[str, go.Figure]:
    """All figures of one explanation by name (the report's order)."""
    figs = {"attribution": attribution_figure(ex), "groups": groups_figure(ex),
            "attention": attention_figure(ex), "counterfactual": counterfactual_figure(ex)}
    if static_map:
        figs["map"] = events_map_figure(ex)
    return figs

"""Plotly figure builders for the analytics pages: tidy DataFrames in, ``go.Figure`` out.

No data access here: the pages fetch frames from the service modules and hand them over.
Every builder returns a figure in the same calm style (``_style``) and copes with an empty
frame by returning :func:`empty_figure` with a sentence saying why there is nothing to draw.
Every builder is wrapped in ``plot_safe`` (app/views/plotsafe.py): the strings a figure shows
are escaped there, and templates refer to data strings only through ``%{...}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from ...analytics.schema import BEHAVIOR, CATEGORY, ITEM, TS
from .plotsafe import plot_safe
from .ui import count_of

PERIOD = "period"
EVENTS = "events"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Categorical palette (colour-blind safe, muted), then grey for "other" / "(none)".
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899",
           "#84cc16", "#f97316", "#14b8a6", "#6366f1", "#a855f7")
GREY = "#94a3b8"
TREND_COLORS = {"emerging": "#16a34a", "stable": "#64748b", "declining": "#dc2626"}
RETENTION_SCALE = [[0.0, "#f8fafc"], [0.05, "#dbeafe"], [0.25, "#93c5fd"], [0.5, "#3b82f6"],
                   [1.0, "#1e3a8a"]]
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"


def _calm_template() -> go.layout.Template:
    """plotly_white cut to what the dashboard draws (cartesian scatter, bar and heatmap
    traces): the full template is 7 KB of every figure sent to the browser and merged there,
    mostly defaults of 3-D, polar, geographic and table traces (issue #13)."""
    full = pio.templates["plotly_white"].to_plotly_json()
    return go.layout.Template(
        layout={k: v for k, v in full["layout"].items()
                if k not in ("polar", "ternary", "scene", "geo")},
        data={k: v for k, v in full["data"].items() if k in ("scatter", "bar", "heatmap")})


#: The charts' template: plotly_white for the traces they draw (``_calm_template``).
TEMPLATE = _calm_template()


def placeholder_figure(message: str, height: int = 300) -> dict:
    """A graph's stand-in while its callback computes: ``message`` in the middle, no axes
    and no template, so the page that carries it stays small and plotly draws it at once."""
    return {"data": [], "layout": {
        "height": height, "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
        "margin": {"l": 16, "r": 16, "t": 16, "b": 16},
        "annotations": [{"text": message, "showarrow": False, "x": 0.5, "y": 0.5,
                         "xref": "paper", "yref": "paper",
                         "font": {"family": FONT, "size": 14, "color": "#64748b"}}]}}


def _style(fig: go.Figure, height: int = 340, legend: bool = True) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE, height=height, font={"family": FONT, "size": 12.5,
                                                       "color": "#334155"},
        margin={"l": 56, "r": 16, "t": 16, "b": 44}, hovermode="closest",
        showlegend=legend, legend={"orientation": "h", "y": 1.02, "yanchor": "bottom",
                                   "x": 0, "font": {"size": 11.5}},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#ffffff")
    # automargin: a long tick label or axis title widens the margin instead of being cut
    fig.update_xaxes(showline=True, linecolor="#cbd5e1", gridcolor="#eef2f7", automargin=True)
    fig.update_yaxes(gridcolor="#eef2f7", zerolinecolor="#e2e8f0", automargin=True)
    return fig


def _legend_below(fig: go.Figure) -> go.Figure:
    fig.update_layout(legend={"orientation": "h", "y": -0.14, "yanchor": "top", "x": 0,
                              "font": {"size": 11.5}})
    return fig


def wrap_words(text: str, width: int) -> list[str]:
    """``text`` cut at spaces into lines of at most ``width`` characters (a longer word keeps
    a line of its own)."""
    lines: list[str] = []
    for word in str(text).split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


@plot_safe
def empty_figure(message: str, height: int = 300, wrap: int | None = None) -> go.Figure:
    """A blank chart with ``message`` in the middle (empty states). With ``wrap`` the message
    is cut into lines of at most that many characters, one annotation each, centred as a
    block: plotly does not wrap annotations, and a sentence of 160 characters ran past both
    edges of a half-width card."""
    fig = go.Figure()
    lines = wrap_words(message, wrap) if wrap else [message]
    step = 18 / max(height, 1)  # a line's height in paper units
    for i, line in enumerate(lines):
        fig.add_annotation(text=line, showarrow=False, x=0.5, xref="paper", yref="paper",
                           y=0.5 + ((len(lines) - 1) / 2 - i) * step,
                           font={"size": 12 if wrap else 14, "color": "#64748b"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, height, legend=False)


def colors_for(labels: Sequence[object]) -> dict[object, str]:
    """A stable colour per label; "other" and "(none)" are grey."""
    out: dict[object, str] = {}
    i = 0
    for lab in labels:
        if str(lab) in ("other", "(none)"):
            out[lab] = GREY
        else:
            out[lab] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _order_groups(df: pd.DataFrame, by: str, value: str) -> list[object]:
    """Groups by total ``value`` descending, with other / (none) last."""
    totals = df.groupby(by, dropna=False)[value].sum().sort_values(ascending=False)
    named = [g for g in totals.index if str(g) not in ("other", "(none)")]
    return named + [g for g in totals.index if str(g) in ("other", "(none)")]


# -- overview ----------------------------------------------------------------------------------
@plot_safe
def trend_figure(df: pd.DataFrame, split: str | None = None, value: str = EVENTS,
                 freq: str = "day", partial: pd.DataFrame | None = None) -> go.Figure:
    """Events (or users) per period; with ``split`` one stacked area per group.

    ``partial`` (``period, coverage, end``: the service's partial periods) are shaded and
    labelled with their coverage, so a last day holding a tenth of a day's events does not
    read as a collapse. Drag horizontally to select a time range (``dragmode="select"``): the
    page stores it as the cross-filter of the other views.
    """
    if df.empty:
        return empty_figure("No events in this selection.")
    fig = go.Figure()
    unit = {"hour": "hour", "day": "day", "week": "week", "month": "month"}.get(freq, freq)
    if not split or split == "none" or split not in df.columns:
        fig.add_trace(go.Scatter(
            x=df[PERIOD], y=df[value], mode="lines", name=value, line={"color": PALETTE[0],
                                                                       "width": 1.8},
            fill="tozeroy", fillcolor="rgba(37,99,235,0.12)",
            hovertemplate=f"%{{x}}<br>%{{y:,}} {value} per {unit}<extra></extra>"))
    else:
        groups = _order_groups(df, split, value)
        colors = colors_for(groups)
        for g in groups:
            part = df[df[split] == g] if pd.notna(g) else df[df[split].isna()]
            fig.add_trace(go.Scatter(
                x=part[PERIOD], y=part[value], mode="lines", name=str(g), stackgroup="one",
                line={"width": 0.6, "color": colors[g]},
                hovertemplate="%{fullData.name}: %{y:,}<extra></extra>"))
        fig.update_layout(hovermode="x unified")
    _shade_partial(fig, partial)
    fig.update_layout(dragmode="select", selectdirection="h")
    fig.update_yaxes(title_text=f"{value} per {unit}", rangemode="tozero")
    return _style(fig, 340, legend=bool(split and split != "none"))


PARTIAL_FILL = "rgba(148,163,184,0.18)"


def _partial_segments(history: pd.DataFrame, flags: np.ndarray) -> pd.DataFrame:
    """The partial rows of ``history`` each with its complete neighbours, as line segments
    separated by a blank row (so the first and the last partial period are not joined)."""
    parts = []
    for i in np.flatnonzero(flags):
        rows = history.iloc[max(i - 1, 0):i + 2][[PERIOD, EVENTS]]
        parts += [rows, pd.DataFrame({PERIOD: [rows[PERIOD].iloc[-1]], EVENTS: [None]})]
    return pd.concat(parts[:-1], ignore_index=True)


def _shade_partial(fig: go.Figure, partial: pd.DataFrame | None) -> None:
    """A grey band over each partial period, labelled "partial, 10% covered" at the top."""
    if partial is None or partial.empty:
        return
    for start, end, cover in partial[[PERIOD, "end", "coverage"]].itertuples(index=False):
        fig.add_vrect(x0=start, x1=end, fillcolor=PARTIAL_FILL, line_width=0, layer="below",
                      annotation_text=f"partial, {cover:.0%} covered",
                      annotation_position="top left",
                      annotation_font={"size": 10.5, "color": "#64748b"})


@plot_safe
def rhythm_figure(rhythm: pd.DataFrame, clock: str = "") -> go.Figure:
    """Hour-of-day x day-of-week heatmap of events (weekday rows, Monday on top)."""
    if rhythm.empty or rhythm[EVENTS].sum() == 0:
        return empty_figure("No events in this selection.")
    grid = rhythm.pivot(index="weekday", columns="hour", values=EVENTS).reindex(
        index=range(7), columns=range(24), fill_value=0)
    share = grid / max(int(grid.to_numpy().sum()), 1) * 100
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=[f"{h:02d}" for h in range(24)], y=list(WEEKDAYS),
        customdata=share.to_numpy(), colorscale="Blues", xgap=1, ygap=1,
        colorbar={"title": {"text": "events", "side": "right"}, "thickness": 12},
        hovertemplate="%{y} %{x}:00<br>%{z:,} events (%{customdata:.1f}%)<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(title_text=f"hour of day — {clock}" if clock else "hour of day",
                     showgrid=False, showline=False)
    return _style(fig, 300, legend=False)


@plot_safe
def forecast_figure(history: pd.DataFrame, forecast: pd.DataFrame, freq: str = "day",
                    level: float = 0.95, partial: pd.DataFrame | None = None) -> go.Figure:
    """Recent history, the forecast and its ``level`` interval as a shaded band.

    ``history`` may flag periods in a ``partial`` column: those were not fitted and show as a
    dotted grey line in a grey band (``partial``: the service's partial periods, with their
    coverage), the forecast joins the last complete period."""
    if history.empty:
        return empty_figure("No history to forecast from.")
    flags = history["partial"] if "partial" in history.columns else pd.Series(
        False, index=history.index)
    complete = history[~flags.astype(bool)]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=complete[PERIOD], y=complete[EVENTS], mode="lines",
                             name="observed", line={"color": "#334155", "width": 1.6},
                             hovertemplate="%{x}<br>%{y:,} events<extra>observed</extra>"))
    if flags.any():
        part = _partial_segments(history, flags.astype(bool).to_numpy())
        fig.add_trace(go.Scatter(
            x=part[PERIOD], y=part[EVENTS], mode="lines+markers",
            name="partial period (not fitted)", marker={"size": 6, "color": GREY},
            line={"color": GREY, "width": 1.4, "dash": "dot"},
            hovertemplate="%{x}<br>%{y:,} events<extra>partial period</extra>"))
    if partial is not None and len(partial):   # only those in the window shown
        _shade_partial(fig, partial[partial[PERIOD] >= history[PERIOD].min()])
    if not forecast.empty:
        x = pd.concat([forecast[PERIOD], forecast[PERIOD][::-1]])
        y = pd.concat([forecast["upper"], forecast["lower"][::-1]])
        fig.add_trace(go.Scatter(x=x, y=y, fill="toself", fillcolor="rgba(37,99,235,0.15)",
                                 line={"width": 0}, name=f"{level:.0%} interval",
                                 hoverinfo="skip"))
        # join the forecast to the last fitted observation so the line is continuous
        before = complete[complete[PERIOD] < forecast[PERIOD].iloc[0]]
        joined = pd.concat([before[[PERIOD, EVENTS]].tail(1).rename(
            columns={EVENTS: "forecast"}), forecast[[PERIOD, "forecast"]]])
        fig.add_trace(go.Scatter(x=joined[PERIOD], y=joined["forecast"], mode="lines",
                                 name="forecast (SARIMA)",
                                 line={"color": PALETTE[0], "width": 2, "dash": "dash"},
                                 hovertemplate="%{x}<br>%{y:,.0f} expected<extra></extra>"))
    fig.update_yaxes(title_text=f"events per {freq}", rangemode="tozero")
    return _style(fig, 320)


def _later(periods: int, freq: str) -> str:
    """A cohort column in words: "its first week", "1 week later", "3 weeks later"."""
    n = int(periods)
    return f"its first {freq}" if n == 0 else f"{count_of(n, freq)} later"


@plot_safe
def cohort_figure(table: pd.DataFrame, freq: str = "week") -> go.Figure:
    """Retention heatmap: cohorts (first active period) as rows, periods since as columns."""
    if table.empty:
        return empty_figure("No cohorts to show.")
    z = table.to_numpy(dtype=float) * 100
    fmt = "%Y-%m-%d" if freq != "month" else "%Y-%m"
    rows = [pd.Timestamp(c).strftime(fmt) for c in table.index]
    sizes = table.attrs.get("sizes") or [None] * len(rows)
    labels = [f"{r} ({s:,})" if s is not None else r for r, s in zip(rows, sizes, strict=True)]
    text = np.where(np.isnan(z), "", np.char.mod("%.0f", np.nan_to_num(z)))
    show_text = z.shape[0] * z.shape[1] <= 600
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(c) for c in table.columns], y=labels, colorscale=RETENTION_SCALE, zmin=0,
        zmax=100, xgap=1, ygap=1, text=text if show_text else None,
        texttemplate="%{text}" if show_text else None, textfont={"size": 9},
        colorbar={"title": {"text": "% retained", "side": "right"}, "thickness": 12},
        customdata=np.tile(np.array([_later(c, freq) for c in table.columns], dtype=object),
                           (len(rows), 1)),
        hovertemplate="cohort %{y}<br>%{customdata}: %{z:.1f}%<extra></extra>"))
    fig.update_yaxes(autorange="reversed", showgrid=False, type="category")
    fig.update_xaxes(title_text=f"{freq}s since first activity", showgrid=False,
                     showline=False, type="category")
    return _style(fig, max(300, min(720, 60 + 18 * len(rows))), legend=False)


# -- map page ----------------------------------------------------------------------------------
@plot_safe
def zone_trend_figure(zones: pd.DataFrame, activity: pd.DataFrame, top: int = 6,
                      window: str = "month") -> go.Figure:
    """Visits per window of the ``top`` busiest zones as an index (100 = the zone's own mean
    over the windows, so small and large zones share one axis), coloured by trend label."""
    if zones.empty or activity.empty:
        return empty_figure("No zones: too few repeated visits to the same places.", 280)
    best = zones.nsmallest(top, "zone_id")
    fig = go.Figure()
    for _, z in best.iterrows():
        a = activity[activity["zone_id"] == z["zone_id"]]
        mean = float(a["visits"].mean()) or 1.0
        label = str(z.get("trend", "stable"))
        fig.add_trace(go.Scatter(
            x=a["window_start"], y=a["visits"] / mean * 100, mode="lines+markers",
            name=f"zone {z['zone_id']} · {label}", marker={"size": 5},
            line={"color": TREND_COLORS.get(label, GREY),
                  "width": 1.4 if label == "stable" else 2.4},
            opacity=0.55 if label == "stable" else 1.0,
            customdata=a["visits"],
            hovertemplate="%{fullData.name}<br>%{x}: %{customdata:,} visits"
                          " (index %{y:.0f})<extra></extra>"))
    fig.add_hline(y=100, line={"color": "#cbd5e1", "dash": "dot", "width": 1})
    fig.update_yaxes(title_text=f"visits per {window}, index", rangemode="tozero")
    return _legend_below(_style(fig, 340))


# -- users page --------------------------------------------------------------------------------
@plot_safe
def timeline_figure(events: pd.DataFrame, top: int = 10) -> go.Figure:
    """One marker per event: time on x, the event's category (top ``top``, else "other") on
    y, colour by behaviour; hover shows item, category and behaviour."""
    if events.empty:
        return empty_figure("This user has no events.")
    ev = events[[TS, ITEM, CATEGORY, BEHAVIOR]].copy()
    cat = ev[CATEGORY].astype("string").fillna("(none)")
    keep = cat.value_counts().index[:top]
    ev["_row"] = cat.where(cat.isin(keep), "other")
    order = [c for c in keep if c != "(none)"] + [c for c in ("other", "(none)")
                                                   if (ev["_row"] == c).any()]
    behaviours = ev[BEHAVIOR].astype("string").fillna("(none)")
    colors = colors_for(behaviours.value_counts().index.tolist())
    fig = go.Figure()
    for b, color in colors.items():
        part = ev[behaviours == b]
        fig.add_trace(go.Scatter(
            x=part[TS], y=part["_row"], mode="markers", name=str(b),
            marker={"color": color, "size": 7, "opacity": 0.75, "symbol": "line-ns-open",
                    "line": {"width": 2, "color": color}},
            customdata=np.column_stack([part[ITEM].astype(str),
                                        part[CATEGORY].astype("string").fillna("–")]),
            hovertemplate="%{x}<br>item %{customdata[0]}<br>%{customdata[1]}"
                          "<extra>%{fullData.name}</extra>"))
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], type="category",
                     showgrid=True)
    return _style(fig, max(260, 40 * len(order) + 90), legend=len(colors) > 1)


@plot_safe
def drift_figure(profiles: pd.DataFrame, drift: pd.DataFrame, reference: pd.DataFrame,
                 freq: str = "month", top: int = 8) -> go.Figure:
    """Category shares per window (stacked bars) and the Jensen-Shannon divergence from the
    previous active window (line, right axis) next to the median of all users (dotted)."""
    if profiles.empty:
        return empty_figure("No categorised events for this user, so no interest profile.")
    prof = profiles.copy()
    keep = prof.groupby(CATEGORY)[EVENTS].sum().nlargest(top).index
    prof[CATEGORY] = prof[CATEGORY].where(prof[CATEGORY].isin(keep), "other")
    prof = prof.groupby([PERIOD, CATEGORY], as_index=False)["share"].sum()
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    groups = _order_groups(prof, CATEGORY, "share")
    colors = colors_for(groups)
    for g in groups:
        part = prof[prof[CATEGORY] == g]
        fig.add_trace(go.Bar(x=part[PERIOD], y=part["share"] * 100, name=str(g),
                             marker_color=colors[g], opacity=0.85,
                             hovertemplate="%{fullData.name}: %{y:.0f}%<extra></extra>"),
                      secondary_y=False)
    if not drift.empty:
        fig.add_trace(go.Scatter(x=drift[PERIOD], y=drift["js"], mode="lines+markers",
                                 name="drift (JS)", line={"color": "#0f172a", "width": 2.2},
                                 marker={"size": 7},
                                 hovertemplate="drift %{y:.2f}<extra>this user</extra>"),
                      secondary_y=True)
    if not reference.empty:
        ref = reference[(reference[PERIOD] >= prof[PERIOD].min())
                        & (reference[PERIOD] <= prof[PERIOD].max())]
        fig.add_trace(go.Scatter(x=ref[PERIOD], y=ref["median_js"], mode="lines",
                                 name="median drift, all users",
                                 line={"color": "#64748b", "width": 1.4, "dash": "dot"},
                                 hovertemplate="median %{y:.2f}<extra>all users</extra>"),
                      secondary_y=True)
    fig.update_layout(barmode="stack", hovermode="x unified", bargap=0.25)
    fig.update_yaxes(title_text=f"share of the {freq}'s events (%)", range=[0, 100],
                     dtick=20, tickmode="linear", secondary_y=False)
    fig.update_yaxes(title_text="drift (Jensen-Shannon)", range=[0, 1.02], dtick=0.2,
                     tickmode="linear", secondary_y=True, showgrid=False)
    return _legend_below(_style(fig, 420))


@plot_safe
def mobility_figure(mob: pd.DataFrame, window: str = "month") -> go.Figure:
    """Per window: events and distinct places (bars), radius of gyration and travel distance
    (lines) when the user's events have coordinates."""
    if mob.empty:
        return empty_figure("No events for this user.")
    x = mob["window_start"]
    geo = "rg_km" in mob.columns and mob["rg_km"].notna().any()
    rows = 2 if geo else 1
    titles = ("Activity", "Movement") if geo else ("Activity",)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        subplot_titles=titles, specs=[[{"secondary_y": True}]] * rows)
    fig.add_trace(go.Bar(x=x, y=mob["events"], name="events", marker_color="#cbd5e1",
                         hovertemplate="%{y:,} events<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=mob["places"], name="distinct places", mode="lines+markers",
                             line={"color": PALETTE[0], "width": 2},
                             hovertemplate="%{y:,} places<extra></extra>"),
                  row=1, col=1, secondary_y=True)
    if geo:
        fig.add_trace(go.Scatter(x=x, y=mob["rg_km"], name="radius of gyration (km)",
                                 mode="lines+markers", line={"color": PALETTE[2], "width": 2},
                                 hovertemplate="r<sub>g</sub> %{y:.2f} km<extra></extra>"),
                      row=2, col=1)
        fig.add_trace(go.Scatter(x=x, y=mob["travel_km"], name="travel (km)",
                                 mode="lines+markers", line={"color": PALETTE[1], "width": 2},
                                 hovertemplate="travel %{y:,.1f} km<extra></extra>"),
                      row=2, col=1, secondary_y=True)
        fig.update_yaxes(title_text="gyration km", row=2, col=1, rangemode="tozero")
        fig.update_yaxes(title_text="travel km", row=2, col=1, secondary_y=True,
                         rangemode="tozero", showgrid=False, tickmode="auto", nticks=5)
    fig.update_yaxes(title_text=f"events / {window}", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="places", row=1, col=1, secondary_y=True, rangemode="tozero",
                     showgrid=False, tickmode="auto", nticks=5)
    fig.update_layout(hovermode="x unified", bargap=0.3)
    _legend_below(_style(fig, 460 if geo else 320))
    # two legend entries per row, below the bottom axis's tick labels
    fig.update_layout(margin={"t": 28}, legend={"entrywidth": 0.5,
                                                "entrywidthmode": "fraction"})
    fig.update_annotations(font={"size": 12.5, "color": "#334155"})
    return fig

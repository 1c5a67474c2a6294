"""Interest drift on the Users page: one user's mix per window with their drift (raw and
shrunk) next to the median user, and the most-changed users with the evidence behind each
figure (windows, pairs, events).

The mix is over the drift's basis: categories, or zones (H3 cells) for data without them;
``labels`` turns a zone's cell id into a readable name. No data access here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import html

from ...analytics.schema import CATEGORY, USER
from . import analytics as views
from . import charts, ui
from .charts import EVENTS, PERIOD, empty_figure
from .plotsafe import plot_safe

JS = "js"
SHRUNK_JS = "shrunk_js"


def evidence(windows: Any, pairs: Any, events: Any) -> str:
    """``"12 windows, 11 pairs, 340 events"``: what a user's drift figure rests on."""
    n = ui.count_of
    return f"{n(int(windows), 'window')}, {n(int(pairs), 'pair')}, {n(int(events), 'event')}"


@plot_safe
def drift_figure(profiles: pd.DataFrame, drift: pd.DataFrame, reference: pd.DataFrame,
                 freq: str = "month", column: str = CATEGORY,
                 labels: Mapping[str, str] | None = None, top: int = 8) -> go.Figure:
    """Shares per window over ``column`` (stacked bars, the ``top`` largest, the rest as
    "other"; ``labels`` names them), the drift from the previous compared window (line, right
    axis: the shrunk divergence when the drift has it, with the raw one dashed) and the
    median of all users: ``charts.drift_figure`` over any basis, with the evidence."""
    if profiles.empty:
        return empty_figure("Too few events in this user's windows to profile their "
                            "interests.")
    prof = profiles.rename(columns={column: CATEGORY})
    if labels:
        prof[CATEGORY] = prof[CATEGORY].map(lambda v: labels.get(str(v), v))
    shrunk = SHRUNK_JS in drift.columns
    fig = charts.drift_figure(prof, drift.assign(**{JS: drift[SHRUNK_JS]}) if shrunk else drift,
                              reference, freq, top)
    if shrunk and not drift.empty:
        _evidence_lines(fig, drift)
    return _fit_card(fig, freq)


def _fit_card(fig: go.Figure, freq: str) -> go.Figure:
    """The figure fitted to a half-width card: short axis titles, the legend two entries a
    row below the chart (a one-column list of a dozen entries ran out of the graph at 1024 px
    and covered the axis titles), and the height to hold it."""
    rows = (len(fig.data) + 1) // 2
    fig.update_yaxes(title_text=f"% of the {freq}'s events", secondary_y=False)
    fig.update_yaxes(title_text="drift (JS)", secondary_y=True)
    fig.update_layout(height=300 + 22 * rows,
                      legend={"entrywidth": 0.5, "entrywidthmode": "fraction"})
    return fig


def _evidence_lines(fig: go.Figure, drift: pd.DataFrame) -> None:
    """The shrunk drift line renamed, with the raw drift and the windows' events in its
    hover; the raw drift dashed beside it."""
    custom = drift[[JS, "prev_events", EVENTS]].to_numpy(float)
    fig.update_traces(selector={"name": "drift (JS)"}, name="drift", customdata=custom,
                      hovertemplate="drift %{y:.2f} (raw %{customdata[0]:.2f}; "
                                    "%{customdata[1]:,.0f} → %{customdata[2]:,.0f} events)"
                                    "<extra>this user</extra>")
    fig.add_trace(go.Scatter(x=drift[PERIOD], y=drift[JS], mode="lines",
                             name="raw drift (unshrunk)",
                             line={"color": "#94a3b8", "width": 1.2, "dash": "dash"},
                             hoverinfo="skip"),
                  secondary_y=True)


def changers_table(top: pd.DataFrame, link: Callable[[str], Any],
                   labels: Mapping[str, str] | None = None) -> html.Div:
    """The most-changed users (``evolution.top_changers`` columns): a link per user, the
    evidence, shrunk and raw drift, what they gained and lost (zone names via ``labels``)."""
    names = dict(labels or {})

    def text(v: Any) -> str:
        return "–" if v is None or v != v else str(names.get(str(v), v))

    top = top.assign(link=top[USER].astype(str), evidence=[
        evidence(w, p, e) for w, p, e in zip(top["windows"], top["pairs"], top[EVENTS],
                                             strict=True)])
    return views.table(top, [("link", "User"), ("evidence", "Evidence"),
                             ("mean_js", "Drift"), ("raw_mean_js", "Raw drift"),
                             ("gained", "Gained most"), ("lost", "Lost most")],
                       formats={"link": link, "mean_js": views.num(2),
                                "raw_mean_js": views.num(2), "gained": text, "lost": text},
                       numeric=("mean_js", "raw_mean_js"))

"""A user's behaviour evolution for reports: activity trend, weekly rhythm, interest drift and
the path on a map, from the user's own events (canonical columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ...analytics.schema import CATEGORY, LAT, LON, TS, TZ_OFFSET, USER
from ...analytics.users import evolution
from ...models.data.features import estimate_offset_min, local_hour_weekday
from ..deckgl.deckmap import deck_spec, path_layer, scatter_layer, view_for
from ..views.charts import _style, drift_figure, empty_figure, rhythm_figure


def trend_figure(events: pd.DataFrame) -> go.Figure:
    """Events per week (or per day for spans under three weeks)."""
    if events.empty:
        return empty_figure("This user has no events.")
    ts = pd.to_datetime(events[TS])
    freq = "D" if (ts.max() - ts.min()) < pd.Timedelta(days=21) else "W-MON"
    counts = ts.dt.to_period(freq).value_counts().sort_index()
    x = counts.index.to_timestamp()
    fig = go.Figure(go.Bar(x=x, y=counts.to_numpy(), marker_color="#2563eb",
                           hovertemplate="%{x|%Y-%m-%d}: %{y} events<extra></extra>"))
    fig.update_yaxes(title_text="events per " + ("day" if freq == "D" else "week"))
    return _style(fig, 260, legend=False)


def rhythm(events: pd.DataFrame) -> pd.DataFrame:
    """Counts per local weekday (0 = Monday) and hour: ``weekday, hour, events``."""
    secs = pd.to_datetime(events[TS]).to_numpy("datetime64[us]").astype(np.int64) / 1e6
    tz = events[TZ_OFFSET].to_numpy(dtype=np.float64, na_value=np.nan)
    lon = events[LON].to_numpy(dtype=np.float64, na_value=np.nan)
    off = np.where(np.isnan(tz), estimate_offset_min(lon), np.nan_to_num(tz))
    hour, wday = local_hour_weekday(secs, off)
    counts = np.zeros((7, 24), dtype=np.int64)
    np.add.at(counts, (wday, hour), 1)
    w, h = np.meshgrid(np.arange(7), np.arange(24), indexing="ij")
    return pd.DataFrame({"weekday": w.ravel(), "hour": h.ravel(), "events": counts.ravel()})


def rhythm_of(events: pd.DataFrame) -> go.Figure:
    if events.empty:
        return empty_figure("This user has no events.")
    return rhythm_figure(rhythm(events), clock="local time")


def drift_of(events: pd.DataFrame) -> go.Figure:
    """Category mix per month and the divergence between consecutive months."""
    ev = events[events[CATEGORY].notna()]
    if ev.empty:
        return empty_figure("No categorised events, so no interest profile.")
    span = pd.to_datetime(ev[TS]).max() - pd.to_datetime(ev[TS]).min()
    freq = "week" if span < pd.Timedelta(days=120) else "month"
    profiles = evolution.interest_profiles(ev, freq)
    drift = evolution.interest_drift(profiles, min_events=3)
    return drift_figure(profiles, drift, pd.DataFrame(), freq=freq)


def path_figure(events: pd.DataFrame) -> go.Figure:
    """Static path (lon/lat lines, no tiles) of every event with coordinates."""
    ev = events[events[LAT].notna() & events[LON].notna()].sort_values(TS)
    if ev.empty:
        return empty_figure("This user's events have no coordinates.")
    fig = go.Figure(go.Scatter(x=ev[LON], y=ev[LAT], mode="lines+markers",
                               line={"color": "#94a3b8", "width": 1},
                               marker={"size": 5, "color": "#2563eb"},
                               hovertemplate="%{y:.4f}, %{x:.4f}<extra></extra>"))
    fig.update_xaxes(title_text="longitude")
    fig.update_yaxes(title_text="latitude", scaleanchor="x",
                     scaleratio=1 / max(np.cos(np.radians(float(ev[LAT].mean()))), 0.2))
    return _style(fig, 380, legend=False)


def path_spec(events: pd.DataFrame) -> dict | None:
    """Deck map spec of the user's full path; None without coordinates."""
    ev = events[events[LAT].notna() & events[LON].notna()].sort_values(TS)
    if ev.empty:
        return None
    layers = []
    if len(ev) >= 2:
        path = pd.DataFrame({USER: ["user"], "path": [ev[[LON, LAT]].to_numpy().tolist()]})
        layers.append(path_layer(path, id="path", color=[37, 99, 235, 150], width_px=2))
    layers.append(scatter_layer(ev[[LAT, LON]], id="points", color=[37, 99, 235],
                                radius_px=4))
    return deck_spec(layers, view_for(ev[LAT], ev[LON], quantile=0.01), basemap="none")


def evolution_figures(events: pd.DataFrame) -> dict[str, go.Figure]:
    """Trend, rhythm and drift figures of one user's events."""
    return {"trend": trend_figure(events), "rhythm": rhythm_of(events),
            "drift": drift_of(events)}

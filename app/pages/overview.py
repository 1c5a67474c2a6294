"""Overview: headline numbers, activity over time (split by behaviour or category), the weekly
rhythm, a forecast with its backtest, and cohort retention.

Dragging across the trend chart picks a time range. It is kept in ``ids.TIME_RANGE`` (a
session-storage ``dcc.Store`` the Map page also has), so the rhythm here and the Map page
follow it: the cross-filter. Every chart is computed in a callback after the page shows, inside
a loading spinner; the heavy work is memoised in app/analytics_service.py.
"""

from __future__ import annotations

from typing import Any

import dash
import pandas as pd
from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from ...analytics.schema import BEHAVIOR, CATEGORY
from ..services import analytics as svc
from ..services import workspace as services
from ..views import analytics as views
from ..views import charts, ids, pagekit, ui

dash.register_page(__name__, path="/overview", name="Overview", title="Overview · TrailScope",
                   order=1)

_FREQS = (("hour", "Hour"), ("day", "Day"), ("week", "Week"), ("month", "Month"))
_SPLITS = (("none", "Total"), (BEHAVIOR, "Behaviour"), (CATEGORY, "Category"))
_METRICS = (("events", "Events"), ("users", "Active users"))
_FREQ_LABELS = {"hour": "Hourly", "day": "Daily", "week": "Weekly"}
_FORECAST_FREQS = tuple((f, _FREQ_LABELS[f]) for f in svc.FORECAST_FREQS)


def layout(dataset: Any = None, **_query: Any) -> html.Div:
    name, notes = pagekit.resolve(dataset)
    header = ui.page_header("Overview", "How activity evolves over time.", name)
    if name is None:
        return html.Div([header, *notes, ui.no_dataset()])
    info = services.dataset_info(name)
    freq = svc.auto_freq(info.time_min, info.time_max)
    forecast_freq = svc.forecast_freq(name)  # the one the import job fitted ahead
    return html.Div([
        header, *notes,
        dcc.Store(id=ids.OVERVIEW_DATASET, data=name),
        dcc.Store(id=ids.TIME_RANGE, storage_type="session"),
        html.Div(ui.kpi_row(info), id=ids.OVERVIEW_KPIS),
        ui.card(className="card-trend", children=[
            views.card_head("Activity over time",
                            "Drag across the chart to pick a time range: the weekly rhythm "
                            "below and the Map page follow it."),
            views.controls(
                views.segmented(ids.OVERVIEW_FREQ, _FREQS, freq, "Granularity"),
                views.segmented(ids.OVERVIEW_SPLIT, _SPLITS, "none", "Split by"),
                views.segmented(ids.OVERVIEW_METRIC, _METRICS, "events", "Measure"),
            ),
            html.Div(className="range-row", children=[
                html.Div(id=ids.OVERVIEW_RANGE_NOTE, className="range-note"),
                html.Button("Clear range", id=ids.OVERVIEW_RANGE_CLEAR, n_clicks=0,
                            className="btn btn-small btn-ghost", style={"display": "none"}),
            ]),
            views.graph(ids.OVERVIEW_TREND, 340),
            html.Div(id=ids.OVERVIEW_TREND_NOTE, className="hint"),
        ]),
        html.Div(className="grid-2", children=[
            ui.card([views.card_head("Weekly rhythm", "Events by hour of day and weekday."),
                     views.graph(ids.OVERVIEW_RHYTHM, 300),
                     html.Div(id=ids.OVERVIEW_RHYTHM_NOTE, className="hint")]),
            ui.card([views.card_head("Forecast", "SARIMA forecast with its 95% interval; "
                                     "the backtest compares it with a seasonal-naive "
                                     "baseline."),
                     views.controls(views.segmented(ids.OVERVIEW_FORECAST_FREQ, _FORECAST_FREQS,
                                                    forecast_freq, "Series")),
                     views.graph(ids.OVERVIEW_FORECAST, 320),
                     dcc.Loading(html.Div(id=ids.OVERVIEW_BACKTEST), type="dot",
                                 color=views.LOADING_COLOR)]),
        ]),
        ui.card([views.card_head("Cohort retention",
                                 f"Users grouped by the {svc.cohort_freq(name)} of their first "
                                 "event: the share still active each period after."),
                 views.graph(ids.OVERVIEW_COHORTS, 300)]),
    ])


def _range_of(time_range: Any, name: str | None) -> dict | None:
    """The stored time range if it belongs to ``name``."""
    if isinstance(time_range, dict) and time_range.get("dataset") == name and (
            time_range.get("start") or time_range.get("end")):
        return time_range
    return None


def _filter(time_range: dict | None) -> svc.EventFilter | None:
    if not time_range:
        return None
    return svc.EventFilter.make(start=time_range.get("start"), end=time_range.get("end"))


# -- trend and its time range ----------------------------------------------------------------
@callback(
    Output(ids.OVERVIEW_TREND, "figure"),
    Output(ids.OVERVIEW_TREND_NOTE, "children"),
    Input(ids.OVERVIEW_FREQ, "value"),
    Input(ids.OVERVIEW_SPLIT, "value"),
    Input(ids.OVERVIEW_METRIC, "value"),
    State(ids.OVERVIEW_DATASET, "data"),
)
def draw_trend(freq: str, split: str, metric: str, name: str | None) -> tuple[Any, Any]:
    if not name:
        return no_update, no_update

    def build() -> tuple[Any, Any]:
        df = svc.trend(name, freq, split)
        partial = svc.partial_periods(name, freq)
        fig = charts.trend_figure(df, split, "users" if metric == "users" else "events", freq,
                                  partial=partial)
        note = svc.partial_note(partial, freq, "shaded, and left out of the forecast and of "
                                "trend tests")
        return fig, " ".join(n for n in (note, svc.stray_note(svc.data_span(name))) if n)

    return views.guarded("the activity trend", build, lambda m: (views.error_figure(m), ""))


def range_from_events(relayout: dict | None, selected: dict | None,
                      triggers: set[str]) -> tuple[str | None, str | None] | None:
    """(start, end) picked on the trend chart, ``(None, None)`` when its axis was reset, None
    when the events say nothing about the time axis. ``triggers`` are the changed props."""
    if "selectedData" in triggers:
        xs = ((selected or {}).get("range") or {}).get("x")
        if xs and len(xs) == 2:
            return str(min(xs)), str(max(xs))
    if "relayoutData" not in triggers or not relayout:
        return None
    if relayout.get("xaxis.autorange"):
        return None, None
    lo, hi = relayout.get("xaxis.range[0]"), relayout.get("xaxis.range[1]")
    if lo is None and isinstance(relayout.get("xaxis.range"), list):
        lo, hi = relayout["xaxis.range"][:2]
    if lo is None or hi is None:
        return None
    return str(min(lo, hi)), str(max(lo, hi))


@callback(
    Output(ids.TIME_RANGE, "data"),
    Input(ids.OVERVIEW_TREND, "relayoutData"),
    Input(ids.OVERVIEW_TREND, "selectedData"),
    Input(ids.OVERVIEW_RANGE_CLEAR, "n_clicks"),
    State(ids.OVERVIEW_DATASET, "data"),
    prevent_initial_call=True,
)
def pick_range(relayout: dict | None, selected: dict | None, _clear: int,
               name: str | None) -> Any:
    if not name:
        return no_update
    if ctx.triggered_id == ids.OVERVIEW_RANGE_CLEAR:
        return None
    props = {t["prop_id"].rsplit(".", 1)[-1] for t in ctx.triggered}
    picked = range_from_events(relayout, selected, props)
    if picked is None:
        return no_update
    start, end = picked
    if start is None:
        return None
    try:
        flt = svc.EventFilter.make(start=start, end=end)
    except svc.ServiceError:
        return no_update
    return {"dataset": name, "start": flt.start, "end": flt.end}


@callback(
    Output(ids.OVERVIEW_RANGE_NOTE, "children"),
    Output(ids.OVERVIEW_RANGE_CLEAR, "style"),
    Input(ids.TIME_RANGE, "data"),
    State(ids.OVERVIEW_DATASET, "data"),
)
def show_range(time_range: Any, name: str | None) -> tuple[Any, Any]:
    picked = _range_of(time_range, name)
    if not name or not picked:
        return (views.range_chip(name or "", None,
                                 idle="Showing the whole dataset. Drag across the chart to "
                                      "focus on a time range."), {"display": "none"})
    return views.range_chip(name, picked), {}


# -- rhythm, forecast, cohorts ---------------------------------------------------------------
@callback(
    Output(ids.OVERVIEW_RHYTHM, "figure"),
    Output(ids.OVERVIEW_RHYTHM_NOTE, "children"),
    Input(ids.TIME_RANGE, "data"),
    Input(ids.OVERVIEW_DATASET, "data"),
)
def draw_rhythm(time_range: Any, name: str | None) -> tuple[Any, Any]:
    if not name:
        return no_update, no_update
    flt = _filter(_range_of(time_range, name))

    def build() -> tuple[Any, Any]:
        r = svc.rhythm(name, flt)
        # the clock is said in the note below: as the axis title it ran past a half card
        clock = r.attrs.get("clock", "")
        note = _periods_note(name, flt, r)
        return charts.rhythm_figure(r), ([f"Hours in {clock}. "] if clock else []) + note

    return views.guarded("the weekly rhythm", build, lambda m: (views.error_figure(m), ""))


def _periods_note(name: str, flt: svc.EventFilter | None, rhythm: pd.DataFrame) -> Any:
    strong = svc.dominant_periods(name, "hour", flt)
    peak = rhythm.loc[rhythm["events"].idxmax()] if rhythm["events"].sum() else None
    parts: list[Any] = []
    if peak is not None:
        parts += ["Busiest hour: ", html.Strong(f"{charts.WEEKDAYS[int(peak['weekday'])]} "
                                                f"{int(peak['hour']):02d}:00"), ". "]
    if len(strong):
        text = ", ".join(f"{_fmt_period(p)} (strength {s:.2f})"
                         for p, s in zip(strong["period_length"], strong["strength"],
                                         strict=True))
        parts += ["Repeating cycles in the hourly series: ", html.Strong(text),
                  ". Each stands out from shuffled copies of the series and repeats at least "
                  "three times; a later cycle's strength is what it adds to the ones before."]
    else:
        parts.append("No repeating cycle in the hourly series stands out from chance.")
    return parts


def _fmt_period(p: Any) -> str:
    hours = pd.Timedelta(p) / pd.Timedelta(hours=1)
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return "1 week" if days == 7 else f"{days} day{'s' if days > 1 else ''}"
    return f"{hours:g} hours"


@callback(
    Output(ids.OVERVIEW_FORECAST, "figure"),
    Output(ids.OVERVIEW_BACKTEST, "children"),
    Input(ids.OVERVIEW_FORECAST_FREQ, "value"),
    State(ids.OVERVIEW_DATASET, "data"),
)
def draw_forecast(freq: str, name: str | None) -> tuple[Any, Any]:
    if not name:
        return no_update, no_update

    def build() -> tuple[Any, Any]:
        res = svc.forecast(name, freq)
        fig = charts.forecast_figure(res.history, res.forecast, freq, partial=res.partial)
        return fig, _backtest_table(res)

    # the message wraps in the half-width card (the services' sentences run to 160 chars)
    return views.guarded("the forecast", build,
                         lambda m: (charts.empty_figure(m, 320, wrap=60), ""))


def _backtest_table(res: svc.ForecastResult) -> Any:
    notes = [views.hint(n) for n in (res.partial_note,) if n]
    if res.backtest.empty:
        return html.Div([views.hint(res.note or "No backtest."), *notes])
    names = {"sarima": f"{res.model or 'SARIMA'}",
             "seasonal_naive": "Seasonal naive (baseline)"}
    bt = res.backtest.assign(model=res.backtest["model"].map(names).fillna(res.backtest["model"]))
    best = bt.loc[bt["mase"].fillna(bt["mae"]).idxmin(), "model"]
    origins = int(bt["origins"].iloc[0])
    verdict = "beats" if best == names["sarima"] else "does not beat"
    columns = [("model", "Model"), ("mase", "MASE"), ("smape", "sMAPE")]
    if bt["mape"].notna().all():
        columns.append(("mape", "MAPE"))
    columns.append(("mae", "MAE"))
    return html.Div([
        views.table(bt, columns,
                    formats={"mase": views.num(2), "smape": views.num(1, "%"),
                             "mape": views.num(1, "%"), "mae": views.num(1)},
                    numeric=("mase", "smape", "mape", "mae"),
                    row_class=lambda r: "best" if r["model"] == best else ""),
        views.hint(f"Rolling-origin backtest on complete {res.freq}s: {origins} origins, each "
                   f"predicting the next {res.horizon} {res.freq}s from the data before it. "
                   "MASE is the error relative to repeating last season within the fitted "
                   f"history (below 1 is better than that). The model {verdict} the baseline."),
        *[views.hint(n) for n in (res.mape_note,) if n], *notes,
    ])


@callback(
    Output(ids.OVERVIEW_COHORTS, "figure"),
    Input(ids.OVERVIEW_DATASET, "data"),
)
def draw_cohorts(name: str | None) -> Any:
    if not name:
        return no_update

    def build() -> Any:
        freq = svc.cohort_freq(name)
        return charts.cohort_figure(svc.cohorts(name, freq), freq)

    return views.guarded("cohort retention", build, views.error_figure)

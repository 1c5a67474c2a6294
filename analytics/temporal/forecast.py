"""Forecasting an activity series with (S)ARIMA, and a rolling-origin backtest against a
seasonal-naive baseline, so a forecast is only trusted when it beats "same as last week".

Input is an evenly spaced series: an ``activity_series`` output (with fill=True) or a pandas
Series with a DatetimeIndex. statsmodels is imported inside the functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..engine import EVENTS, PERIOD
from . import periods

FORECAST = "forecast"
LOWER = "lower"
UPPER = "upper"
MODEL = "model"
ORIGIN = "origin"
ORIGINS = "origins"
HORIZON = "horizon"
MAE = "mae"
MAPE = "mape"      # percent; NaN when an actual is near zero (see errors)
SMAPE = "smape"    # percent, 0..200
MASE = "mase"      # MAE over the in-sample seasonal-naive MAE of the fit window
NEAR_ZERO = "near_zero"
SARIMA = "sarima"
SEASONAL_NAIVE = "seasonal_naive"

#: An actual at or below this share of the fit window's mean counts as near zero, and MAPE is
#: not reported for a backtest that has one.
NEAR_ZERO_SHARE = 0.05
#: Default seasonal period by spacing: a day in hours, a week in days, a year in weeks/months.
SEASONS = {pd.Timedelta(hours=1): 24, pd.Timedelta(days=1): 7, pd.Timedelta(weeks=1): 52}


@dataclass(frozen=True)
class ModelSpec:
    """The (S)ARIMA orders used; ``season`` 0 means no seasonal part."""

    order: tuple[int, int, int] = (1, 0, 1)
    seasonal_order: tuple[int, int, int] = (0, 1, 1)
    season: int = 0


def _as_series(series: pd.DataFrame | pd.Series, value: str) -> pd.Series:
    if isinstance(series, pd.DataFrame):
        if value not in series.columns or PERIOD not in series.columns:
            raise ValueError(f"the series needs columns {PERIOD!r} and {value!r}; got "
                             f"{list(series.columns)} (use analytics.temporal.activity_series)")
        s = pd.Series(series[value].to_numpy(dtype=float),
                      index=pd.DatetimeIndex(series[PERIOD]))
    else:
        s = series.astype(float)
    if not isinstance(s.index, pd.DatetimeIndex):
        raise ValueError("the series needs a DatetimeIndex of period starts")
    if s.isna().any():
        raise ValueError("the series has missing values; fill empty periods with 0 "
                         "(activity_series(..., fill=True) does)")
    return s.sort_index()


def _step(s: pd.Series) -> pd.Timedelta | pd.DateOffset:
    """The series' spacing: one calendar month for month starts, else a fixed Timedelta."""
    if len(s) < 2:
        raise ValueError("a forecast needs at least 2 periods of history")
    idx = pd.DatetimeIndex(s.index)
    months = idx.year * 12 + idx.month
    if (idx.day == 1).all() and (np.diff(months) == 1).all():
        return pd.DateOffset(months=1)
    return pd.Timedelta(idx[1] - idx[0])


def default_spec(s: pd.Series, season: int | None = None) -> ModelSpec:
    """The spec used when none is given: seasonal differencing at the natural season when
    the series covers at least three seasons, else a plain ARIMA(1,0,1)."""
    if season is None:
        step = _step(s)
        season = 12 if isinstance(step, pd.DateOffset) else SEASONS.get(step, 0)
    if season and len(s) >= 3 * season:
        return ModelSpec(season=season)
    return ModelSpec(order=(1, 0, 1), seasonal_order=(0, 0, 0), season=0)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence statsmodels' convergence chatter and the divide warnings a perfectly flat or
    periodic series (zero residual variance) gives; results stay usable."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        yield


def _fit(y: np.ndarray, spec: ModelSpec):
    """Fit the (S)ARIMA; returns a statsmodels results object on the undifferenced series.

    Parameters are estimated on the differenced series (``simple_differencing``, with the
    scale concentrated out), which is several times faster than the full state space and
    gives the same estimates up to the first few observations; the full model is then only
    filtered with them, so forecasts and intervals come out on the original scale.
    """
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    seasonal = (*spec.seasonal_order, spec.season) if spec.season else (0, 0, 0, 0)
    differenced = spec.order[1] > 0 or seasonal[1] > 0
    kwargs = {"order": spec.order, "seasonal_order": seasonal,
              "trend": None if differenced else "c", "concentrate_scale": True,
              "enforce_stationarity": False, "enforce_invertibility": False}
    with _quiet():
        if not differenced:
            return SARIMAX(y, **kwargs).fit(disp=False, maxiter=50)
        params = SARIMAX(y, simple_differencing=True, **kwargs).fit(
            disp=False, maxiter=50).params
        return SARIMAX(y, **kwargs).filter(params)


def forecast(series: pd.DataFrame | pd.Series, horizon: int = 14, value: str = EVENTS,
             spec: ModelSpec | None = None, alpha: float = 0.05,
             max_history: int | None = 730) -> pd.DataFrame:
    """Forecast the next ``horizon`` periods with a confidence interval of level 1 - alpha.

    ``spec`` defaults to ``default_spec`` (SARIMA(1,0,1)(0,1,1,s) with s = 7 for a daily
    series, 24 hourly, 52 weekly, 12 monthly, when there are three seasons of data). Only the
    last ``max_history`` periods are fitted, which keeps long hourly series fast. Counts
    cannot be negative, so forecasts and bounds are clipped at 0.

    Columns: ``period, forecast, lower, upper``.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 period, got {horizon}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    s = _as_series(series, value)
    if max_history:
        s = s.iloc[-max_history:]
    if len(s) < 8:
        raise ValueError(f"a forecast needs at least 8 periods of history, got {len(s)}; "
                         "pick a finer granularity or a longer time range")
    spec = spec or default_spec(s)
    res = _fit(s.to_numpy(), spec)
    with _quiet():
        frame = res.get_forecast(horizon).summary_frame(alpha=alpha)
    step = _step(s)
    periods = [s.index[-1] + step * (i + 1) for i in range(horizon)]
    return pd.DataFrame({
        PERIOD: pd.DatetimeIndex(periods).astype("datetime64[us]"),
        FORECAST: np.clip(frame["mean"].to_numpy(), 0, None),
        LOWER: np.clip(frame["mean_ci_lower"].to_numpy(), 0, None),
        UPPER: np.clip(frame["mean_ci_upper"].to_numpy(), 0, None),
    })


def errors(actual: np.ndarray, predicted: np.ndarray, scale: float = float("nan"),
           near_zero: float = 0.0) -> dict[str, float]:
    """MAE, MASE, sMAPE and MAPE of one forecast.

    * MASE is the MAE over ``scale``, the in-sample MAE of a naive forecast on the fitted
      history (see ``naive_scale``): below 1 the forecast beats that naive rule; NaN when the
      scale is 0 or unknown.
    * sMAPE is in percent (0..200); a term whose actual and prediction are both 0 counts 0.
    * MAPE is in percent, NaN when any actual is at or below ``near_zero`` (0: any zero
      actual): a percentage of a near-zero actual explodes (one day with 3 events instead of
      the usual 300 reads as 3,000%), so the metric is not reported then.
    """
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    abs_err = np.abs(a - p)
    denom = np.abs(a) + np.abs(p)
    smape_terms = np.divide(2 * abs_err, denom, out=np.zeros_like(abs_err), where=denom > 0)
    mae = float(abs_err.mean())
    small = np.abs(a) <= near_zero
    return {
        MAE: mae,
        MASE: mae / scale if np.isfinite(scale) and scale > 0 else float("nan"),
        SMAPE: float(100 * smape_terms.mean()),
        MAPE: float("nan") if small.any() else float(100 * np.mean(abs_err / np.abs(a))),
    }


def naive_scale(history: np.ndarray, season: int) -> float:
    """MASE's scale: the in-sample MAE of the seasonal-naive forecast (each value predicted
    by the value one ``season`` earlier; the previous value when ``season`` is 0) over
    ``history``, the window the model is fitted on (Hyndman and Koehler, 2006). NaN when the
    history is not longer than a season."""
    y = np.asarray(history, dtype=float)
    lag = season or 1
    if len(y) <= lag:
        return float("nan")
    return float(np.abs(y[lag:] - y[:-lag]).mean())


def near_zero_level(history: np.ndarray) -> float:
    """Actuals at or below this are "near zero" for MAPE: NEAR_ZERO_SHARE of the history's
    mean."""
    y = np.asarray(history, dtype=float)
    return NEAR_ZERO_SHARE * float(y.mean()) if len(y) else 0.0


def backtest_errors(series: pd.DataFrame | pd.Series, horizon: int = 7, origins: int = 8,
                    value: str = EVENTS, spec: ModelSpec | None = None,
                    step: int | None = None, max_history: int | None = 730) -> pd.DataFrame:
    """Rolling-origin errors of the model and of the seasonal-naive baseline, per origin.

    The last origin leaves exactly ``horizon`` periods to predict; earlier origins move back
    by ``step`` periods (default: ``horizon``). The model's parameters are estimated once, on
    the history before the first origin (the fit window), then each origin re-filters the
    data up to itself with those parameters, so no origin sees its future. The baseline
    repeats the last season (the last value when there is no season). MASE is scaled by the
    in-sample seasonal-naive MAE of the fit window (``naive_scale`` with the model's season);
    MAPE is NaN at an origin whose actuals include one at or below 5% of the fit window's
    mean (``near_zero_level``). Columns: ``model, origin, horizon, mae, mase, smape, mape``.
    """
    s = _as_series(series, value)
    if max_history:
        s = s.iloc[-max_history:]
    step = step or horizon
    spec = spec or default_spec(s)
    first = len(s) - horizon - (origins - 1) * step
    if origins < 1 or first < max(8, 2 * spec.season + 2):
        raise ValueError(
            f"{len(s)} periods are too few for {origins} origins of horizon {horizon} "
            f"(step {step}); use fewer origins, a shorter horizon or more history")
    y = s.to_numpy()
    res = _fit(y[:first], spec)
    scale, floor = naive_scale(y[:first], spec.season), near_zero_level(y[:first])
    rows = []
    for k in range(origins):
        origin = first + k * step
        actual = y[origin:origin + horizon]
        with _quiet():
            fitted = res if origin == first else res.apply(y[:origin])
            model_pred = np.clip(fitted.forecast(horizon), 0, None)
        rows.append({MODEL: SARIMA, ORIGIN: s.index[origin], HORIZON: horizon,
                     **errors(actual, model_pred, scale, floor)})
        rows.append({MODEL: SEASONAL_NAIVE, ORIGIN: s.index[origin], HORIZON: horizon,
                     **errors(actual, seasonal_naive(y[:origin], horizon, spec.season),
                              scale, floor)})
    out = pd.DataFrame(rows)
    out.attrs[NEAR_ZERO] = floor
    return out


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last ``season`` values (the last value when season is 0) ``horizon`` times."""
    season = season or 1
    last = np.asarray(history, dtype=float)[-season:]
    return np.resize(last, horizon) if len(last) == season else np.full(horizon, last[-1])


def backtest(series: pd.DataFrame | pd.Series, horizon: int = 7, origins: int = 8,
             value: str = EVENTS, spec: ModelSpec | None = None,
             step: int | None = None, max_history: int | None = 730) -> pd.DataFrame:
    """Mean errors over the rolling origins, one row per model (SARIMA, seasonal naive).

    Columns: ``model, origins, horizon, mae, mape, smape, mase`` (see ``backtest_errors``);
    MAPE is NaN when it is NaN at any origin (an actual near zero somewhere in the backtest
    window). ``attrs["near_zero"]`` holds the level below which an actual counts as near zero.
    """
    per_origin = backtest_errors(series, horizon, origins, value, spec, step, max_history)
    out = per_origin.groupby(MODEL, sort=False).agg(
        **{ORIGINS: (ORIGIN, "count"), HORIZON: (HORIZON, "first"), MAE: (MAE, "mean"),
           MAPE: (MAPE, _mean_or_nan), SMAPE: (SMAPE, "mean"), MASE: (MASE, "mean")})
    out = out.reset_index()
    out.attrs[NEAR_ZERO] = per_origin.attrs[NEAR_ZERO]
    return out


def _mean_or_nan(x: pd.Series) -> float:
    return float(x.mean(skipna=False))


# -- the Overview page's forecast ---------------------------------------------------------------
def _forecast_and_backtest(series: pd.DataFrame | pd.Series, horizon: int, alpha: float,
                           spec: ModelSpec | None, max_history: int | None, origins: int,
                           ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    pred = forecast(series, horizon=horizon, alpha=alpha, spec=spec, max_history=max_history)
    note = ""
    bt = pd.DataFrame()
    for n in dict.fromkeys((origins, 3)):
        try:
            bt = backtest(series, horizon=horizon, origins=n, spec=spec,
                          max_history=max_history)
            break
        except ValueError as exc:
            note = f"No backtest: {exc}"
    return pred, bt, "" if not bt.empty else note


@dataclass(frozen=True)
class CompleteForecast:
    """A forecast fitted on complete periods only (``complete_forecast``)."""

    forecast: pd.DataFrame    # period, forecast, lower, upper
    backtest: pd.DataFrame    # model, origins, horizon, mae, mape, smape, mase (may be empty)
    note: str                 # why the backtest is missing, else ""
    fitted: pd.DataFrame      # the complete periods the model saw: period, events
    spec: ModelSpec           # the (S)ARIMA orders fitted
    partial: pd.DataFrame     # the periods left out: period, coverage, edge, why
    mape_note: str            # why MAPE is not reported, else ""


def complete_forecast(series: pd.DataFrame, freq: str, first: Any, last: Any, horizon: int,
                      alpha: float = 0.05, spec: ModelSpec | None = None,
                      max_history: int | None = 730, origins: int = 8) -> CompleteForecast:
    """``forecast`` and ``backtest`` of the complete periods of ``series`` (an
    ``activity_series`` at ``freq`` of events from ``first`` to ``last``; periods outside
    that span, such as those of stray timestamps, are dropped): the partial first and last periods
    (``periods.partial_periods``) are left out of the fit, the backtest and MASE's scale, so
    a day with a tenth of a day's data neither drags the forecast towards zero nor counts
    as a miss. The forecast starts right after the last complete period, so it covers a
    partial last period too. Raises ValueError when no forecast can be made, which includes
    fewer complete periods than ``horizon`` (eight days do not tell the next fourteen)."""
    series = periods.overlapping_rows(series, freq, first, last)
    partial = periods.partial_periods(pd.DatetimeIndex(series[PERIOD]), freq, first, last)
    fitted = periods.complete_rows(series, freq, first, last)[[PERIOD, EVENTS]]
    if len(fitted) < max(8, horizon):
        raise ValueError(f"a forecast {horizon} {freq}s ahead needs at least "
                         f"{max(8, horizon)} complete {freq}s of history, got {len(fitted)}; "
                         "pick a finer granularity or a longer time range")
    if max_history:
        fitted = fitted.iloc[-max_history:].reset_index(drop=True)
    spec = spec or default_spec(_as_series(fitted, EVENTS))
    pred, bt, note = _forecast_and_backtest(fitted, horizon, alpha, spec, None, origins)
    return CompleteForecast(forecast=pred, backtest=bt, note=note, fitted=fitted, spec=spec,
                            partial=partial, mape_note=mape_note(bt))


def describe_spec(spec: ModelSpec) -> str:
    """The model as users read it: "SARIMA(1,0,1)(0,1,1)[7]" or "ARIMA(1,0,1)"."""
    order = ",".join(map(str, spec.order))
    if not spec.season:
        return f"ARIMA({order})"
    return f"SARIMA({order})({','.join(map(str, spec.seasonal_order))})[{spec.season}]"


def mape_note(bt: pd.DataFrame) -> str:
    """Why a backtest reports no MAPE, for users; "" when it does (or has no rows)."""
    if bt.empty or bt[MAPE].notna().all():
        return ""
    level = bt.attrs.get(NEAR_ZERO, 0.0)
    return (f"MAPE is not shown: some actual values in the backtest are near zero (at most "
            f"{level:,.1f}, {NEAR_ZERO_SHARE:.0%} of the mean), where percentage errors "
            "explode; MASE and sMAPE stay meaningful.")

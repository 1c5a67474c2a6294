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

import numpy as np
import pandas as pd

from ..engine import EVENTS, PERIOD

FORECAST = "forecast"
LOWER = "lower"
UPPER = "upper"
MODEL = "model"
ORIGIN = "origin"
ORIGINS = "origins"
HORIZON = "horizon"
MAE = "mae"
MAPE = "mape"      # percent, over the actual values that are not zero
SMAPE = "smape"    # percent, 0..200
SARIMA = "sarima"
SEASONAL_NAIVE = "seasonal_naive"

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


def errors(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, MAPE (percent, over non-zero actuals; NaN when all are zero) and sMAPE (percent,
    terms where actual and prediction are both 0 count as 0)."""
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    abs_err = np.abs(a - p)
    nz = a != 0
    denom = np.abs(a) + np.abs(p)
    smape_terms = np.divide(2 * abs_err, denom, out=np.zeros_like(abs_err), where=denom > 0)
    return {
        MAE: float(abs_err.mean()),
        MAPE: float(100 * np.mean(abs_err[nz] / np.abs(a[nz]))) if nz.any() else float("nan"),
        SMAPE: float(100 * smape_terms.mean()),
    }


def backtest_errors(series: pd.DataFrame | pd.Series, horizon: int = 7, origins: int = 8,
                    value: str = EVENTS, spec: ModelSpec | None = None,
                    step: int | None = None, max_history: int | None = 730) -> pd.DataFrame:
    """Rolling-origin errors of the model and of the seasonal-naive baseline, per origin.

    The last origin leaves exactly ``horizon`` periods to predict; earlier origins move back
    by ``step`` periods (default: ``horizon``). The model's parameters are estimated once, on
    the history before the first origin, then each origin re-filters the data up to itself
    with those parameters, so no origin sees its future. The baseline repeats the last season
    (the last value when there is no season). Columns: ``model, origin, horizon, mae, mape,
    smape``.
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
    rows = []
    for k in range(origins):
        origin = first + k * step
        actual = y[origin:origin + horizon]
        with _quiet():
            fitted = res if origin == first else res.apply(y[:origin])
            model_pred = np.clip(fitted.forecast(horizon), 0, None)
        rows.append({MODEL: SARIMA, ORIGIN: s.index[origin], HORIZON: horizon,
                     **errors(actual, model_pred)})
        rows.append({MODEL: SEASONAL_NAIVE, ORIGIN: s.index[origin], HORIZON: horizon,
                     **errors(actual, seasonal_naive(y[:origin], horizon, spec.season))})
    return pd.DataFrame(rows)


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last ``season`` values (the last value when season is 0) ``horizon`` times."""
    season = season or 1
    last = np.asarray(history, dtype=float)[-season:]
    return np.resize(last, horizon) if len(last) == season else np.full(horizon, last[-1])


def backtest(series: pd.DataFrame | pd.Series, horizon: int = 7, origins: int = 8,
             value: str = EVENTS, spec: ModelSpec | None = None,
             step: int | None = None, max_history: int | None = 730) -> pd.DataFrame:
    """Mean errors over the rolling origins, one row per model (SARIMA, seasonal naive).

    Columns: ``model, origins, horizon, mae, mape, smape``; see ``backtest_errors``.
    """
    per_origin = backtest_errors(series, horizon, origins, value, spec, step, max_history)
    out = per_origin.groupby(MODEL, sort=False).agg(
        **{ORIGINS: (ORIGIN, "count"), HORIZON: (HORIZON, "first"), MAE: (MAE, "mean"),
           MAPE: (MAPE, "mean"), SMAPE: (SMAPE, "mean")})
    return out.reset_index()


# -- the Overview page's forecast ---------------------------------------------------------------
def page_forecast(series: pd.DataFrame | pd.Series, horizon: int, alpha: float,
                  spec: ModelSpec | None, max_history: int | None, origins: int,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(forecast, backtest, note): ``forecast`` and then ``backtest`` with ``origins``
    origins, or 3 when the series is too short for them; the note says why there is no
    backtest ("" when there is one). Raises ValueError when no forecast can be made."""
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

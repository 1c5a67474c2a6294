"""The Overview forecast's backtest with and without partial periods (issue #12).

    python -m bench.forecast_bench            # full NYC (day, week, hour) and Taobao (hour)

For each dataset the events series at each granularity is backtested three ways, with the
Overview's own settings (``app.services.analytics``: HORIZONS, ORIGINS, HISTORY; 3 origins
when the series is too short for the page's): the **whole series** as counted (what the page
fitted before), with **strays cut** (periods outside the data's span, ``services.data_span``)
and **complete only** (the partial first and last periods left out too:
``analytics.temporal.periods.complete_rows``, what the page fits now). MASE is scaled by each
fit window's own in-sample seasonal-naive error, so compare sMAPE across rows; the seasonal
naive baseline is measured in the same run.
"""

from __future__ import annotations

import os
import tempfile
import time


def main() -> None:
    os.environ["TRAILSCOPE_HOME"] = tempfile.mkdtemp(prefix="forecast-bench-")
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.temporal import forecast, periods
    from trailscope.app.services import analytics as svc
    from trailscope.app.services import workspace

    from bench.datasets import NYC, TAOBAO

    print(f"forecast backtest with and without partial periods; load {os.getloadavg()[0]:.1f}")
    for name, path, freqs in (("nyc", NYC, ("day", "week", "hour")),
                              ("taobao", TAOBAO, ("hour",))):
        import_file(workspace.get_store(), path, name=name)
        span = svc.data_span(name)
        print(f"{name}: span {span.first} .. {span.last}, {span.strays} stray events")
        for freq in freqs:
            whole = svc.event_series(name, freq)
            inside = periods.overlapping_rows(whole, freq, span.first, span.last)
            spec = (forecast.ModelSpec((1, 0, 0), (0, 1, 1), 24) if freq == "hour" else None)
            for label, series in (("whole series", whole), ("strays cut", inside),
                                  ("complete only", periods.complete_rows(
                                      inside, freq, span.first, span.last))):
                started = time.perf_counter()
                bt = None
                for origins in (svc.ORIGINS[freq], 3):
                    try:
                        bt = forecast.backtest(series, svc.HORIZONS[freq], origins, spec=spec,
                                               max_history=svc.HISTORY[freq]).set_index("model")
                        break
                    except ValueError:
                        continue
                if bt is None:
                    print(f"  {freq:5} {label:13} n={len(series):5}  too short to backtest")
                    continue
                sar, naive = bt.loc["sarima"], bt.loc["seasonal_naive"]
                print(f"  {freq:5} {label:13} n={len(series):5} origins={origins}  SARIMA MASE "
                      f"{sar['mase']:.3f} sMAPE {sar['smape']:.1f}%  |  seasonal naive MASE "
                      f"{naive['mase']:.3f} sMAPE {naive['smape']:.1f}%  "
                      f"({time.perf_counter() - started:.1f} s)")
    workspace.close_store()


if __name__ == "__main__":
    main()

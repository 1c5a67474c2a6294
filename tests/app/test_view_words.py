"""Words the views show (app/views/analytics.py, charts.py, data.py), on real NYC data: counts in
the right number, no Python type names or reprs."""

from __future__ import annotations

import pandas as pd
from trailscope.analytics.ingest.pipeline import sniff
from trailscope.analytics.temporal import cohorts
from trailscope.app.views import analytics as views
from trailscope.app.views import charts
from trailscope.app.views import data as data_views

from tests.conftest import NYC


def test_cohort_hover_counts_periods_in_the_right_number() -> None:
    ev = pd.read_csv(NYC, usecols=["user_id", "stan_poi_id", "utc_time_minute"]).rename(
        columns={"stan_poi_id": "item_id", "utc_time_minute": "ts"})
    ev["ts"] = pd.to_datetime(ev["ts"])
    table = cohorts.retention_table(cohorts.cohort_retention(ev, "month"))
    assert len(table.columns) >= 3
    fig = charts.cohort_figure(table, "month")
    heat = fig.data[0]
    assert "%{customdata}" in heat.hovertemplate and "s later" not in heat.hovertemplate
    said = [list(row) for row in heat.customdata]
    assert len(said) == len(table) and all(len(r) == len(table.columns) for r in said)
    assert said[0][:3] == ["its first month", "1 month later", "2 months later"]


def test_an_unexpected_error_names_no_python_type() -> None:
    def broken() -> None:
        raise KeyError("zone")

    msg = views.guarded("the zones", broken, lambda m: m)
    assert msg.startswith("Computing the zones failed") and "bug in TrailScope" in msg
    assert "KeyError" not in msg


def test_a_double_colon_delimiter_is_quoted_not_a_repr(tmp_path) -> None:
    """MovieLens' .dat files are separated by '::': the panel quotes it like a file value."""
    raw = pd.read_csv(NYC, nrows=40)
    path = tmp_path / "ratings.dat"
    path.write_text("".join(f"{u}::{i}::4::{1333476000 + k * 60}\n" for k, (u, i) in
                            enumerate(zip(raw["user_id"], raw["stan_poi_id"], strict=True))))
    sn = sniff(path)
    assert sn.delimiter == "::"
    panel = data_views.sniff_summary(sn, path.name, 100)
    facts = {f.children[0].children: f.children[1].children for f in panel.children[0].children}
    assert facts["Delimiter"] == "“::”"

"""Services, figure builders and page layouts of Overview, Map and Users on real data: the first
6,000 check-ins of the NYC slice (52 users over ten months), the Taobao slice (no coordinates),
and, with the complete files ($TRAILSCOPE_DATA, tests marked full_data), MovieLens 100K with
its genres and 5,000 MovieLens ratings without genres (no coordinates, no categories). Service
results are checked against the same numbers computed in pandas from the stored events, not
against constants.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import trailscope.app.main  # noqa: F401 (creates the Dash app, which registers app/pages)
from trailscope.analytics.schema import BEHAVIOR, CATEGORY, LAT, TS, TZ_OFFSET, USER
from trailscope.analytics.users import evolution
from trailscope.app.services import analytics as svc
from trailscope.app.services import maps as map_service
from trailscope.app.services import users
from trailscope.app.services import workspace as services
from trailscope.app.views import charts
from trailscope.app.views import maps as map_views

from tests.app.helpers import save_movielens, texts
from tests.conftest import MOVIELENS, NYC, TAOBAO, has_full_data

NYC_ROWS = 6000


def _nyc_slice(dst: Path, n: int = NYC_ROWS) -> Path:
    with gzip.open(NYC, "rt", encoding="utf-8") as src:
        dst.write_text("".join(line for _, line in zip(range(n + 1), src, strict=False)))
    return dst


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Any:
    """A workspace with ``nyc`` (NYC slice, imported through the real importer), ``tb`` (Taobao
    slice) and, with the complete files, ``ml`` and ``ml_plain``."""
    from trailscope.analytics.ingest import pipeline as ingest

    home = tmp_path_factory.mktemp("pages_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAILSCOPE_HOME", str(home))
        services.close_store()
        services.set_default_dataset(None)
        store = services.get_store()
        ingest.import_file(store, _nyc_slice(home / "nyc_slice.csv"), name="nyc")
        ingest.import_file(store, TAOBAO, name="tb")  # no coordinates
        if has_full_data():
            ingest.import_file(store, MOVIELENS, name="ml")  # genres come from u.item next to it
            save_movielens(store, "ml_plain", 5_000)  # no genres, no coordinates
        yield store
        services.close_store()


@pytest.fixture(scope="module")
def nyc_events(ws) -> pd.DataFrame:
    return ws.events("nyc")


def _texts(component: Any) -> str:
    return " ".join(texts(component))


# -- filter ---------------------------------------------------------------------------------
def test_event_filter_matches_pandas_on_the_stored_events(ws, nyc_events):
    cats = nyc_events[CATEGORY].value_counts().index[:3].tolist()
    flt = svc.EventFilter.make(start="2012-06-01", end="2012-09-01 12:00", categories=cats)
    table, where, params = svc.sql_where("nyc", flt)
    got = ws.query_df(f"SELECT count(*) AS n FROM {table} WHERE {where}", params)["n"][0]
    ts = nyc_events[TS]
    want = ((ts >= "2012-06-01") & (ts < "2012-09-01 12:00")
            & nyc_events[CATEGORY].isin(cats)).sum()
    assert got == want > 0
    assert svc.kpis("nyc", flt)["events"][0] == want  # the Ibis form of the same filter


def test_user_segments_partition_users_into_equal_groups(ws, nyc_events):
    per_user = nyc_events.groupby(USER).size()
    sizes, events = [], 0
    for seg in svc.SEGMENTS:
        k = svc.kpis("nyc", svc.EventFilter.make(segment=seg)).iloc[0]
        sizes.append(int(k["users"]))
        events += int(k["events"])
    assert sum(sizes) == per_user.size and max(sizes) - min(sizes) <= 1
    assert events == len(nyc_events)
    heavy = svc.kpis("nyc", svc.EventFilter.make(segment="heavy"))["events"][0]
    assert heavy == per_user.sort_values().tail(sizes[2]).sum()  # the busiest third
    with pytest.raises(services.ServiceError, match="segment"):
        svc.EventFilter.make(segment="vip")
    with pytest.raises(services.ServiceError, match="not a date"):
        svc.EventFilter.make(start="yesterday-ish")


# -- overview -------------------------------------------------------------------------------
def test_rhythm_heatmap_sums_to_the_number_of_events(ws, nyc_events):
    r = svc.rhythm("nyc")
    assert r["events"].sum() == len(nyc_events) == services.dataset_info("nyc").rows
    # the slice has coordinates but no offsets: each event's New York time, daylight saving
    assert "time zone" in r.attrs["clock"] and "daylight saving" in r.attrs["clock"]
    fig = charts.rhythm_figure(r, r.attrs["clock"])
    z = np.asarray(fig.data[0].z)
    assert z.shape == (7, 24) and z.sum() == len(nyc_events)
    offsets = nyc_events[TZ_OFFSET].astype("int64")
    assert set(offsets.unique()) == {-240, -300}  # EDT in summer, EST in winter
    local = nyc_events[TS] + pd.to_timedelta(offsets, unit="min")
    mon8 = ((local.dt.day_of_week == 0) & (local.dt.hour == 8)).sum()
    assert z[0, 8] == mon8 > 0
    utc = nyc_events[TS]
    flt = svc.EventFilter.make(start="2012-07-01", end="2012-08-01")
    part = svc.rhythm("nyc", flt)["events"].sum()
    assert part == ((utc >= "2012-07-01") & (utc < "2012-08-01")).sum() > 0


def test_trend_split_by_category_adds_up_to_the_total(ws):
    total = svc.trend("nyc", "week")
    split = svc.trend("nyc", "week", CATEGORY, top=5)
    groups = set(split[CATEGORY])
    assert svc.OTHER in groups and len(groups - {svc.OTHER, svc.UNKNOWN}) == 5
    summed = split.groupby("period")["events"].sum()
    assert (summed.to_numpy() == total.set_index("period")["events"].reindex(
        summed.index).to_numpy()).all()
    fig = charts.trend_figure(split, CATEGORY, "events", "week")
    assert len(fig.data) == len(groups) and fig.layout.dragmode == "select"
    assert {t.name for t in fig.data} == {str(g) for g in groups}
    one = charts.trend_figure(total, "none", "users", "week")
    assert len(one.data) == 1 and list(one.data[0].y) == total["users"].tolist()


def test_forecast_has_intervals_and_a_backtest_against_the_baseline(ws):
    res = svc.forecast("nyc", "day")
    f = res.forecast
    assert len(f) == svc.HORIZONS["day"]
    assert (f["lower"] <= f["forecast"]).all() and (f["forecast"] <= f["upper"]).all()
    # the slice's last day is partial: shown, flagged, never fitted; the forecast starts on it
    complete = res.history[~res.history["partial"]]
    assert res.history["partial"].iloc[-1]
    assert res.partial["period"].iloc[-1] == res.history["period"].iloc[-1]
    assert f["period"].min() == complete["period"].max() + pd.Timedelta(days=1)
    assert "partial" in res.partial_note and "left out of the forecast" in res.partial_note
    assert set(res.backtest["model"]) == {"sarima", "seasonal_naive"}
    assert (res.backtest["mae"] >= 0).all() and res.note == ""
    assert res.backtest["mase"].notna().all() and res.model.startswith("SARIMA")
    fig = charts.forecast_figure(res.history, res.forecast, "day", partial=res.partial)
    assert [t.name for t in fig.data] == ["observed", "partial period (not fitted)",
                                          "95% interval", "forecast (SARIMA)"]
    # one grey band per partial period in the window shown (the first day is long before it)
    shown = res.partial[res.partial["period"] >= res.history["period"].min()]
    assert len(fig.layout.shapes) == len(shown) == 1


def test_cohort_retention_table(ws, nyc_events):
    table = svc.cohorts("nyc", "month")
    assert (table[0] == 1.0).all()  # everyone is active in their own cohort's period
    vals = table.to_numpy(dtype=float)
    assert np.nanmin(vals) >= 0 and np.nanmax(vals) <= 1
    first = nyc_events.groupby(USER)[TS].min().dt.to_period("M")
    assert sum(table.attrs["sizes"]) == first.size  # cohort sizes cover every user once
    fig = charts.cohort_figure(table, "month")
    assert np.asarray(fig.data[0].z).shape == table.shape


def test_time_range_is_read_from_selection_and_zoom():
    from trailscope.app.pages import overview

    sel = {"range": {"x": ["2012-06-03 04:00", "2012-05-01"]}}
    assert overview.range_from_events(None, sel, {"selectedData"}) == (
        "2012-05-01", "2012-06-03 04:00")
    zoom = {"xaxis.range[0]": "2012-05-01 10:00:00.5", "xaxis.range[1]": "2012-07-01"}
    assert overview.range_from_events(zoom, None, {"relayoutData"}) == (
        "2012-05-01 10:00:00.5", "2012-07-01")
    assert overview.range_from_events({"xaxis.autorange": True}, None,
                                      {"relayoutData"}) == (None, None)
    assert overview.range_from_events({"dragmode": "zoom"}, None, {"relayoutData"}) is None


# -- map ------------------------------------------------------------------------------------
def test_no_coordinates_gives_the_polite_message(ws):
    from trailscope.app.pages import map as map_page

    note = map_service.coordinates_note("tb")
    assert note and "no coordinates" in note and "Data page" in note
    assert map_service.coordinates_note("nyc") is None
    text = _texts(map_page.layout(dataset="tb"))
    assert "No map for this dataset" in text and "no coordinates" in text


def test_map_spec_layers_on_nyc(ws, nyc_events):
    flt = svc.EventFilter.make(start="2012-05-01", end="2012-10-01")
    m = map_views.map_spec("nyc", flt, ["heat", "hex", "zones", "paths", "flows"], "week")
    types = [layer["@@type"] for layer in m.spec["layers"]]
    assert types[:2] == ["PolygonLayer", "HeatmapLayer"] and "TripsLayer" in types
    in_range = nyc_events[(nyc_events[TS] >= "2012-05-01") & (nyc_events[TS] < "2012-10-01")]
    assert m.counts["events"] == in_range[LAT].notna().sum()
    heat = next(layer for layer in m.spec["layers"] if layer["@@type"] == "HeatmapLayer")
    cols = heat["_columns"]  # binary, time-ordered (app/deckgl/layers.py binary_column)
    assert cols["length"] == min(m.counts["events"], map_service.MAX_HEAT_POINTS)
    assert heat["_timeWindow"] == 7 * 86400.0
    tc = cols["t"]
    t = tc["min"][0] + np.frombuffer(base64.b64decode(tc["b64"]), "<u2") * tc["step"][0]
    assert t.min() >= 0 and t.max() <= m.span_s + tc["step"][0]  # within the slider's range
    trips = next(layer for layer in m.spec["layers"] if layer["@@type"] == "TripsLayer")
    assert all(0 <= s <= m.span_s for d in trips["data"] for s in d["timestamps"])
    # "Cumulative" overlays every trip: each is drawn fainter than in a week's window
    alpha = {d["color"][3] for d in trips["data"]}
    every = map_views.map_spec("nyc", flt, ["paths"], "all").spec["layers"][0]
    alpha_all = {d["color"][3] for d in every["data"]}
    assert len(alpha) == len(alpha_all) == 1 and alpha_all.pop() < alpha.pop()
    assert map_views.path_alpha(10, 7 * 86400, 150 * 86400) == 255
    assert map_views.path_alpha(10_000, 150 * 86400, 150 * 86400) == map_views.MIN_PATH_ALPHA
    json.dumps(m.spec, allow_nan=False)
    z = map_service.zones("nyc", flt)
    assert len(z.zones) > 0 and set(z.zones["trend"]) <= {"emerging", "stable", "declining"}
    fig = charts.zone_trend_figure(z.zones, z.activity, window=z.window)
    assert len(fig.data) == min(6, len(z.zones))


def test_map_filters_shrink_what_is_drawn(ws):
    everything = map_service.located_span("nyc")[2]
    cat = svc.top_values("nyc", CATEGORY, 1)["value"][0]
    only = map_service.located_span("nyc", svc.EventFilter.make(categories=[cat]))[2]
    light = map_service.located_span("nyc", svc.EventFilter.make(segment="light"))[2]
    assert 0 < only < everything and 0 < light < everything
    assert svc.top_values("nyc", BEHAVIOR)["value"].tolist() == ["visit"]


# -- users ----------------------------------------------------------------------------------
def test_user_drift_matches_a_hand_computed_divergence(ws, nyc_events):
    d = users.drift("nyc")
    row = d.drift.sort_values("js").iloc[len(d.drift) // 2]  # a middling pair
    ev = nyc_events[nyc_events[USER] == row[USER]].dropna(subset=[CATEGORY])
    month = ev[TS].dt.to_period("M").dt.start_time
    p = ev[month == row["prev_period"]][CATEGORY].value_counts()
    q = ev[month == row["period"]][CATEGORY].value_counts()
    cats = p.index.union(q.index)
    want = evolution.js_divergence(p.reindex(cats, fill_value=0).to_numpy(float),
                                   q.reindex(cats, fill_value=0).to_numpy(float))
    assert row["js"] == pytest.approx(want, abs=1e-9)
    mine = users.user_drift("nyc", row[USER])
    fig = charts.drift_figure(mine.profiles, mine.drift, mine.reference, mine.freq)
    js_trace = next(t for t in fig.data if t.name == "drift (JS)")
    assert list(js_trace.y) == pytest.approx(mine.drift["js"].tolist())


@pytest.mark.full_data  # seven months of ratings with genres; the Taobao slice spans nine days
def test_most_changed_users_on_movielens(ws):
    top = users.top_changers("ml")
    assert len(top) > 0 and top["mean_js"].is_monotonic_decreasing
    assert top["mean_js"].between(0, 1).all() and (top["pairs"] >= 2).all()
    from trailscope.app.pages import users as users_page

    assert users_page.user_href("ml", "42") == "/users?dataset=ml&user=42"
    assert users.top_changers("ml_plain").empty  # no categories: nothing to compare
    assert "no categories" in _texts(users_page.show_changers("ml_plain"))


def test_user_panels_on_nyc_and_taobao(ws, nyc_events):
    u = users.active_users("nyc")[USER][0]
    assert users.search_users("nyc", str(u))[USER].iloc[0] == u  # exact id ranks first
    mob = users.user_mobility("nyc", u)
    assert mob["events"].sum() == (nyc_events[USER] == u).sum()
    assert (mob["rg_km"] >= 0).all()
    fig = charts.mobility_figure(mob, users.drift_freq("nyc"))
    assert {t.name for t in fig.data} >= {"events", "radius of gyration (km)"}
    tl = charts.timeline_figure(users.user_events("nyc", u))
    assert sum(len(t.x) for t in tl.data) == (nyc_events[USER] == u).sum()
    m = map_views.user_map_spec("nyc", u, users.user_events("nyc", u))
    assert m is not None and m.counts["places"] == nyc_events.loc[
        nyc_events[USER] == u, "item_id"].nunique()
    tb_user = users.active_users("tb")[USER][0]
    assert map_views.user_map_spec("tb", tb_user, users.user_events("tb", tb_user)) is None
    geo = charts.mobility_figure(users.user_mobility("tb", tb_user))
    assert "radius of gyration (km)" not in {t.name for t in geo.data}
    with pytest.raises(services.ServiceError, match="no user"):
        users.user_events("tb", "no-such-user")


def test_churn_risk_and_backtest(ws):
    res = users.churn("nyc")
    assert res.note == "" and set(res.backtest["model"]) == {"logistic", "recency_only"}
    assert res.backtest["roc_auc"].between(0, 1).all()
    assert res.risk["risk"].is_monotonic_decreasing and res.risk["rank"].iloc[0] == 1
    assert len(res.risk) == services.dataset_info("nyc").users


# -- pages ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["nyc", "tb", pytest.param("ml", marks=pytest.mark.full_data)])
def test_page_layouts_render(ws, dataset):
    from trailscope.app.pages import map as map_page
    from trailscope.app.pages import overview
    from trailscope.app.pages import users as users_page

    assert "Activity over time" in _texts(overview.layout(dataset=dataset))
    assert "Most-changed users" in _texts(users_page.layout(dataset=dataset))
    text = _texts(users_page.layout(dataset=dataset, user="nobody"))
    assert "no user 'nobody'" in text
    map_text = _texts(map_page.layout(dataset=dataset, start="2012-06-01"))
    assert ("Replay window" in map_text) == (dataset == "nyc")


def test_callbacks_turn_errors_into_messages(ws):
    from trailscope.app.pages import overview
    from trailscope.app.views import analytics as analytics_views

    fig, table = overview.draw_forecast("fortnight", "nyc")
    assert "unknown granularity 'fortnight'" in fig.layout.annotations[0].text and table == ""
    fig, note = overview.draw_trend("day", "colour", "events", "nyc")
    assert "cannot split the trend by 'colour'" in fig.layout.annotations[0].text and note == ""
    fig, note = overview.draw_trend("day", "none", "events", "nyc")
    assert "the last day (" in note and "partial" in note   # the slice ends mid-day

    def broken() -> None:
        raise RuntimeError("boom")

    msg = analytics_views.guarded("the widget", broken, lambda m: m)
    assert "the widget" in msg and "boom" in msg and "bug" in msg


def test_items_card_counts_the_located_items(ws) -> None:
    from dataclasses import replace

    from trailscope.app.views import ui

    nyc = services.dataset_info("nyc")
    assert nyc.report["located_items"] == nyc.items  # every check-in of the slice is located
    assert "all with coordinates" in _texts(ui.kpi_row(nyc))
    assert "no coordinates" in _texts(ui.kpi_row(services.dataset_info("tb")))
    some = replace(nyc, report={**nyc.report, "located_items": 1234})
    assert "1,234 with coordinates" in _texts(ui.kpi_row(some))

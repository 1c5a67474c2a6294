"""Hostile strings in the data never become markup, paths or file names.

- every figure builder of app/views, fed a hostile string in each user-controlled place,
  returns a figure where that string is escaped everywhere plotly shows text (a table of
  builders x strings), and every builder is wrapped in ``plot_safe``;
- a model id is checked against the dataset's checkpoints before any path is built;
- messages a user sees name no absolute server path.
"""

from __future__ import annotations

import html
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from trailscope.analytics.schema import BEHAVIOR, CATEGORY, ITEM, LAT, LON, TS
from trailscope.app import views
from trailscope.app.views import analytics as views_analytics
from trailscope.app.views import charts, explain_figures, models, plotsafe
from trailscope.app.views import drift as drift_views
from trailscope.app.views import live as live_views
from trailscope.models.explain.types import (
    ATTRIBUTION,
    GROUP_COLUMNS,
    HOUR,
    ITEM_INDEX,
    POSITION,
    Explanation,
)

HOSTILE = [
    '<a href="https://evil.example/">x</a>',
    "<span style=\"color:red;font-size:60px\">big</span>",
    "<b>bold</b>",
    "line<br>break",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">js</a>',
    "javascript:alert(document.cookie)",
    "&lt;b&gt;entity&lt;/b&gt;",
    "%{fullData.uid}<extra></extra>",
]
TEMPLATES = {"hovertemplate", "texttemplate", "hovertemplatefallback"}


def _texts(node: Any, key: str = "") -> list[tuple[str, str]]:
    """(key, string) of every string in a figure's JSON, the layout template left out."""
    if isinstance(node, dict):
        return [kv for k, v in node.items() if k != "template" for kv in _texts(v, k)]
    if isinstance(node, (list, tuple, np.ndarray)):
        return [kv for v in (node.tolist() if isinstance(node, np.ndarray) else node)
                for kv in _texts(v, key)]
    return [(key, node)] if isinstance(node, str) else []


def assert_safe(fig: go.Figure, hostile: str, shown: bool = True) -> None:
    """No text of ``fig`` holds markup; templates hold no data string; with ``shown`` the
    escaped hostile string is there (the figure does show the data)."""
    texts = _texts(fig.to_plotly_json())
    for key, text in texts:
        if key in TEMPLATES:
            assert hostile not in text and plotsafe.plot_text(hostile) not in text, (key, text)
        else:
            assert "<" not in text and ">" not in text, (key, text)
    if shown:
        assert any(plotsafe.plot_text(hostile) in t for k, t in texts if k not in TEMPLATES), \
            f"{hostile!r} is not in the figure at all"


# -- inputs of each builder, with the hostile string ``s`` in every user-controlled place --
def _days(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="D")


def _events(s: str) -> pd.DataFrame:
    n = 6
    return pd.DataFrame({TS: _days(n), ITEM: [s, "i2"] * 3, CATEGORY: [s, "cafe", s, None, s, s],
                         BEHAVIOR: [s, "pv", s, s, "buy", s],
                         LAT: np.linspace(40.7, 40.8, n), LON: np.linspace(-74.0, -73.9, n)})


def _explanation(s: str, attention: bool = True) -> Explanation:
    n = 4
    ev = pd.DataFrame({POSITION: range(n), ITEM_INDEX: range(1, n + 1), ITEM: [s] * n,
                       TS: _days(n), HOUR: [8, 9, 10, 11], CATEGORY: [s, None, s, s],
                       BEHAVIOR: [s] * n, LAT: [40.7, 40.71, None, 40.73],
                       LON: [-74.0, -73.99, None, -73.97], ATTRIBUTION: [0.1, -0.2, 0.3, 0.05],
                       **{c: [0.05, -0.1, 0.15, 0.02] for c in GROUP_COLUMNS.values()}})
    att = pd.DataFrame({"layer": [0] * n, "head": [0] * n, POSITION: range(n),
                        "weight": [0.1, 0.2, 0.3, 0.4]})
    return Explanation(model=s, method="integrated-gradients", item_index=1, item_id=s,
                       score=1.0, baseline_score=0.5, delta=0.0, events=ev,
                       groups={g: 0.1 for g in GROUP_COLUMNS}, n_steps=8,
                       attention=att if attention else None,
                       counterfactual={"k": 2, "rank_before": 1, "rank_after_top": 5,
                                       "rank_after_random": 2.5},
                       user=s, model_id=s, item_category=s, item_lat=40.75, item_lon=-73.95)


def _drift(s: str) -> tuple:
    periods = _days(3)
    prof = pd.DataFrame({charts.PERIOD: np.repeat(periods, 2), CATEGORY: [s, "cafe"] * 3,
                         charts.EVENTS: [3, 1] * 3, "share": [0.75, 0.25] * 3})
    drift = pd.DataFrame({charts.PERIOD: periods[1:], "js": [0.1, 0.2]})
    ref = pd.DataFrame({charts.PERIOD: periods, "median_js": [0.1, 0.1, 0.2]})
    return prof, drift, ref


def _zones(s: str) -> tuple:
    zones = pd.DataFrame({"zone_id": [1, 2], "trend": [s, "stable"]})
    act = pd.DataFrame({"zone_id": [1, 1, 2, 2], "window_start": list(_days(2)) * 2,
                        "visits": [3, 4, 5, 6]})
    return zones, act


def _trend(s: str) -> pd.DataFrame:
    return pd.DataFrame({charts.PERIOD: np.repeat(_days(3), 2), CATEGORY: [s, "cafe"] * 3,
                         charts.EVENTS: [1, 2, 3, 4, 5, 6]})


def _rhythm() -> pd.DataFrame:
    w, h = np.meshgrid(range(7), range(24), indexing="ij")
    return pd.DataFrame({"weekday": w.ravel(), "hour": h.ravel(), charts.EVENTS: 1})


def _mobility() -> pd.DataFrame:
    return pd.DataFrame({"window_start": _days(3), "events": [1, 2, 3], "places": [1, 1, 2],
                         "rg_km": [0.5, 1.0, 1.5], "travel_km": [1.0, 2.0, 3.0]})


def _cohorts() -> pd.DataFrame:
    return pd.DataFrame([[1.0, 0.5], [1.0, np.nan]], index=_days(2), columns=[0, 1])


def _forecast() -> tuple:
    hist = pd.DataFrame({charts.PERIOD: _days(5), charts.EVENTS: [1, 2, 3, 4, 5]})
    fc = pd.DataFrame({charts.PERIOD: _days(7)[5:], "forecast": [6.0, 7.0],
                       "lower": [5.0, 6.0], "upper": [7.0, 8.0]})
    return hist, fc


def _snap(s: str) -> dict:
    return {"status": "running", "meta": {"model": s, "dataset": s}, "plan": {"train": 3},
            "loss": [[0.5, 2.0], [1.0, 1.5]], "valid": [[1, 0.1]]}


#: builder -> (call with hostile string s, whether s is shown in the figure).
CASES: dict[str, tuple[Callable[[str], go.Figure], bool]] = {
    "charts.empty_figure": (lambda s: charts.empty_figure(f"no user {s}"), True),
    "analytics.error_figure": (lambda s: views_analytics.error_figure(f"Cannot show {s}"), True),
    "charts.trend_figure": (lambda s: charts.trend_figure(_trend(s), CATEGORY), True),
    "charts.trend_figure(total)": (lambda s: charts.trend_figure(_trend(s)), False),
    "charts.rhythm_figure": (lambda s: charts.rhythm_figure(_rhythm(), clock=s), True),
    "charts.forecast_figure": (lambda s: charts.forecast_figure(*_forecast()), False),
    "charts.cohort_figure": (lambda s: charts.cohort_figure(_cohorts()), False),
    "charts.zone_trend_figure": (lambda s: charts.zone_trend_figure(*_zones(s)), True),
    "charts.timeline_figure": (lambda s: charts.timeline_figure(_events(s)), True),
    "charts.drift_figure": (lambda s: charts.drift_figure(*_drift(s)), True),
    "drift.drift_figure": (lambda s: drift_views.drift_figure(*_drift(s)), True),
    "charts.mobility_figure": (lambda s: charts.mobility_figure(_mobility()), False),
    "explain_figures.attribution_figure":
        (lambda s: explain_figures.attribution_figure(_explanation(s)), True),
    "explain_figures.groups_figure":
        (lambda s: explain_figures.groups_figure(_explanation(s)), False),
    "explain_figures.attention_figure":
        (lambda s: explain_figures.attention_figure(_explanation(s)), False),
    "explain_figures.attention_figure(none)":
        (lambda s: explain_figures.attention_figure(_explanation(s, attention=False)), True),
    "explain_figures.counterfactual_figure":
        (lambda s: explain_figures.counterfactual_figure(_explanation(s)), False),
    "explain_figures.events_map_figure":
        (lambda s: explain_figures.events_map_figure(_explanation(s)), True),
    "models.curve_figure": (lambda s: models.curve_figure(_snap(s)), False),
    "live.minutes_figure": (lambda s: live_views.minutes_figure(pd.DataFrame({
        live_views.MINUTE: pd.date_range("2026-12-06 05:00", periods=60, freq="min"),
        live_views.EVENTS: np.arange(60)})), False),
    "models.slice_figure": (lambda s: models.slice_figure(
        {s: {s: {"n": 3, s: 0.5}}}, s, s), True),
}


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("builder", sorted(CASES))
def test_every_builder_escapes_hostile_strings(builder, hostile):
    build, shown = CASES[builder]
    assert_safe(build(hostile), hostile, shown)


def test_an_unescaped_figure_fails_the_check():
    """The check itself can fail: a raw label, or a data string inside a template."""
    raw = go.Figure(go.Bar(x=[HOSTILE[0]], y=[1]))
    with pytest.raises(AssertionError):
        assert_safe(raw, HOSTILE[0])
    templated = go.Figure(go.Bar(x=["a"], y=[1], hovertemplate=plotsafe.plot_text(HOSTILE[2])))
    with pytest.raises(AssertionError):
        assert_safe(templated, HOSTILE[2], shown=False)


def _figure_builders() -> dict[str, Callable[..., Any]]:
    """Every public function of app/views whose return annotation is a plotly figure."""
    out = {}
    for mod in pkgutil.iter_modules(views.__path__):
        if mod.name == "plotsafe":
            continue
        module = importlib.import_module(f"{views.__name__}.{mod.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_"):
                continue
            ret = inspect.signature(fn).return_annotation
            if "Figure" in str(ret) and "dict" not in str(ret):
                out[f"{mod.name}.{name}"] = fn
    return out


def test_every_figure_builder_is_plot_safe_and_in_the_table():
    builders = _figure_builders()
    assert "charts.timeline_figure" in builders and len(builders) >= 15
    unsafe = [n for n, fn in builders.items() if not plotsafe.is_plot_safe(fn)]
    assert unsafe == [], f"wrap these in plot_safe (app/views/plotsafe.py): {unsafe}"
    covered = {c.split("(")[0] for c in CASES}
    assert set(builders) - covered == set(), "add each new builder to CASES"


def test_escaping_is_done_once_and_shows_the_original_text():
    fig = charts.timeline_figure(_events(HOSTILE[0]))
    again = plotsafe.safe_figure(fig)
    assert again is fig
    names = {t.name for t in fig.data}
    assert plotsafe.plot_text(HOSTILE[0]) in names          # escaped once, not &amp;lt;
    assert html.unescape(plotsafe.plot_text(HOSTILE[0])) == HOSTILE[0]
    # the category order on the axis matches the (escaped) data
    assert plotsafe.plot_text(HOSTILE[0]) in fig.layout.yaxis.categoryarray


def test_deck_tooltips_are_text_templates():
    """Map tooltips carry the raw string (deck.gl shows it with innerText) and HTML tooltips
    are refused."""
    from trailscope.app.deckgl.deckmap import deck_spec, view_for

    spec = explain_figures.events_map_spec(_explanation(HOSTILE[4]))
    assert spec is not None and spec["tooltip"] is None
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert "html" not in str(layers["events"].get("_tooltip"))
    assert any(r.get(ITEM) == HOSTILE[4] for r in layers["events"]["data"])
    with pytest.raises(ValueError, match="HTML"):
        deck_spec([], view_for([40.7], [-74.0]), tooltip={"html": "<b>{item_id}</b>"})
    # the browser side fills the template and hands deck.gl plain text (innerText), no html
    from trailscope.app import ASSETS  # the assets the dashboard serves

    js = (ASSETS / "deckmap.js").read_text()
    assert "return {text: text, style: TIP_STYLE};" in js
    assert "html:" not in js and "innerHTML" not in js


# -- model ids --------------------------------------------------------------------------------
def _checkpoint_files(folder, model_id: str) -> None:
    """A sidecar and a weights file, as checkpoint.save writes them (no model needed to find
    one)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model_id}.pt").write_bytes(b"not read by find")
    (folder / f"{model_id}.json").write_text(json.dumps(
        {"model_id": model_id, "model": "markov", "split": "leave-last",
         "created": "2026-01-01T00:00:00+00:00"}))


@pytest.fixture()
def model_home(tmp_path):
    from trailscope.analytics.store import Store

    store = Store(tmp_path / "trailscope.duckdb")
    _checkpoint_files(tmp_path / "models" / "ds", "markov-1")
    # a file the old code loaded for the id "../inject/evil"
    _checkpoint_files(tmp_path / "models" / "inject", "evil")
    yield store, tmp_path
    store.close()


@pytest.mark.parametrize("model_id", [
    "../inject/evil", "../../models/inject/evil", "markov-1/../../inject/evil",
    "/etc/passwd", "markov-1.pt", "", "markov-1\x00", "..", "./markov-1",
    '<a href="https://evil.example/">x</a>'])
def test_model_ids_outside_the_registry_are_refused(model_home, model_id):
    from trailscope.models import api
    from trailscope.models.training import checkpoint as ckpt

    store, home = model_home
    if "inject" in model_id:  # joined into a path, the id names a real checkpoint file
        assert (home / "models" / "ds" / f"{model_id}.pt").resolve().exists()
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.find(store, "ds", model_id)
    message = str(info.value)
    assert "trained models: markov-1" in message and str(home) not in message
    if model_id:  # an empty id asks api.load for the dataset's best model
        with pytest.raises(ckpt.CheckpointError):
            api.load(store, "ds", model_id)


def test_a_saved_model_id_is_found_in_its_folder(model_home):
    from trailscope.models.training import checkpoint as ckpt

    store, home = model_home
    assert ckpt.find(store, "ds", "markov-1") == home / "models" / "ds" / "markov-1.pt"
    # a sidecar naming another id does not widen the registry: the id is the file's stem
    (home / "models" / "ds" / "markov-1.json").write_text(
        '{"model_id": "../inject/evil", "created": "x"}')
    assert [i["model_id"] for i in ckpt.list_checkpoints(store, "ds")] == ["markov-1"]
    with pytest.raises(ckpt.CheckpointError):
        ckpt.find(store, "ds", "../inject/evil")


def test_a_missing_checkpoint_is_named_without_its_folder(model_home):
    from trailscope.models.training import checkpoint as ckpt

    store, home = model_home
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load(home / "models" / "ds" / "gone.pt", store)
    assert "gone.pt" in str(info.value) and str(home) not in str(info.value)


# -- messages without server paths --------------------------------------------------------
@pytest.mark.parametrize(("text", "shown"), [
    ("cannot open the workspace /srv/ts/.trailscope/trailscope.duckdb: IO Error",
     "cannot open the workspace trailscope.duckdb: IO Error"),
    ('IO Error: No files found that match the pattern "/tmp/trailscope-import-k2/v.csv"',
     'IO Error: No files found that match the pattern "v.csv"'),
    ("the workspace /home/u/.trailscope/trailscope.duckdb is open read-only.",
     "the workspace trailscope.duckdb is open read-only."),
    ("line 3 of /srv/ts/uploads/0123abcd/visits.csv:3 is bad", "line 3 of visits.csv:3 is bad"),
    ("C:\\Users\\ana\\data\\visits.csv is locked", "visits.csv is locked"),
    # not paths: URLs, dates, relative names, one-part strings of user data
    ('<a href="https://evil.example/a/b">x</a>', '<a href="https://evil.example/a/b">x</a>'),
    ("events/day since 2012/05/01", "events/day since 2012/05/01"),
    ("no user \"=cmd|' /C calc'!A0\"", "no user \"=cmd|' /C calc'!A0\""),
])
def test_public_message_drops_folders(text, shown):
    from trailscope.app.services.messages import public_message

    assert public_message(text) == shown


def test_messages_on_the_way_out_hold_no_server_path(tmp_path):
    from trailscope.app.services import jobs
    from trailscope.app.services.workspace import ServiceError
    from trailscope.app.views import analytics as va
    from trailscope.app.views import ui

    secret = tmp_path / "uploads" / "0f" / "visits.csv"
    assert str(tmp_path) not in str(ServiceError(f"cannot read {secret}"))
    box = ui.error_box("Import failed", f"{secret}: bad")
    assert str(tmp_path) not in str(box.children[1].children)
    log = models.messages_view({"messages": [f"read {secret}"]})
    assert "read visits.csv" in str(log) and str(tmp_path) not in str(log)
    assert va.guarded("x", lambda: (_ for _ in ()).throw(ValueError(f"at {secret}")),
                      lambda m: m) == "Cannot show x: at visits.csv"
    unexpected = va.guarded("x", lambda: (_ for _ in ()).throw(KeyError(str(secret))),
                            lambda m: m)
    assert str(tmp_path) not in unexpected and "visits.csv" in unexpected

    def fail(progress, cancel, log):
        raise OSError(f"[Errno 2] No such file or directory: '{secret}'")

    runner = jobs.JobRunner(limits={"import": 1})
    for expected in ((OSError,), ()):
        job_id = runner.start(jobs.Job(fail, kind="import", expected=expected))
        snap = runner.wait(job_id, timeout=10)
        assert snap["status"] == "failed" and "visits.csv" in snap["error"]
        assert str(tmp_path) not in snap["error"]


def test_sniffing_a_missing_upload_names_only_the_file(tmp_path):
    from trailscope.app.services import workspace
    from trailscope.app.services.workspace import ServiceError

    with pytest.raises(ServiceError) as info:
        workspace.sniff(tmp_path / "uploads" / "ab12" / "gone.csv")
    assert "gone.csv" in str(info.value) and str(tmp_path) not in str(info.value)


def test_cli_errors_name_no_server_path(tmp_path, monkeypatch, capsys):
    """A workspace file that is not a DuckDB database: the CLI's one line names the file,
    not its folder."""
    from trailscope.app.cli.main import main

    home = tmp_path / "srv" / "home"
    home.mkdir(parents=True)
    (home / "trailscope.duckdb").write_bytes(b"not a database" * 100)
    monkeypatch.setenv("TRAILSCOPE_HOME", str(home))
    assert main(["datasets"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("trailscope datasets: ") and "trailscope.duckdb" in err
    assert str(tmp_path) not in err

"""Models page: view builders (app/model_views.py), the service calls and the page layout, on
real results: models trained on the first 3,000 events of the Taobao slice (no coordinates) and
the first 4,000 check-ins of the NYC slice (tests/data)."""

from __future__ import annotations

import re
from typing import Any

import dash
import pytest
from trailscope.analytics import schema
from trailscope.app.services import jobs
from trailscope.app.services import models as model_service
from trailscope.app.services import workspace as services
from trailscope.app.views import models as mv

from tests.app.helpers import slice_file, texts
from tests.conftest import TAOBAO, nyc_head


def _texts(component: Any) -> list[str]:
    return texts(component)


def _text(component: Any) -> str:
    return " ".join(_texts(component))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Any]:
    """A services workspace with ``tb`` (markov + 1-epoch gru) and ``nyc`` (markov)."""
    from trailscope.analytics.ingest.pipeline import import_file

    tmp = tmp_path_factory.mktemp("models_page")
    nyc = nyc_head(tmp / "nyc_4k.csv", 4001)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAILSCOPE_HOME", str(tmp / "home"))
        services.close_store()
        store = services.get_store()
        import_file(store, slice_file(TAOBAO, tmp / "taobao_3k.csv", 3000), name="tb")
        import_file(store, nyc, name="nyc")
        runner = jobs.JobRunner()
        snaps = {}
        for ds, model, kw in (("tb", "markov", {}), ("tb", "gru", {"epochs": 1, "hidden": 16,
                                                                     "batch_size": 16}),
                              ("nyc", "markov", {})):
            job_id = runner.start(jobs.training_job(store, ds, model, **kw))
            snaps[(ds, model)] = runner.wait(job_id, 120)
            assert snaps[(ds, model)]["status"] == jobs.DONE, snaps[(ds, model)]
        yield {"store": store, "snaps": snaps}
        services.close_store()


def test_comparison_table_ranks_real_models_and_marks_the_best(trained):
    models = model_service.trained_models("tb")
    assert sorted(m["model"] for m in models) == ["gru", "markov"]
    assert all(isinstance(m["val_ndcg@10"], float) for m in models)
    best = model_service.default_row(models)
    assert best["val_ndcg@10"] == max(m["val_ndcg@10"] for m in models)
    rows = mv.comparison_rows(models, best["model_id"])
    assert [r["val_ndcg@10"] for r in rows] == sorted((m["val_ndcg@10"] for m in models),
                                                      reverse=True)
    assert [r["best"] for r in rows] == [True, False]
    text = _text(mv.comparison_table(models, "tb", best["model_id"]))
    for m in models:
        assert m["model_id"] in text
        assert f"{m['ndcg@10']:.4f}" in text and f"{m['hr@20']:.4f}" in text
        assert f"{m['val_ndcg@10']:.4f}" in text
        assert f"{m['train_seconds']:.1f}" in text
    assert "stale" not in text and "best" in text and text.count("Delete") == 2
    opts = mv.inspect_options(models, best["model_id"])
    assert opts[0]["value"] == best["model_id"] and not any(o["disabled"] for o in opts)
    assert f"best validation NDCG@10: {best['val_ndcg@10']:.3f}" in mv.default_note(best)


def _copy_as_cancelled(store, dataset: str, model: dict[str, Any], model_id: str) -> None:
    """A second checkpoint of ``model`` under ``model_id``, marked as a cancelled training
    with the best validation score of all (what a cancelled run that peaked early saves)."""
    import json
    import shutil
    from pathlib import Path

    src = Path(model["path"])
    dst = src.with_name(f"{model_id}.pt")
    shutil.copyfile(src, dst)
    info = json.loads(src.with_suffix(".json").read_text())
    info.update(model_id=model_id, cancelled=True, created="2999-01-01T00:00:00+00:00")
    info["metrics"]["valid"]["ndcg@10"] = 1.0
    dst.with_suffix(".json").write_text(json.dumps(info))


def test_a_cancelled_training_is_marked_never_preselected_and_can_be_deleted(trained):
    import threading

    gru = next(m for m in model_service.trained_models("tb") if m["model"] == "gru")
    _copy_as_cancelled(trained["store"], "tb", gru, "gru-29990101T000000000000")
    models = model_service.trained_models("tb")
    cancelled = next(m for m in models if m["cancelled"])
    assert cancelled["model_id"] == "gru-29990101T000000000000"
    assert cancelled["val_ndcg@10"] == 1.0  # the best score, yet not the default
    best = model_service.default_row(models)
    assert best["model_id"] != cancelled["model_id"] and not best["cancelled"]
    assert model_service.default_model("tb") == best["model_id"]
    rows = mv.comparison_rows(models, best["model_id"])
    assert rows[-1]["model_id"] == cancelled["model_id"]  # after the finished ones
    assert "cancelled" in _text(mv.comparison_table(models, "tb", best["model_id"]))
    assert "cancelled" in next(o["label"] for o in mv.inspect_options(models)
                               if o["value"] == cancelled["model_id"])

    release = threading.Event()
    busy = jobs.start(jobs.Job(lambda p, c, log: release.wait(30), label="explain x",
                               kind="explain",
                               meta={"dataset": "tb", "model_id": cancelled["model_id"]}))
    try:
        with pytest.raises(services.ServiceError, match="in use"):
            model_service.delete_model("tb", cancelled["model_id"])
    finally:
        release.set()
        jobs.wait(busy, 30)
    assert model_service.delete_model("tb", cancelled["model_id"]) == cancelled["model_id"]
    left = model_service.trained_models("tb")
    assert cancelled["model_id"] not in {m["model_id"] for m in left} and len(left) == 2
    with pytest.raises(services.ServiceError, match="no model '../gru'"):
        model_service.delete_model("tb", "../gru")


def test_empty_and_stale_states(trained):
    store = trained["store"]
    assert "trailscope train tb --model markov" in _text(mv.comparison_table([], "tb"))
    from trailscope.analytics.ingest.pipeline import import_file

    path = slice_file(TAOBAO, store.path.parent / "taobao_3k.csv", 3000)
    import_file(store, path, name="tb_old")
    job = jobs.JobRunner()
    assert job.wait(job.start(jobs.training_job(store, "tb_old", "pop")), 60)["status"] == "done"
    assert model_service.trained_models("tb_old")[0]["stale"] is False
    import_file(store, slice_file(TAOBAO, path, 1500), name="tb_old", replace=True)
    models = model_service.trained_models("tb_old")
    assert models[0]["stale"] is True
    text = _text(mv.comparison_table(models, "tb_old"))
    assert "stale" in text and "best" not in text
    assert mv.inspect_options(models)[0]["disabled"] is True


def test_slice_charts_cover_every_test_target(trained):
    gru = next(m for m in model_service.trained_models("tb") if m["model"] == "gru")
    slices = model_service.model_slices("tb", gru["model_id"])
    assert set(slices) >= {"hour", "weekday", "activity", "cold"}
    n_test = sum(v["n"] for v in slices["cold"].values())
    assert n_test > 0
    for kind in mv.SLICE_KINDS:
        frame = mv.slice_frame(slices, kind, "ndcg@10")
        assert frame["n"].sum() == n_test              # each slicing partitions the targets
        fig = mv.slice_figure(slices, kind, "ndcg@10")
        bar = fig.data[0]
        assert list(bar.x) == list(slices[kind]) and list(bar.customdata) == list(frame["n"])
        assert all(0.0 <= y <= 1.0 for y in bar.y)
    # the n-weighted mean of the hour slices is the model's overall NDCG@10
    hour = mv.slice_frame(slices, "hour", "ndcg@10")
    weighted = float((hour["n"] * hour["value"]).sum() / hour["n"].sum())
    assert weighted == pytest.approx(gru["ndcg@10"], rel=1e-6)
    assert "no slice metrics" in mv.slice_figure({}, "hour").layout.annotations[0].text


def test_progress_views_from_real_job_snapshots(trained):
    gru = trained["snaps"][("tb", "gru")]
    assert mv.progress_width(gru) == {"width": "100.0%"}
    status = mv.status_text(gru)
    assert status.startswith("Finished gru on tb") and gru["summary"]["model_id"] in status
    fig = mv.curve_figure(gru)
    names = [t.name for t in fig.data]
    assert names == ["training loss", "validation NDCG@10"]
    assert list(fig.data[0].y) == [p[1] for p in gru["loss"]]
    assert fig.data[1].yaxis == "y2" and list(fig.data[1].y) == [gru["valid"][0][1]]
    markov = trained["snaps"][("tb", "markov")]
    assert "one pass" in mv.curve_figure(markov).layout.annotations[0].text
    running = {**gru, "status": "running", "active": True, "fraction": 0.5,
               "progress": {"phase": "train", "epoch": 3, "step": 2, "steps": 6,
                            "loss": 4.25}, "plan": {"train": 10}}
    line = mv.status_text(running)
    assert "epoch 3/10" in line and "step 2/6" in line and "loss 4.2500" in line
    assert mv.progress_width(running) == {"width": "50.0%"}
    failed = {**running, "status": "failed", "error": "ValueError: boom"}
    assert "failed" in mv.status_text(failed) and "boom" in mv.status_text(failed)
    assert "Training log" in _text(mv.messages_view(gru))


def test_recommendations_table_and_map_on_nyc(trained):
    mid = model_service.trained_models("nyc")[0]["model_id"]
    users = model_service.model_users("nyc", mid)
    assert users and users == sorted(users, key=lambda u: -u["events"])
    user = users[0]["user"]
    rec = model_service.recommend("nyc", user, 5, mid)
    assert len(rec["items"]) == 5
    table = _text(mv.recs_table(rec, with_coords=True))
    for it in rec["items"]:
        assert it["item_id"] in table
    events = model_service.recent_events("nyc", user, 30)
    assert len(events) == 30 and events[schema.TS].is_monotonic_increasing
    spec = mv.recs_map_spec(rec, events)
    layers = {layer["id"]: layer for layer in spec["layers"]}
    assert set(layers) == {"user-path", "user-events", "recommended"}
    recd = layers["recommended"]["data"]
    # drawn in reverse so that rank 1 lies on top
    assert [d["rank_text"] for d in recd] == [str(i) for i in range(5, 0, -1)]
    assert [d[schema.ITEM] for d in recd][::-1] == [it["item_id"] for it in rec["items"]]
    assert layers["recommended"]["_tooltip"].startswith("#{rank_text}")
    lat0, lat1, lon0, lon1 = services.dataset_info("nyc").bbox
    assert lat0 <= spec["initialViewState"]["latitude"] <= lat1
    assert lon0 <= spec["initialViewState"]["longitude"] <= lon1
    summary = mv.recs_summary(rec)
    assert summary.startswith(f"Top 5 for user {rec['user']} by {mid}, from their last ")
    assert re.search(r"as of \d{4}-\d\d-\d\d \d\d:\d\d UTC", summary), summary
    one = mv.recs_summary({**rec, "history_used": 1, "unknown_items_skipped": 1})
    assert "from their last 1 event," in one and "1 event of items the model does not know " \
        "was skipped" in one


def test_recommendations_without_coordinates_and_errors(trained):
    mid = next(m["model_id"] for m in model_service.trained_models("tb")
               if m["model"] == "markov")
    user = model_service.model_users("tb", mid)[0]["user"]
    rec = model_service.recommend("tb", user, 10, mid)
    assert len(rec["items"]) == 10 and all(it["lat"] is None for it in rec["items"])
    assert mv.recs_map_spec(rec, model_service.recent_events("tb", user)) is None
    assert "Lat" not in _text(mv.recs_table(rec))
    with pytest.raises(model_service.user_errors(), match="not among the"):
        model_service.recommend("tb", "no-such-user", 10, mid)
    with pytest.raises(model_service.ServiceError, match="between 1 and 100"):
        model_service.recommend("tb", user, 0, mid)


def test_training_settings_are_validated_with_fixes(trained):
    with pytest.raises(model_service.ServiceError, match="epochs must be between 1 and 500"):
        model_service.start_training("tb", "gru", epochs=0)
    with pytest.raises(model_service.ServiceError, match="unknown split"):
        model_service.start_training("tb", "gru", split="random")
    with pytest.raises(model_service.ServiceError, match="unknown model 'nope'"):
        model_service.start_training("tb", "nope")
    with pytest.raises(model_service.user_errors(), match="no dataset named"):
        model_service.start_training("missing", "pop")
    if not model_service.cuda_available():
        with pytest.raises(model_service.ServiceError, match="choose 'auto' or 'cpu'"):
            model_service.start_training("tb", "pop", device="cuda")
    choices = {c["name"]: c for c in model_service.model_choices()}
    assert not choices["markov"]["trainable"] and choices["gru"]["has_hidden"]
    opts = {o["value"]: o for o in mv.model_options(list(choices.values()))}
    assert "count baseline" in opts["pop"]["label"] and "neural" in opts["gru"]["label"]
    assert "epochs and hidden size do not apply" in mv.settings_hint(choices["pop"])


def test_page_layout_shows_models_and_the_no_map_reason(trained):
    import trailscope.app.main  # noqa: F401 (creates the app, which registers the pages)

    page = next(p for p in dash.page_registry.values() if p["path"] == "/models")
    ml = _text(page["layout"](dataset="tb"))
    for m in model_service.trained_models("tb"):
        assert m["model_id"] in ml
    assert "has no coordinates" in ml and "Train a model" in ml
    nyc = page["layout"](dataset="nyc")
    assert "has no coordinates" not in _text(nyc)
    assert "trailscope-deck-spec" in str(nyc)             # the DeckMap is on the page


def test_slice_chart_without_a_model_asks_for_one_without_empty_axes():
    import trailscope.app.main  # noqa: F401 (registers the pages)
    from trailscope.app.pages import models as page

    fig = page.draw_slices(None, "hour", "ndcg@10", "tb")
    assert not fig.data and fig.layout.xaxis.visible is False
    assert "Train a model first" in fig.layout.annotations[0].text

"""End-to-end Models page: the real server (tests/browser/conftest.py) and headless chromium.

Two small real slices (the committed Taobao slice, 26,222 events without coordinates, and the
first 4,000 check-ins of the NYC slice; tests/data) are imported straight
into the server's workspace before the server starts. When the session's server is already
running (another browser module started it, holding the DuckDB file), they are imported
through the Data page instead. Tests run in file order against that one server.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from trailscope.app.views import ids

from tests.browser.conftest import wait_until
from tests.conftest import NYC, TAOBAO

TB, GEO = "tb_models", "nyc_models"  # TB has no coordinates
TRAIN_TIMEOUT = 120_000   # ms; the machine is shared, keep generous limits


@pytest.fixture(scope="module")
def slices(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models_slices")
    nyc = d / "nyc_4k.csv"
    with gzip.open(NYC, "rt") as src, open(nyc, "w") as dst:
        dst.writelines(line for _, line in zip(range(4001), src, strict=False))
    return {TB: TAOBAO, GEO: nyc}


def _import_via_data_page(browser, url: str, path: Path, name: str) -> None:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(url + "/data")
    page.set_input_files(f"#{ids.UPLOAD_INPUT}", str(path))
    page.wait_for_selector(f"#{ids.MAPPING_FORM} .map-field")
    page.fill(f"#{ids.NAME_INPUT}", name)
    page.click(f"#{ids.IMPORT_BUTTON}")
    page.wait_for_selector(f"#{ids.IMPORT_RESULT} .report")
    context.close()


@pytest.fixture(scope="module")
def url(request, server_home, slices, browser) -> str:
    """The server's URL, with both slices imported (before it starts, when possible)."""
    from trailscope.analytics.ingest.pipeline import import_file
    from trailscope.analytics.store import DB_FILENAME, Store, StoreError

    try:
        store = Store(server_home / DB_FILENAME)
    except StoreError:   # the session's server already holds the workspace
        store = None
    if store is not None:
        with store:
            for name, path in slices.items():
                import_file(store, path, name=name)
    base = request.getfixturevalue("server_url")
    if store is None:
        for name, path in slices.items():
            _import_via_data_page(browser, base, path, name)
    return base


def _open(page, url: str, dataset: str) -> None:
    page.goto(f"{url}/models?dataset={dataset}")
    page.wait_for_selector(f"#{ids.MODELS_TRAIN}")
    page.wait_for_load_state("networkidle")


def _choose(page, dropdown_id: str, label: str) -> None:
    page.click(f"#{dropdown_id}")
    page.locator(".dash-dropdown-option", has_text=label).first.click()


def _train(page, model: str, epochs: int | None = None, hidden: int | None = None,
           patience: int | None = None) -> None:
    _choose(page, ids.MODELS_MODEL_PICK, f"{model} (")
    hint = "counts the training data" if model in ("pop", "repeat", "markov") else "early stopping"
    expect(page.locator(f"#{ids.MODELS_SETTINGS_HINT}")).to_contain_text(hint)
    if epochs is not None:
        page.fill(f"#{ids.MODELS_EPOCHS}", str(epochs))
    if hidden is not None:
        page.fill(f"#{ids.MODELS_HIDDEN}", str(hidden))
    if patience is not None:
        page.fill(f"#{ids.MODELS_PATIENCE}", str(patience))
    page.click(f"#{ids.MODELS_TRAIN}")
    expect(page.locator(f"#{ids.MODELS_PROGRESS}")).to_be_visible()


def _map_key(map_id: str) -> str:
    return json.dumps({"id": map_id, "type": "trailscope-deck-canvas"}, separators=(",", ":"),
                      sort_keys=True)


def test_empty_state_says_how_to_train(url, page):
    _open(page, url, TB)
    table = page.locator(f"#{ids.MODELS_TABLE}")
    expect(table).to_contain_text("No trained model yet")
    expect(table).to_contain_text(f"trailscope train {TB} --model markov")
    expect(page.locator(".alert-info")).to_contain_text("has no coordinates")
    expect(page.locator(f"#{ids.MODELS_CANCEL}")).to_be_disabled()
    expect(page.locator(f"#{ids.MODELS_CURVE_WRAP}")).to_be_hidden()
    assert page.console.errors == []


def test_train_markov_and_a_one_epoch_gru_from_the_page(url, page):
    _open(page, url, TB)
    _train(page, "markov")
    status = page.locator(f"#{ids.MODELS_STATUS}")
    expect(status).to_contain_text("Finished markov", timeout=TRAIN_TIMEOUT)
    assert "width: 100" in page.get_attribute(f"#{ids.MODELS_PROGRESS_BAR}", "style")
    expect(page.locator(f"#{ids.MODELS_TABLE} tbody tr")).to_have_count(1)
    expect(page.locator(f"#{ids.MODELS_TRAIN}")).to_be_enabled()

    _train(page, "gru", epochs=1, hidden=16)
    expect(status).to_contain_text("Finished gru", timeout=TRAIN_TIMEOUT)
    assert "width: 100" in page.get_attribute(f"#{ids.MODELS_PROGRESS_BAR}", "style")
    rows = page.locator(f"#{ids.MODELS_TABLE} tbody tr")
    expect(rows).to_have_count(2)
    text = page.inner_text(f"#{ids.MODELS_TABLE}")
    assert "markov" in text and "gru" in text and "best" in text
    # the live curve: loss per step and the validation point of the single epoch
    expect(page.locator(f"#{ids.MODELS_CURVE} .scatterlayer .trace")).to_have_count(2)
    expect(page.locator(f"#{ids.MODELS_CURVE} .legend")).to_contain_text("validation NDCG@10")
    assert page.console.errors == []


def test_slices_and_recommendations_for_a_user(url, page, artifacts):
    _open(page, url, TB)
    expect(page.locator(f"#{ids.MODELS_TABLE} tbody tr")).to_have_count(2)
    recs = page.locator(f"#{ids.MODELS_RECS} tbody tr")
    expect(recs).to_have_count(10)
    note = page.locator(f"#{ids.MODELS_RECS_NOTE}")
    expect(note).to_contain_text("Top 10 for user")
    user = re.search(r"for user (\S+) by", note.inner_text()).group(1)
    # some bar is drawn (a slice with NDCG 0, e.g. the first hour, has a bar of no height)
    expect(page.locator(f"#{ids.MODELS_SLICE_GRAPH} .barlayer .point").filter(visible=True)
           .first).to_be_visible()
    page.fill(f"#{ids.MODELS_TOPK}", "5")
    page.press(f"#{ids.MODELS_TOPK}", "Enter")
    expect(recs).to_have_count(5)
    expect(note).to_contain_text(f"Top 5 for user {user}")
    _choose(page, ids.MODELS_SLICE_KIND, "Cold vs warm")
    expect(page.locator(f"#{ids.MODELS_SLICE_GRAPH} .xtick").first).to_be_visible()
    page.screenshot(path=str(artifacts / "models_page.png"), full_page=True)
    assert page.console.errors == []


def test_cancel_a_running_training(url, page):
    _open(page, url, TB)
    rows_before = page.locator(f"#{ids.MODELS_TABLE} tbody tr").count()
    # patience 1000: early stopping must not end the run before the test cancels it
    _train(page, "gru", epochs=500, hidden=16, patience=1000)
    status = page.locator(f"#{ids.MODELS_STATUS}")
    expect(status).to_contain_text(f"gru on {TB}", timeout=TRAIN_TIMEOUT)
    _open(page, url, TB)   # a reload finds the running job and follows it again
    expect(page.locator(f"#{ids.MODELS_PROGRESS}")).to_be_visible()
    expect(page.locator(f"#{ids.MODELS_TRAIN}")).to_be_disabled()
    expect(page.locator(f"#{ids.MODELS_CANCEL}")).to_be_enabled()
    # epoch 2 or later running: epoch 1 is kept
    expect(status).to_have_text(re.compile(r"epoch ([2-9]|\d\d+)/500"), timeout=TRAIN_TIMEOUT)
    page.click(f"#{ids.MODELS_CANCEL}")
    expect(status).to_contain_text("Cancelled gru")
    expect(status).to_contain_text("kept the best epoch so far")
    assert "width: 100" not in page.get_attribute(f"#{ids.MODELS_PROGRESS_BAR}", "style")
    expect(page.locator(f"#{ids.MODELS_TABLE} tbody tr")).to_have_count(rows_before + 1)
    expect(page.locator(f"#{ids.MODELS_TABLE} .tag", has_text="cancelled")).to_have_count(1)
    expect(page.locator(f"#{ids.MODELS_TRAIN}")).to_be_enabled()
    expect(page.locator(f"#{ids.MODELS_CANCEL}")).to_be_disabled()
    assert page.console.errors == []


def test_the_cancelled_run_is_not_preselected_and_can_be_deleted(url, page):
    """After test_cancel_a_running_training: the default is a finished model, said why, and
    the cancelled one goes with its Delete button once the dialog is accepted."""
    _open(page, url, TB)
    rows = page.locator(f"#{ids.MODELS_TABLE} tbody tr")
    cancelled = rows.filter(has=page.locator(".tag", has_text="cancelled"))
    expect(cancelled).to_have_count(1)
    cancelled_id = cancelled.locator(".muted").first.inner_text().strip()
    note = page.locator(f"#{ids.MODELS_DEFAULT_NOTE}")
    expect(note).to_contain_text("best validation NDCG@10")
    assert cancelled_id not in note.inner_text()
    best = rows.filter(has=page.locator(".tag", has_text="best"))
    expect(best).to_have_count(1)
    assert best.locator(".muted").first.inner_text().strip() in note.inner_text()
    n = rows.count()
    page.once("dialog", lambda d: d.accept())
    cancelled.get_by_role("button", name="Delete").click()
    expect(page.locator(f"#{ids.MODELS_DELETE_STATUS}")).to_contain_text(f"Deleted {cancelled_id}")
    expect(rows).to_have_count(n - 1)
    expect(page.locator(f"#{ids.MODELS_TABLE}")).not_to_contain_text(cancelled_id)
    assert page.console.errors == []


def test_recommendations_on_the_map_beside_the_users_path(url, page, artifacts):
    _open(page, url, GEO)
    _train(page, "markov")
    expect(page.locator(f"#{ids.MODELS_STATUS}")).to_contain_text("Finished markov",
                                                                 timeout=TRAIN_TIMEOUT)
    expect(page.locator(f"#{ids.MODELS_RECS} tbody tr")).to_have_count(10)
    key = _map_key(ids.MODELS_MAP)
    page.wait_for_function(
        "k => { const m = window.trailscopeDeck && window.trailscopeDeck.maps[k]; "
        "return m && m.base && m.base.some(l => l.id === 'recommended'); }",
        arg=key)
    ids_ = page.evaluate("k => window.trailscopeDeck.maps[k].base.map(l => l.id)", key)
    assert ids_ == ["user-path", "user-events", "recommended"]
    first_item = page.inner_text(f"#{ids.MODELS_RECS} tbody tr >> nth=0 >> td >> nth=1").strip()
    page.locator(f"[id='{key}']").scroll_into_view_if_needed()
    tip = page.locator(".deck-tooltip").first

    def hover_first() -> bool:
        """True once the #1 item's tooltip shows; else hover where the item is drawn now (the
        view may still move while the page settles, so the point is projected each time)."""
        if tip.is_visible() and tip.inner_text().startswith(f"#1 {first_item}"):
            return True
        x, y = page.evaluate("""k => { const m = window.trailscopeDeck.maps[k];
            const r = m.container.getBoundingClientRect();
            const d = m.base.find(l => l.id === 'recommended').props.data
                .find(p => p.rank_text === '1');
            const [px, py] = m.deck.getViewports()[0].project(d.position);
            return [r.left + px, r.top + py]; }""", key)
        page.mouse.move(5, 5)
        page.mouse.move(x, y)
        return False

    wait_until(hover_first, bool, "the tooltip of the #1 recommendation", every_s=0.5, page=page)
    page.screenshot(path=str(artifacts / "models_page_map.png"), full_page=True)
    assert page.console.errors == []

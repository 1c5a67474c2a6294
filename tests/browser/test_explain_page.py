"""The Explain page in a real browser: pick an item, see every view, export both report
formats and a batch. Its own server runs on a workspace holding a real NYC slice and a tiny
trained st-transformer (the shared session server starts empty)."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect
from trailscope.app.views import ids

from tests.browser.test_explain_times import explain_workspace

EXPORT_MS = 120_000  # a PDF is printed by Chromium and a batch explains several users


@pytest.fixture(scope="module")
def explain_server(tmp_path_factory):
    from trailscope.analytics.schema import USER

    with explain_workspace(tmp_path_factory.mktemp("explain_home"), "nyc40", 40, 20,
                           f"SELECT DISTINCT {USER} AS u FROM {{table}} ORDER BY 1 LIMIT 3"
                           ) as server:
        yield server


def _save(download, path: Path) -> Path:
    download.save_as(str(path))
    return path


def test_explain_page_views_and_exports(explain_server, page, artifacts, tmp_path):
    s = explain_server
    user = s["users"][0]
    q = urlencode({"dataset": "nyc40", "user": user, "model": s["model_id"]})
    page.goto(f"{s['url']}/explain?{q}")
    recs = page.locator(".explain-rec-item")
    recs.first.wait_for()
    assert recs.count() == 10
    second = recs.nth(1)
    item = second.locator("strong").inner_text()
    second.click()
    summary = page.locator(f"#{ids.EXPLAIN_SUMMARY}")
    summary.wait_for()
    # every opening models/explain/text.py writes (tests/models/test_explain_text.py)
    assert summary.inner_text().startswith(("Recommended", "Nothing in this history",
                                            "No single event", "No one went from",
                                            "You have not had"))
    assert item in page.locator(".card-title", has_text="Why").inner_text()
    for fig in (ids.EXPLAIN_FIG_ATTRIBUTION, ids.EXPLAIN_FIG_GROUPS,
                ids.EXPLAIN_FIG_COUNTERFACTUAL, ids.EXPLAIN_FIG_ATTENTION):
        page.locator(f"#{fig} .main-svg").first.wait_for()
    page.wait_for_function(
        "() => { const c = document.querySelector('canvas.trailscope-canvasmap');"
        " return c && c.width > 0; }")
    page.screenshot(path=str(artifacts / "explain_page.png"), full_page=True)
    assert page.console.errors == []

    with page.expect_download(timeout=EXPORT_MS) as dl:
        page.click(f"#{ids.EXPLAIN_EXPORT_HTML}")
    html_path = _save(dl.value, tmp_path / "report.html")
    text = html_path.read_text(encoding="utf-8")
    assert dl.value.suggested_filename.endswith(".html")
    assert "Plotly.newPlot" in text and f"Why {item} for user {user}?" in text
    for name in ("trend", "rhythm", "drift", "path", "attribution", "groups", "attention",
                 "counterfactual"):
        assert f"id='fig-{name}'" in text
    assert "id='deck-map'" in text  # the deck map, drawn in the report's page

    with page.expect_download(timeout=EXPORT_MS) as dl:
        page.click(f"#{ids.EXPLAIN_EXPORT_PDF}")
    pdf = _save(dl.value, tmp_path / "report.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True)
    assert next(tmp_path.glob("page*.png")).stat().st_size > 5_000


def test_batch_export_zip(explain_server, page, tmp_path):
    s = explain_server
    page.goto(f"{s['url']}/explain?dataset=nyc40&model={s['model_id']}")
    page.locator(".explain-rec-item").first.wait_for()
    page.fill(f"#{ids.EXPLAIN_BATCH_USERS}", "\n".join([*s["users"][:2], "no-such-user"]))
    with page.expect_download(timeout=EXPORT_MS) as dl:
        page.click(f"#{ids.EXPLAIN_BATCH_BUTTON}")
    data = Path(_save(dl.value, tmp_path / "batch.zip")).read_bytes()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sorted(n for n in names if n.endswith(".html")) == sorted(
        f"nyc40-{u}.html" for u in s["users"][:2])
    assert "failures.txt" in names
    expect(page.locator(f"#{ids.EXPLAIN_BATCH_STATUS}")).to_contain_text("failed")

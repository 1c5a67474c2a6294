"""End-to-end: the real server and headless chromium, on the committed slices of real datasets
(tests/data): the first 2,000 lines of the NYC check-ins and of Taobao UserBehavior.

The tests run in file order against one server (session fixture): empty workspace first, then
imports through the Data page, then views of the imported data, then dropping a dataset.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from trailscope.app.views import ids

from tests.browser.conftest import wait_until
from tests.conftest import NYC, TAOBAO

PATHS = [path for _, _, path in ids.PAGES]
LINES = 2000


def _slice(src: Path, dst: Path, n: int = LINES) -> Path:
    with open(src, encoding="latin-1") as fh:
        dst.write_text("".join(line for _, line in zip(range(n), fh, strict=False)),
                       encoding="latin-1")
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("slices")
    nyc = d / "nyc_2k.csv"  # header + 1,999 check-ins, uncompressed
    with gzip.open(NYC, "rt", encoding="utf-8") as src:
        nyc.write_text("".join(line for _, line in zip(range(LINES), src, strict=False)))
    return {"nyc": nyc, "tb": _slice(TAOBAO, d / "taobao_2k.csv")}


def _goto(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(f"#{ids.NAVBAR}")
    page.wait_for_load_state("networkidle")


def _expect_selected(page, name: str) -> None:
    """Wait until the dataset selector shows ``name``."""
    expect(page.locator(f"#{ids.DATASET_DROPDOWN} .dash-dropdown-value")).to_have_text(name)


def _options(page) -> list[str]:
    page.click(f"#{ids.DATASET_DROPDOWN}")
    opts = page.locator(".dash-dropdown-option")
    opts.first.wait_for()
    texts = [t.strip() for t in opts.all_inner_texts()]
    page.keyboard.press("Escape")
    return texts


def _choose(page, dropdown_id: str, label: str) -> None:
    page.click(f"#{dropdown_id}")
    page.locator(".dash-dropdown-option", has_text=label).click()


def _kpi(scope, label: str) -> str:
    """Value of the KPI card labelled ``label`` inside ``scope`` (a page or a locator)."""
    for card in scope.locator(".kpi").all():
        if card.locator(".kpi-label").text_content().strip() == label:
            return card.locator(".kpi-value").text_content().strip()
    raise AssertionError(f"no KPI card {label!r}")


def _upload(page, path: Path) -> None:
    page.set_input_files(f"#{ids.UPLOAD_INPUT}", str(path))
    page.wait_for_selector(f"#{ids.SNIFF_PANEL}", state="visible")
    page.wait_for_selector(f"#{ids.MAPPING_FORM} .map-field")


def _import(page, name: str) -> None:
    page.fill(f"#{ids.NAME_INPUT}", name)
    page.click(f"#{ids.IMPORT_BUTTON}")
    page.wait_for_selector(f"#{ids.IMPORT_RESULT} .report, #{ids.IMPORT_RESULT} .alert-error")


def test_every_page_loads_on_an_empty_workspace(server_url, page):
    for path in PATHS:
        _goto(page, server_url + path)
        assert page.locator(".page-header h1").inner_text() == dict(
            (p, label) for _, label, p in ids.PAGES)[path]
        if path != "/data":
            assert page.locator(".empty-state").count() == 1
        assert "active" in page.get_attribute(f"#{ids.nav_link(path.strip('/'))}", "class")
    assert page.console.errors == []


def test_root_redirects_to_overview(server_url, page):
    _goto(page, server_url + "/")
    assert page.url.endswith("/overview")


def test_upload_and_import_nyc(server_url, page, files, artifacts):
    data = files["nyc"].read_text().splitlines()[1:]
    users = len({line.split(",")[0] for line in data})
    repeats = len(data) - len(set(data))  # same user, place and minute: rejected as duplicates
    _goto(page, server_url + "/data")
    _upload(page, files["nyc"])
    summary = page.inner_text(f"#{ids.SNIFF_SUMMARY}")
    assert "Detected format" in summary and "Foursquare" in summary
    assert page.locator(f"#{ids.PREVIEW_TABLE} tbody tr").count() > 0
    assert page.locator(f"#{ids.MAPPING_FORM} .map-field").count() == 9
    user_field = page.locator(f"#{ids.MAPPING_FORM} .map-field",
                              has=page.locator("code", has_text=re.compile("^user_id$")))
    assert user_field.locator(".dash-dropdown-value").inner_text().strip() != ""
    assert page.input_value(f"#{ids.NAME_INPUT}") == "nyc_2k"  # suggested from the file name

    # A wrong format override is explained, and the format can be set back.
    _choose(page, ids.FORMAT_DROPDOWN, "Taobao UserBehavior")
    page.wait_for_selector(f"#{ids.SNIFF_ERROR} .alert-error")
    assert "does not look like the taobao format" in page.inner_text(f"#{ids.SNIFF_ERROR}")
    assert page.locator(f"#{ids.MAPPING_FORM} .map-field").count() == 0
    _choose(page, ids.FORMAT_DROPDOWN, "Foursquare TSMC check-ins")
    page.wait_for_selector(f"#{ids.MAPPING_FORM} .map-field")
    assert page.locator(f"#{ids.SNIFF_ERROR} .alert-error").count() == 0
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "data-mapping.png"), full_page=True)
    _import(page, "nyc2k")
    report = page.locator(f"#{ids.IMPORT_RESULT} .report")
    assert report.count() == 1, page.inner_text(f"#{ids.IMPORT_RESULT}")
    assert _kpi(report, "Rows read") == f"{len(data):,}"
    assert _kpi(report, "Rows kept") == f"{len(data) - repeats:,}"
    assert _kpi(report, "Rows rejected") == f"{repeats:,}"
    assert _kpi(report, "Users") == f"{users:,}"
    table = page.locator(f"#{ids.DATASETS_TABLE}")
    expect(table).to_contain_text("nyc2k")    # the table and selector follow the import
    expect(table).to_contain_text(f"{len(data) - repeats:,}")
    wait_until(lambda: _options(page), lambda o: "nyc2k" in o, "nyc2k in the dataset selector")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "data-report.png"), full_page=True)
    assert page.console.errors == []


def test_second_import_and_dataset_query_parameter(server_url, page, files):
    _goto(page, server_url + "/data")
    _upload(page, files["tb"])
    assert "Taobao" in page.inner_text(f"#{ids.SNIFF_SUMMARY}")
    _import(page, "tb2k")
    report = page.locator(f"#{ids.IMPORT_RESULT} .report")
    assert report.count() == 1, page.inner_text(f"#{ids.IMPORT_RESULT}")
    read = int(_kpi(report, "Rows read").replace(",", ""))
    kept = int(_kpi(report, "Rows kept").replace(",", ""))
    rejected = int(_kpi(report, "Rows rejected").replace(",", ""))
    assert read == LINES and kept + rejected == read and kept > 0.9 * read
    wait_until(lambda: sorted(_options(page)), lambda o: o == ["nyc2k", "tb2k"],
               "both datasets in the selector")

    _goto(page, server_url + "/overview?dataset=nyc2k")
    _expect_selected(page, "nyc2k")
    assert _kpi(page, "Events") == f"{LINES - 1 - 4:,}"  # 1,999 check-ins, 4 repeats
    assert "nyc2k" in page.inner_text(".dataset-badge")
    assert "dataset=nyc2k" in page.get_attribute(f"#{ids.nav_link('map')}", "href")

    _goto(page, server_url + "/overview?dataset=tb2k")
    _expect_selected(page, "tb2k")
    assert _kpi(page, "Events") == f"{kept:,}"

    _goto(page, server_url + "/overview")  # no parameter: the newest import
    _expect_selected(page, "tb2k")

    _goto(page, server_url + "/overview?dataset=nope")
    assert "no dataset named 'nope'" in page.inner_text(".alert-warning")
    assert page.console.errors == []


def test_name_clash_shows_a_clear_error(server_url, page, files):
    _goto(page, server_url + "/data")
    _upload(page, files["nyc"])
    _import(page, "nyc2k")
    box = page.locator(f"#{ids.IMPORT_RESULT} .alert-error")
    assert box.count() == 1
    assert "already exists" in box.inner_text() and "Replace" in box.inner_text()


def test_every_page_with_data_and_screenshots(server_url, page, artifacts):
    for key, label, path in ids.PAGES:
        _goto(page, f"{server_url}{path}?dataset=nyc2k")
        assert page.locator(".page-header h1").inner_text() == label
        _expect_selected(page, "nyc2k")
        assert "nyc2k" in page.inner_text(".dataset-badge")
        assert "active" in page.get_attribute(f"#{ids.nav_link(key)}", "class")
        page.screenshot(path=str(artifacts / f"page-{key}.png"), full_page=True)
    assert page.console.errors == []


def test_choosing_a_dataset_updates_url_and_page(server_url, page):
    _goto(page, server_url + "/overview?dataset=nyc2k")
    _choose(page, ids.DATASET_DROPDOWN, "tb2k")
    page.wait_for_url(re.compile(r"dataset=tb2k"))
    page.wait_for_function("() => document.querySelector('.dataset-badge')"
                           " && document.querySelector('.dataset-badge').innerText"
                           ".includes('tb2k')")
    _expect_selected(page, "tb2k")
    page.go_back()
    page.wait_for_url(re.compile(r"dataset=nyc2k"))
    page.wait_for_function("() => document.querySelector('.dataset-badge').innerText"
                           ".includes('nyc2k')")
    assert page.console.errors == []


def test_cancel_an_upload(server_url, server_home, page, tmp_path):
    big = tmp_path / "two_chunks.csv"
    big.write_bytes(b"1,2,3,4,1511544070\n" * 500_000)  # 9.5 MB: two 8 MB chunks
    held = []
    page.route("**/api/upload/*/chunk*", lambda route: held.append(route))  # hold chunks
    _goto(page, server_url + "/data")
    page.set_input_files(f"#{ids.UPLOAD_INPUT}", str(big))
    page.wait_for_selector(f"#{ids.UPLOAD_CANCEL}", state="visible")
    wait_until(lambda: len(held), bool, "the first chunk reaches the route", page=page)
    assert len(held) == 1
    uploads = server_home / "uploads"
    started = [p for p in uploads.iterdir() if (p / "two_chunks.csv.part").exists()]
    assert len(started) == 1
    page.click(f"#{ids.UPLOAD_CANCEL}")
    held[0].continue_()
    page.wait_for_function(f"() => document.getElementById('{ids.UPLOAD_STATUS}').innerText"
                           ".includes('cancelled')")
    # the browser asks the server to delete it
    wait_until(started[0].exists, lambda there: not there, "the partial upload is deleted",
               page=page)
    assert len(held) == 1  # chunk 1 was never sent
    assert page.is_hidden(f"#{ids.UPLOAD_CANCEL}")
    assert page.console.errors == []


def test_drop_dataset_after_confirm(server_url, page):
    _goto(page, server_url + "/data?dataset=tb2k")
    page.once("dialog", lambda d: d.accept())
    page.click(f"#{ids.DATASETS_TABLE} tr:has-text('tb2k') button")
    page.wait_for_selector(f"#{ids.DROP_MESSAGE} .alert-ok")
    page.wait_for_function(f"() => !document.querySelector('#{ids.DATASETS_TABLE}')"
                           ".innerText.includes('tb2k')")
    wait_until(lambda: _options(page), lambda o: o == ["nyc2k"], "tb2k leaves the selector")
    # the selection moved off the dropped dataset
    _expect_selected(page, "nyc2k")
    assert page.console.errors == []

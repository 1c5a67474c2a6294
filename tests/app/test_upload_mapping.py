"""The Data page's sniff panel, mapping form and import report on real files (issue #12):
what the importer recognised, the latitude/longitude swap offered and applied, and every note
of the report written for the user (no Python lists, no raw report keys)."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest
from dash import html
from trailscope.analytics import schema
from trailscope.app.services import workspace as services
from trailscope.app.views import data as data_views

from tests.app.helpers import texts
from tests.conftest import GEOLIFE, NYC


def _notices(component: Any, kind: str) -> list[str]:
    """Texts of the alert boxes of one kind (info, warning, ...) in a component tree."""
    found = []

    def walk(c: Any) -> None:
        if isinstance(c, html.Div) and f"alert-{kind}" in str(getattr(c, "className", "")):
            found.append(" ".join(texts(c)))
        children = getattr(c, "children", None)
        for child in children if isinstance(children, list) else [children]:
            if child is not None and not isinstance(child, str | int | float):
                walk(child)

    walk(component)
    return found


def _no_reprs(text: str) -> None:
    words = re.sub(r"“[^”]*”", "", text)  # values quoted from the file aside
    assert not re.search(r"\['|\{'|': |\bNone\b|natively|read_|time_format|variant", words), text


@pytest.fixture()
def swapped_nyc(tmp_path):
    path = tmp_path / "nyc_swapped.csv.gz"
    pd.read_csv(NYC, dtype=str, keep_default_na=False).rename(
        columns={"latitude": "longitude", "longitude": "latitude"}).to_csv(
        path, index=False, compression="gzip")
    return path


def test_sniff_panel_says_what_was_recognised_and_warns_of_a_swap(swapped_nyc) -> None:
    sn = services.sniff(NYC)
    (info, *_) = _notices(data_views.sniff_summary(sn, NYC.name, NYC.stat().st_size), "info")
    assert info.startswith("Recognised as a Foursquare TSMC2014 check-in export (columns user_id")
    assert not _notices(data_views.sniff_summary(sn, NYC.name, 1), "warning")
    sn = services.sniff(swapped_nyc)
    (warning,) = _notices(data_views.sniff_summary(sn, swapped_nyc.name, 1), "warning")
    assert warning.startswith("Latitude and longitude look swapped") and "Antarctica" in warning


def test_swap_button_exchanges_the_mapping_and_the_import_is_right(workspace,
                                                                   swapped_nyc) -> None:
    import trailscope.app.main  # noqa: F401 (creates the app, which registers the pages)
    from trailscope.app.pages import data as data_page

    sn = services.sniff(swapped_nyc)
    lat, lon = data_page.swap_lat_lon(1, sn.mapping[schema.LAT], sn.mapping[schema.LON])
    assert (lat, lon) == ("longitude", "latitude")
    assert data_page.swap_lat_lon(2, lat, lon) == ("latitude", "longitude")  # and back
    mapping = {**sn.mapping, schema.LAT: lat, schema.LON: lon}
    report = services.import_uploaded(swapped_nyc, "fixed", mapping=mapping)
    assert report["warnings"] == []
    ev = workspace.events("fixed")
    assert ev[schema.LAT].between(40.4, 41.0).all() and ev[schema.LON].between(-74.3, -73.6).all()
    # without the swap the report warns, on the page too
    report = services.import_uploaded(swapped_nyc, "as_is")
    (warning,) = _notices(data_views.import_report(report), "warning")
    assert "look swapped" in warning and "Swap button" in warning


def test_import_report_notes_are_sentences(workspace, tmp_path) -> None:
    df = pd.read_csv(NYC, dtype=str, keep_default_na=False)
    df.loc[df.index[::50], "latitude"] = "999"  # 2% of the check-ins with a broken location
    path = tmp_path / "nyc_some_bad.csv.gz"
    df.to_csv(path, index=False, compression="gzip")
    report = services.import_uploaded(path, "somebad")
    shown = " ".join(texts(data_views.import_report(report)))
    assert report["extra"]["read_natively"]  # the data is there, but not shown as such
    assert "events kept without a location" in shown
    assert f"{report['located_rows']:,} of the events have coordinates" in shown
    _no_reprs(shown)
    geolife = services.import_uploaded(GEOLIFE, "geolife")
    shown = " ".join(texts(data_views.import_report(geolife)))
    assert "121,458 GPS fixes grouped into 174 stay points at 45 places." in shown
    _no_reprs(shown)


def test_old_reports_render_their_notes_as_sentences() -> None:
    old = {"name": "x", "rows_read": 3, "rows_kept": 3, "rows_rejected": 0, "users": 1,
           "items": 1, "extra": {"variant": "", "time_format": "iso",
                                 "read_natively": ["lat", "lon"],
                                 "notes": ["the file is not UTF-8; read as latin-1"]}}
    shown = " ".join(texts(data_views.import_report(old)))
    assert "the file is not UTF-8; read as latin-1" in shown
    _no_reprs(shown)


def test_preview_headers_follow_the_swapped_mapping(workspace, swapped_nyc) -> None:
    from trailscope.app.main import server
    from trailscope.app.pages import data as data_page

    from tests.app.test_upload import _upload_file

    uid = _upload_file(server.test_client(), swapped_nyc.read_bytes(), swapped_nyc.name)
    sn = services.sniff(swapped_nyc)
    mapping = data_views.swap_lat_lon(sn.mapping)
    fields = [{"type": "x", "field": f} for f in mapping]
    table = data_page.preview_follows_mapping(list(mapping.values()), fields,
                                              {"upload_id": uid}, sn.format)
    thead = table.children.children[0]  # Div > Table > [Thead > Tr > Th..., Tbody]
    pairs = {th.children[0].children: th.children[1].children for th in thead.children.children}
    assert pairs["longitude"] == f"→ {schema.LAT}" and pairs["latitude"] == f"→ {schema.LON}"
    assert pairs["user_id"] == f"→ {schema.USER}" and pairs["venue_id"] == "not used"

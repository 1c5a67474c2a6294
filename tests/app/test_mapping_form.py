"""The Data page's mapping form (app/views/data.py) on real files: a field the import fills by
itself (GeoLife's items from stay points, a .plt file's user from its folder) says so instead
of "— not in file —" and carries no required mark; other formats keep both."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dash import dcc, html
from trailscope.analytics import schema
from trailscope.analytics.ingest.pipeline import import_file, sniff
from trailscope.analytics.store import Store
from trailscope.app.views import data as data_views

from tests.app.helpers import texts
from tests.conftest import GEOLIFE, NYC


def _fields(form: html.Div) -> dict[str, dict[str, Any]]:
    """field -> {required, placeholder, value, help} of each row of the form."""
    out = {}
    for row in form.children:
        label, dropdown, help_div = row.children
        assert isinstance(dropdown, dcc.Dropdown)
        out[dropdown.id["field"]] = {
            "required": any(isinstance(c, html.Span) and c.className == "req"
                            for c in label.children),
            "placeholder": dropdown.placeholder, "value": dropdown.value,
            "help": " ".join(texts(help_div))}
    return out


def _form(path: Path) -> dict[str, dict[str, Any]]:
    sn = sniff(path)
    return _fields(data_views.mapping_form([str(c) for c in sn.columns], sn.mapping,
                                           sn.format, sn.variant))


@pytest.fixture()
def plt_file(tmp_path: Path) -> Path:
    """A GeoLife .plt trajectory: 30 minutes at one spot, then a walk away."""
    folder = tmp_path / "Data" / "042" / "Trajectory"
    folder.mkdir(parents=True)
    lines = ["Geolife trajectory", "WGS 84", "Altitude is in Feet", "Reserved 3",
             "0,2,255,My Track,0,0,2,8421376", "0"]
    t0 = datetime(2009, 1, 1, 8, 0)
    for k in range(40):
        lat = 39.9840 + (0.00001 * (k % 3) if k < 30 else 0.002 * (k - 29))
        t = t0 + pd.Timedelta(minutes=k)
        lines.append(f"{lat},116.3180,0,492,39814.0,{t:%Y-%m-%d},{t:%H:%M:%S}")
    path = folder / "20090101080000.plt"
    path.write_text("\r\n".join(lines) + "\r\n")
    return path


def test_geolife_items_come_from_stay_points(tmp_path: Path) -> None:
    form = _form(GEOLIFE)
    item = form[schema.ITEM]
    assert item["value"] is None and not item["required"]
    assert "stay points" in item["placeholder"] and "not in file" not in item["placeholder"]
    assert "filled by the import" in item["help"] and "(required)" not in item["help"]
    # the csv variant maps its user column: still required, still mapped
    assert form[schema.USER]["required"] and form[schema.USER]["value"] == "uid"
    assert form[schema.TS]["required"] and form[schema.TS]["value"] == "datetime"
    # ... and the import the form offers works without an item column
    with Store(tmp_path / "ws.duckdb") as store:
        report = import_file(store, GEOLIFE, name="geo")
        assert report.rows_kept > 0 and report.items > 0


def test_a_plt_file_takes_its_user_from_the_folder(plt_file: Path) -> None:
    form = _form(plt_file)
    assert "stay points" in form[schema.ITEM]["placeholder"]
    user = form[schema.USER]
    assert not user["required"] and "folder" in user["placeholder"]
    assert "Trajectory" in user["help"]


def test_other_formats_keep_the_required_mark_and_not_in_file() -> None:
    form = _form(NYC)
    assert all(form[f]["required"] for f in schema.REQUIRED)
    assert all(form[f]["value"] for f in schema.REQUIRED)
    unmapped = [f for f, v in form.items() if v["value"] is None]
    assert unmapped and all(form[f]["placeholder"] == "— not in file —" for f in unmapped)
    # a form drawn without a format (older callers) is the plain one
    plain = _fields(data_views.mapping_form(["lat", "lng", "datetime", "uid"], {}))
    assert plain[schema.ITEM]["required"]
    assert plain[schema.ITEM]["placeholder"] == "— not in file —"

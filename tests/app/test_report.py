"""Reports (app/report*.py) and `trailscope explain` (app/cli_explain.py) on a real NYC slice
whose user id, item id and category hold hostile strings: ``<script>`` and ``=cmd|``."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import re
import subprocess

import pytest
from trailscope.analytics import schema
from trailscope.analytics.store import Store

from tests.app.test_report_pdf import DPI, assert_margins_blank

EVIL_CAT = "<script>alert('cat')</script>"
EVIL_USER = "=cmd|' /C calc'!A0"
EVIL_ITEM = "=cmd|' /C notepad'!A1<script>alert('item')</script>"


@pytest.fixture(scope="module")
def evil(nyc40_home):
    """TRAILSCOPE_HOME with dataset ``nyc_evil`` (40 NYC users; one renamed to EVIL_USER,
    whose events all have category EVIL_CAT, and whose most visited item becomes EVIL_ITEM)
    and a tiny trained st-transformer."""
    from trailscope.models.api import train

    home = nyc40_home
    store = Store(home / "trailscope.duckdb")
    t = store.table("nyc40")
    u0 = store.query_df(f"SELECT min({schema.USER}) AS u FROM {t}")["u"].iloc[0]
    top = store.query_df(f"SELECT {schema.ITEM} AS i, count(*) AS n FROM {t} WHERE "
                         f"{schema.USER} = ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1", [u0])["i"][0]
    cols = []
    for c in schema.COLUMNS:
        if c == schema.USER:
            cols.append(f"CASE WHEN {c} = $u THEN $eu ELSE {c} END")
        elif c == schema.ITEM:
            cols.append(f"CASE WHEN {c} = $i THEN $ei ELSE {c} END")
        elif c == schema.CATEGORY:
            cols.append(f"CASE WHEN {schema.USER} = $u THEN $ec ELSE {c} END")
        else:
            cols.append(c)
    con = store.cursor()
    con.execute("SET variable u = ?", [u0])
    sql = f"SELECT {', '.join(cols)} FROM {t}"
    sql = (sql.replace("$u", "getvariable('u')").replace("$eu", "getvariable('eu')")
           .replace("$i", "getvariable('i')").replace("$ei", "getvariable('ei')")
           .replace("$ec", "getvariable('ec')"))
    for k, v in (("eu", EVIL_USER), ("i", top), ("ei", EVIL_ITEM), ("ec", EVIL_CAT)):
        con.execute(f"SET variable {k} = ?", [v])
    store.save_dataset("nyc_evil", sql, source="test", fmt="slice", report={}, con=con)
    con.close()
    res = train(store, "nyc_evil", model="st-transformer", epochs=1, pretrain_epochs=0,
                hidden=16, batch_size=128, max_len=20, log=lambda _m: None)
    store.close()
    return {"home": home, "model_id": res.model_id}


@pytest.fixture()
def evil_store(evil, monkeypatch):
    monkeypatch.setenv("TRAILSCOPE_HOME", str(evil["home"]))
    s = Store()
    yield s
    s.close()


def _html_report(evil, evil_store, tmp_path):
    from trailscope.app.reports import report

    data = report.collect(evil_store, "nyc_evil", EVIL_USER, EVIL_ITEM, evil["model_id"])
    path = report.write(data, tmp_path / "r.html")
    return data, path.read_text(encoding="utf-8")


def test_html_report_escapes_hostile_names_and_holds_the_charts(evil, evil_store, tmp_path):
    data, page = _html_report(evil, evil_store, tmp_path)
    assert EVIL_ITEM in set(data.explanation.events[schema.ITEM])
    # no hostile string reaches the page as markup: only escaped forms occur
    assert "<script>alert(" not in page and EVIL_USER not in page
    assert page.count("&lt;script&gt;alert(&#x27;cat&#x27;)") >= 2  # events + recommendations
    assert "=cmd|&#x27; /C calc&#x27;!A0" in page  # the user id, as text
    assert "\\u0026lt;script\\u0026gt;alert" in page  # figure JSON: escaped twice
    # the charts: plotly.js and deck.gl inlined, every figure div, the deck.gl map
    assert "Plotly.newPlot" in page and len(page) > 3_000_000
    for name in ("trend", "rhythm", "drift", "path", "attribution", "groups", "attention",
                 "counterfactual"):
        assert f"id='fig-{name}'" in page
    assert "id='deck-map'" in page and "trailscopeDeck.render(" in page
    assert not re.search(r"""<script[^>]+src=|<link[^>]+href=["']https?:""", page)
    # the CSV in the report is formula-safe
    m = re.search(r'href="data:text/csv;base64,([A-Za-z0-9+/=]+)"', page)
    rows = list(csv.reader(io.StringIO(base64.b64decode(m.group(1)).decode("utf-8"))))
    cells = [c for r in rows[1:] for c in r]
    assert "'" + EVIL_USER in cells and "'" + EVIL_ITEM in cells
    assert not any(c.startswith(("=", "+", "@", "|")) for c in cells)
    assert sum(float(r[rows[0].index("attribution")]) for r in rows[1:]) == pytest.approx(
        data.explanation.total, abs=1e-3)


def test_html_report_shows_hostile_names_as_text_in_a_browser(evil, evil_store, tmp_path):
    from playwright.sync_api import sync_playwright
    from trailscope.app.reports.report import CHROMIUM, CHROMIUM_ARGS

    _, page_html = _html_report(evil, evil_store, tmp_path)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        pg = b.new_page()
        dialogs: list[str] = []
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.goto((tmp_path / "r.html").as_uri())
        pg.wait_for_function("window.trailscopeReady === true", timeout=30_000)
        text = pg.inner_text("body")
        n_plots = pg.locator(".fig .main-svg").count()
        b.close()
    assert dialogs == []
    assert EVIL_CAT in text and EVIL_USER in text and EVIL_ITEM in text
    assert n_plots >= 8


def test_pdf_report_renders(evil, evil_store, tmp_path):
    from trailscope.app.reports import report

    path = report.export(evil_store, "nyc_evil", EVIL_USER, tmp_path / "r.pdf",
                         model_id=evil["model_id"])
    assert path.read_bytes()[:5] == b"%PDF-"
    subprocess.run(["pdftoppm", "-png", "-r", str(DPI), str(path), str(tmp_path / "page")],
                   check=True)
    pngs = sorted(tmp_path.glob("page*.png"))
    assert len(pngs) >= 3 and pngs[0].stat().st_size > 5_000
    assert_margins_blank(pngs)  # the hostile names wrap inside the page
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert EVIL_CAT in text and "Provenance" in text and "Per-event attribution" in text


def test_batch_export_lists_failures(evil, evil_store, tmp_path):
    from trailscope.app.reports import report

    users = evil_store.query_df(f"SELECT DISTINCT {schema.USER} AS u FROM "
                                f"{evil_store.table('nyc_evil')} ORDER BY 1 LIMIT 2")["u"]
    out = report.export_batch(evil_store, "nyc_evil", [*users, "no-such-user"],
                              tmp_path / "batch", fmt="html", model_id=evil["model_id"])
    assert len(out["written"]) == 2 and list(out["failed"]) == ["no-such-user"]
    assert out["libraries"] == []  # self-contained reports unless shared=True
    assert "not among" in out["failed"]["no-such-user"]
    names = sorted(p.name for p in (tmp_path / "batch").iterdir())
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+\.html", n) for n in names)


def test_cli_explain_json_and_report(evil, evil_store, tmp_path, capsys):
    from trailscope.app.cli.explain import add_explain_parser

    evil_store.close()
    p = argparse.ArgumentParser()
    add_explain_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["explain", "nyc_evil", EVIL_USER, "--json", "--report",
                         str(tmp_path / "cli.html"), "--model", evil["model_id"]])
    args.func(args)
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"user", "item", "model", "score", "delta", "events", "groups",
                        "summary"}
    assert out["user"] == EVIL_USER and out["model"] == "st-transformer"
    assert set(out["groups"]) == {"item", "time", "distance", "category"}
    assert all(set(e) == {"item_id", "ts", "attribution"} for e in out["events"])
    assert (tmp_path / "cli.html").stat().st_size > 1_000_000
    # without --item the top recommendation is explained; with --item that item
    args = p.parse_args(["explain", "nyc_evil", EVIL_USER, "--item", EVIL_ITEM, "--json"])
    args.func(args)
    assert json.loads(capsys.readouterr().out)["item"] == EVIL_ITEM
    with pytest.raises(ValueError, match=r"\.html or \.pdf"):
        args = p.parse_args(["explain", "nyc_evil", EVIL_USER, "--report", "x.docx"])
        args.func(args)

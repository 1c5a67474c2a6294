"""Smoke test of the scale benchmark on a few thousand rows: the generated files are in the
real formats, and one small run measures import, summaries, a page, export and engines."""

from __future__ import annotations

import pandas as pd
from trailscope.analytics import schema
from trailscope.analytics.ingest.pipeline import sniff
from trailscope.analytics.sample.generate import CSV_COLUMNS

from bench import scale_bench


def test_city_csv_repeats_the_city_with_new_residents(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(scale_bench, "CITY_BASE", 1_000)
    path = tmp_path / "city.csv"
    scale_bench.write_city(path, 2_500, 7)
    df = pd.read_csv(path, dtype={schema.USER: str})
    assert list(df.columns) == list(CSV_COLUMNS) and len(df) == 2_500
    copy = df[schema.USER].str.extract(r"-(\d+)$")[0].fillna("1")
    assert copy.value_counts().to_dict() == {"1": 1_000, "2": 1_000, "3": 500}
    first = df[copy == "1"]
    second = df[copy == "2"]
    assert set(second[schema.USER].str.removesuffix("-2")) <= set(first[schema.USER])
    assert sniff(path).format == "generic"
    ts = pd.to_datetime(df[schema.TS], format="%Y-%m-%d %H:%M:%S")
    assert ts.notna().all()


def test_taobao_csv_has_the_real_columns(tmp_path) -> None:
    path = tmp_path / "taobao.csv"
    scale_bench.write_taobao(path, 3_000, 7)
    df = pd.read_csv(path, header=None, names=["user", "item", "cat", "behavior", "ts"])
    assert len(df) == 3_000 and df["user"].nunique() == 3_000 // scale_bench.TAOBAO_PER_USER
    assert set(df["behavior"]) <= {"pv", "cart", "fav", "buy"}
    assert (df["behavior"] == "pv").mean() > 0.8
    span = df["ts"] - scale_bench.TAOBAO_START
    assert span.min() >= 0 and span.max() < scale_bench.TAOBAO_DAYS * 86400
    assert df.groupby("item")["cat"].nunique().max() == 1  # an item has one category
    assert sniff(path).format == "taobao"


def test_one_small_run_measures_every_step(tmp_path, capsys) -> None:
    # one page of four and no models: each is a fresh process (seconds on a loaded machine)
    pages = ["one user"]
    assert scale_bench.main(["--events", "3000", "--shape", "taobao", "--repeat", "1",
                             "--skip-models", "--skip-spark", "--pages", ",".join(pages),
                             "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kept 3,000 of 3,000 rows" in out and "FAILED" not in out
    assert "DuckDB read_csv into a table" in out and "(3,000 rows" in out
    for page in pages:
        assert f"page {page}: cold " in out
    engines = [line for line in out.splitlines() if line.startswith("| ")
               and line.split("|")[1].strip() in {"kpis", "trend", "active-users", "rhythm",
                                                  "cohorts"}]
    assert len(engines) == 5 and all(line.rstrip().endswith("| yes |") for line in engines)
    assert "models:" not in out
    row = next(line for line in out.splitlines() if line.startswith("| taobao | 3,000 |"))
    assert row.count("met") == 4, row  # import speed, memory, summaries, one user
    assert list(tmp_path.iterdir()) == []  # the generated files are gone

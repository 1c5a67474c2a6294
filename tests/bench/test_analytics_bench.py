"""Smoke test of the analytics benchmark's machinery on a small sample (seconds)."""

from __future__ import annotations

import pytest

from bench import analytics_bench

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]


def test_every_page_query_runs_checks_and_prints_cold_and_warm(tmp_path, capsys) -> None:
    rows = analytics_bench.run(30_000, repeat=1, seed=1, workdir=tmp_path)
    out = capsys.readouterr().out
    pages = {r["page"] for r in rows}
    assert {"Overview", "Map", "Users"} <= pages
    bad = [r["query"] for r in rows if r["check"] != "ok"]
    assert not bad, f"engine and pandas disagree on {bad}"
    assert all(r["cold_s"] > 0 and r["duckdb_s"] > 0 and r["pandas_s"] > 0 for r in rows)
    # the first query built the rollup; its build time has a line of its own
    assert "rollup build: " in out and "(no rollup was built)" not in out
    assert "| page total |" in out and "< 1 s:" in out and "ratio goal" in out

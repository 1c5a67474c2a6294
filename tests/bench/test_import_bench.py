"""Smoke test of the import benchmark's machinery on a tiny sample CSV (seconds)."""

from __future__ import annotations

from trailscope.analytics.sample.generate import write_csv

from bench import import_bench


def test_measure_baseline_and_importer_in_child_processes(tmp_path) -> None:
    csv = write_csv(tmp_path / "tiny.csv", 2_000, seed=1)
    base = import_bench.run_one("baseline", csv, tmp_path)
    assert "error" not in base, base
    assert base["rows"] == 2_000 and base["seconds"] > 0
    # peak RSS of the child: at least the interpreter with pandas loaded, far below 2 GB
    assert base["rss_ready_mb"] <= base["peak_mb"] < 2048
    imp = import_bench.run_one("importer", csv, tmp_path)
    assert "error" not in imp, imp
    assert imp["rows"] == imp["stored"] == 2_000
    results = [{"rows": 2_000, "file_mb": csv.stat().st_size / 2**20, "baseline": base,
                "importer": imp, "floor": {"error": "skipped"}}]
    text = import_bench.table(results)
    assert text.count("\n") == 2 and "| 2,000 |" in text
    row = text.splitlines()[2]
    # a speed ratio and a memory verdict were computed
    assert row.count("MISSED") + row.count(" ok") == 2, row

"""The `trailscope` command line, run as a real subprocess on a real workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import NYC, TAOBAO


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAILSCOPE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "trailscope.app.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


# the committed NYC slice (tests/data): 47,929 check-ins, 91 exact repeats, 361 users, 3,565 POIs
def test_import_nyc_json_report(home: Path) -> None:
    r = run_cli(home, "import", str(NYC), "--name", "nyc", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["name"] == "nyc"
    assert rep["rows_read"] == 47_929
    assert rep["rejected_by_reason"].get("duplicate") == 91
    assert rep["rows_kept"] == 47_929 - rep["rows_rejected"]
    assert (rep["users"], rep["items"]) == (361, 3_565)
    assert rep["has_coordinates"] is True
    assert rep["time_min"].startswith("2012-04-0") and rep["time_max"].startswith("2013-02-1")
    assert rep["summaries_s"] > 0 and _rollup_tables(home, "nyc")[0] is not None
    # the Overview's forecast and periodicity fitted as the dashboard's import does, kept as
    # files the first view reads
    assert rep["prefit_s"] > 0
    assert list((home / "cache" / "forecasts").iterdir())
    assert list((home / "cache" / "periods").iterdir())


def test_import_prints_summaries_line_or_skips_them(home: Path) -> None:
    r = run_cli(home, "sample", "--users", "20", "--name", "tiny2")
    assert r.returncode == 0, r.stderr
    assert "dashboard summaries built in " in r.stdout
    assert "Overview forecast fitted in " in r.stdout
    r = run_cli(home, "sample", "--users", "20", "--name", "tiny3", "--no-summaries")
    assert r.returncode == 0, r.stderr
    assert "summaries" not in r.stdout and "forecast" not in r.stdout
    assert _rollup_tables(home, "tiny3") == (None, 0)


def test_reimport_refused_without_replace(home: Path) -> None:
    r = run_cli(home, "import", str(NYC), "--name", "nyc")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1
    assert "--replace" in r.stderr
    r = run_cli(home, "datasets", "--json")
    assert [d["rows"] for d in json.loads(r.stdout) if d["name"] == "nyc"] == [47_929 - 91]


def test_keep_duplicates_and_replace(home: Path) -> None:
    r = run_cli(home, "import", str(NYC), "--name", "nyc", "--replace", "--keep-duplicates",
                "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows_kept"] == 47_929


def test_taobao_and_datasets_listing(home: Path) -> None:
    r = run_cli(home, "import", str(TAOBAO), "--json")  # the committed Taobao slice
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert (rep["rows_kept"], rep["users"], rep["items"]) == (26_222, 250, 18_624)
    assert rep["has_coordinates"] is False
    listing = json.loads(run_cli(home, "datasets", "--json").stdout)
    assert {d["name"] for d in listing} >= {"nyc", rep["name"]}
    text = run_cli(home, "datasets").stdout
    assert "nyc" in text and "26,222" in text


def test_broken_file_fails_with_one_line(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.csv"
    bad.write_bytes(bytes(range(256)) * 40)
    r = run_cli(home, "import", str(bad), "--name", "garbage")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "garbage" in r.stderr
    missing = run_cli(home, "import", str(tmp_path / "nope.csv"))
    assert missing.returncode != 0 and "nope.csv" in missing.stderr
    names = {d["name"] for d in json.loads(run_cli(home, "datasets", "--json").stdout)}
    assert "garbage" not in names and "nyc" in names


def test_bad_map_argument(home: Path) -> None:
    r = run_cli(home, "import", str(TAOBAO), "--map", "usr=0", "--name", "x")
    assert r.returncode != 0 and "unknown field 'usr'" in r.stderr


def _rollup_tables(home: Path, name: str) -> tuple[dict | None, int]:
    """(registry row of the dataset's summary tables, how many of its tables exist)."""
    from trailscope.analytics.rollups import tables as rollup
    from trailscope.analytics.store import DB_FILENAME, Store

    with Store(home / DB_FILENAME, read_only=True) as store:
        cur = store.cursor()
        n = cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE ?",
                        [f"rollup__{name}__%"]).fetchall()[0][0]
        return rollup.info(cur, name), n


def test_sample_and_drop(home: Path) -> None:
    r = run_cli(home, "sample", "--users", "30", "--seed", "3", "--name", "tiny", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["users"] == 30 and rep["rows_kept"] > 100
    # the dashboard's summary tables are built by the import, not by the first page view
    assert rep["summaries_s"] > 0
    reg, tables = _rollup_tables(home, "tiny")
    assert reg is not None and tables >= 20
    assert run_cli(home, "drop", "tiny").returncode == 0
    names = {d["name"] for d in json.loads(run_cli(home, "datasets", "--json").stdout)}
    assert "tiny" not in names
    r = run_cli(home, "drop", "tiny")
    assert r.returncode != 0 and "no dataset named 'tiny'" in r.stderr


def test_train_evaluate_recommend_explain_json(home: Path) -> None:  # user 43: in the slice
    r = run_cli(home, "train", "nyc", "--model", "repeat", "--json")
    assert r.returncode == 0, r.stderr
    trained = json.loads(r.stdout)  # stdout holds exactly one JSON object; the log is on stderr
    assert "filter" in r.stderr and trained["model_id"].startswith("repeat-")
    assert 0.2 < trained["metrics"]["ndcg@10"] <= 1.0

    r = run_cli(home, "evaluate", "nyc", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["model_id"] for row in rows] == [trained["model_id"]]
    assert {"model", "split", "hr@10", "ndcg@10", "mrr", "train_seconds"} <= set(rows[0])
    assert rows[0]["split"] == "leave-last" and rows[0]["hr@10"] >= rows[0]["ndcg@10"]
    chosen = rows[0]["chosen"]  # repeat picks its window and half-life on validation
    assert {"window", "half_life_hours"} <= set(chosen)
    r = run_cli(home, "evaluate", "nyc")
    assert f"chosen on validation: window {chosen['window']}" in r.stdout

    r = run_cli(home, "recommend", "nyc", "43", "--k", "5", "--at", "2012-06-01T19:00",
                "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["user"] == "43" and rec["model"] == "repeat" and len(rec["items"]) == 5
    scores = [it["score"] for it in rec["items"]]
    assert scores == sorted(scores, reverse=True)
    assert {"item_id", "score", "category", "lat", "lon"} <= set(rec["items"][0])

    r = run_cli(home, "explain", "nyc", "43", "--json")
    assert r.returncode == 0, r.stderr
    ex = json.loads(r.stdout)
    assert {"user", "item", "model", "score", "delta", "events", "groups", "summary"} <= set(ex)
    top = json.loads(run_cli(home, "recommend", "nyc", "43", "--json").stdout)["items"][0]
    assert ex["item"] == top["item_id"]

    r = run_cli(home, "recommend", "nyc", "no-such-user")
    assert r.returncode != 0 and "no-such-user" in r.stderr


def test_train_settings_are_parsed_and_checked(home: Path) -> None:
    from trailscope.app.cli.main import CliError, parse_settings

    assert parse_settings(["hidden=128", "blend=false", "lr=0.001", "relation=kv"]) == {
        "hidden": 128, "blend": False, "lr": 0.001, "relation": "kv"}
    with pytest.raises(CliError, match="KEY=VALUE"):
        parse_settings(["hidden"])
    r = run_cli(home, "train", "nyc", "--model", "sasrec", "--set", "hiden=3")
    assert r.returncode != 0
    assert "hiden" in r.stderr and "valid settings" in r.stderr and "hidden" in r.stderr


# -- analysis figures: trailscope aggregate zones|forecast|drift NAME --------------------------
def test_import_says_which_clock_the_times_use(home: Path, tmp_path: Path) -> None:
    r = run_cli(home, "import", str(NYC), "--name", "nyc_clock", "--no-summaries")
    assert r.returncode == 0, r.stderr
    # the slice has coordinates and UTC times: New York's zone, with daylight saving
    assert "times: local time from each event's time zone" in r.stdout
    assert "America/New_York" in r.stdout
    assert "Recognised as a Foursquare" in r.stdout


def test_aggregate_figures_json(home: Path) -> None:
    info = {d["name"]: d for d in json.loads(run_cli(home, "datasets", "--json").stdout)}
    assert "nyc" in info
    r = run_cli(home, "aggregate", "zones", "nyc", "--json")
    assert r.returncode == 0, r.stderr
    zones = json.loads(r.stdout)
    rows = zones["zones"]
    assert rows and {"zone", "events", "users", "places", "extent_km", "trend"} <= set(rows[0])
    in_zones = sum(z["events"] for z in rows)
    assert in_zones <= info["nyc"]["rows"]
    assert abs(zones["coverage"] - in_zones / info["nyc"]["rows"]) < 0.01  # all rows located
    assert max(z["extent_km"] for z in rows) <= 1.5

    r = run_cli(home, "aggregate", "forecast", "nyc", "--freq", "day", "--json")
    assert r.returncode == 0, r.stderr
    fc = json.loads(r.stdout)
    # the slice ends at 02:29 on 2013-02-16 and starts at 18:00 on 2012-04-03: both partial
    left_out = {str(p["period"])[:10] for p in fc["partial_periods"]}
    assert {"2012-04-03", "2013-02-16"} <= left_out
    assert all(p["coverage"] < 1 for p in fc["partial_periods"])
    assert fc["forecast"] and fc["backtest"]["mase"] > 0 and fc["backtest"]["smape"] >= 0

    r = run_cli(home, "aggregate", "drift", "nyc", "--json")
    assert r.returncode == 0, r.stderr
    drift = json.loads(r.stdout)
    assert drift["basis"] == "category"
    users = {u["user"]: u for u in drift["users"]}
    assert drift["most_changed"]
    assert all(users[u]["pairs"] >= drift["min_pairs"] for u in drift["most_changed"])


def test_aggregate_figures_text_and_refusals(home: Path) -> None:
    r = run_cli(home, "aggregate", "zones", "nyc")
    assert r.returncode == 0, r.stderr
    assert "zones covering" in r.stdout and "of the located events" in r.stdout
    r = run_cli(home, "aggregate", "drift", "no_such_set")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "no dataset named 'no_such_set'" in r.stderr
    r = run_cli(home, "aggregate", "forecast", "nyc", "--engine", "spark")
    assert r.returncode == 1 and "DuckDB only" in r.stderr


def test_export_day_partitions_then_aggregate_them(tmp_path: Path) -> None:
    """`trailscope export NAME DIR`: Hive-style day folders; refused on a non-empty DIR without
    --overwrite (nothing touched); the folder aggregates like the stored dataset."""
    home = tmp_path / "home"
    assert run_cli(home, "import", str(TAOBAO), "--name", "tb", "--no-summaries").returncode == 0
    out = tmp_path / "export"
    r = run_cli(home, "export", "tb", str(out))
    assert r.returncode == 0, r.stderr
    days = sorted(p.name for p in out.iterdir())
    assert days and all(len(d) == len("day=2017-11-25") and d.startswith("day=") for d in days)
    assert f"in {len(days)} day partitions" in r.stdout and "26,222 events" in r.stdout
    files = sorted(out.glob("day=*/*.parquet"))
    stamp = [p.stat().st_mtime_ns for p in files]

    r = run_cli(home, "export", "tb", str(out))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "not empty" in r.stderr and "--overwrite" in r.stderr
    assert str(tmp_path) not in r.stderr  # no server path in a message
    assert [p.stat().st_mtime_ns for p in sorted(out.glob("day=*/*.parquet"))] == stamp
    assert run_cli(home, "export", "tb", str(out), "--overwrite").returncode == 0

    by_name = run_cli(home, "aggregate", "trend", "tb", "--json")
    by_folder = run_cli(home, "aggregate", "trend", str(out), "--json")
    assert by_name.returncode == by_folder.returncode == 0, by_folder.stderr
    assert json.loads(by_folder.stdout) == json.loads(by_name.stdout)
    assert sum(r["events"] for r in json.loads(by_name.stdout)) == 26_222

    single = tmp_path / "tb.parquet"  # a .parquet name still writes one file
    r = run_cli(home, "export", "tb", str(single))
    assert r.returncode == 0 and single.is_file(), r.stderr
    r = run_cli(home, "export", "nope", str(tmp_path / "x"))
    assert r.returncode == 1 and "no dataset named 'nope'" in r.stderr
    assert not (tmp_path / "x").exists()

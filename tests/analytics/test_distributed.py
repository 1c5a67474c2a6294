"""Export to Parquet (one file, or a folder of day partitions), then the same aggregations on
DuckDB (by name) and on Spark local mode (by file or folder), on real slices (NYC, Taobao)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from trailscope.analytics import distributed, schema
from trailscope.analytics.distributed import AGGREGATIONS, DAY, export_parquet, run_aggregation
from trailscope.analytics.ingest.pipeline import import_file

from tests.analytics.realdata import import_nyc, open_store
from tests.conftest import TAOBAO

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]
needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="Spark needs Java 17+ on the PATH")

#: the granularity each slice is compared at: NYC spans ten months, the Taobao slice ~9 days
FREQ = {"nyc": "week", "taobao": "day"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with both real slices, and each one's day-partitioned export."""
    root = tmp_path_factory.mktemp("dist")
    store = open_store(root)
    import_nyc(store, "nyc")
    import_file(store, TAOBAO, name="taobao")
    folders = {name: export_parquet(store, name, root / f"{name}-days") for name in FREQ}
    yield store, folders
    store.close()


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{DAY}=*/*.parquet"))


def test_export_roundtrip(ws, tmp_path) -> None:
    store, _ = ws
    out = export_parquet(store, "nyc", tmp_path / "nyc" / "events.parquet")
    back = pd.read_parquet(out)
    assert out.is_file()
    assert list(back.columns) == list(schema.COLUMNS)
    assert len(back) == store.info("nyc").rows
    assert back[schema.TS].is_monotonic_increasing


@pytest.mark.parametrize("name", sorted(FREQ))
def test_day_partitions_hold_each_utc_day(ws, name) -> None:
    store, folders = ws
    parts = _parts(folders[name])
    stored = store.query_df(f"SELECT CAST({schema.TS} AS DATE) AS d, count(*) AS n "
                            f"FROM {store.table(name)} GROUP BY d")
    assert {p.parent.name for p in parts} == {f"{DAY}={d:%Y-%m-%d}" for d in stored["d"]}
    total = 0
    for part in parts:
        day = pd.Timestamp(part.parent.name.split("=", 1)[1])
        frame = pd.read_parquet(part)  # one file alone: the day is in the folder name only
        assert list(frame.columns) == list(schema.COLUMNS)
        assert frame[schema.TS].min() >= day
        assert frame[schema.TS].max() < day + pd.Timedelta(days=1)
        total += len(frame)
    assert total == store.info(name).rows
    # read as one table (DuckDB, partition discovery): the same events, with their day
    back = pd.read_parquet(folders[name])
    assert len(back) == total and DAY in back.columns


def test_export_refuses_to_overwrite_and_replaces_whole(ws, tmp_path) -> None:
    store, _ = ws
    folder = tmp_path / "out"
    folder.mkdir()  # an empty folder is fine
    export_parquet(store, "taobao", folder)
    before = {p.relative_to(folder): p.stat().st_mtime_ns for p in _parts(folder)}
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty; pass --overwrite"):
        export_parquet(store, "taobao", folder)
    assert {p.relative_to(folder): p.stat().st_mtime_ns for p in _parts(folder)} == before
    # --overwrite: the new export replaces the folder entirely (nothing stale is left in it)
    export_parquet(store, "nyc", folder, overwrite=True)
    assert not (folder / "notes.txt").exists()
    days = {p.parent.name for p in _parts(folder)}
    assert days and all(d.startswith((f"{DAY}=2012", f"{DAY}=2013")) for d in days)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no work folder left beside it
    # one file: refused when it exists, replaced with overwrite; never into a folder
    single = tmp_path / "one.parquet"
    export_parquet(store, "taobao", single)
    with pytest.raises(FileExistsError, match="already exists"):
        export_parquet(store, "nyc", single)
    assert len(pd.read_parquet(single)) == store.info("taobao").rows
    export_parquet(store, "nyc", single, overwrite=True)
    assert len(pd.read_parquet(single)) == store.info("nyc").rows
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export_parquet(store, "nyc", folder.rename(tmp_path / "days.parquet"), overwrite=True)
    with pytest.raises(NotADirectoryError, match="is a file"):
        export_parquet(store, "nyc", _plain_file(tmp_path / "notes"), overwrite=True)


def _plain_file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


def test_failed_export_leaves_the_old_one(ws, tmp_path, monkeypatch) -> None:
    store, _ = ws
    folder = export_parquet(store, "taobao", tmp_path / "out")
    before = sorted(p.relative_to(folder) for p in _parts(folder))

    def fail(src, dst):  # the last step fails (a full disk, a lost mount)
        raise OSError("No space left on device")

    monkeypatch.setattr(distributed.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        export_parquet(store, "nyc", folder, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.relative_to(folder) for p in _parts(folder)) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(KeyError, match="no dataset named 'nope'"):
        export_parquet(store, "nope", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_unknown_inputs_are_explained(ws, tmp_path) -> None:
    store, _ = ws
    with pytest.raises(ValueError, match="unknown aggregation 'nope'"):
        run_aggregation("nope", "nyc", store=store)
    with pytest.raises(ValueError, match="unknown engine"):
        run_aggregation("trend", "nyc", engine_name="flink", store=store)
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        run_aggregation("trend", str(tmp_path / "missing.parquet"), store=store)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert len(a) > 0
    keys = [c for c in a.columns if not pd.api.types.is_float_dtype(a[c])]
    a = a.sort_values(keys).reset_index(drop=True)
    b = b[list(a.columns)].sort_values(keys).reset_index(drop=True)
    for col in a.columns:
        if pd.api.types.is_datetime64_any_dtype(a[col]):
            a[col] = a[col].astype("datetime64[us]")
            b[col] = b[col].astype("datetime64[us]")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


@pytest.mark.parametrize("what", sorted(AGGREGATIONS))
@pytest.mark.parametrize("name", sorted(FREQ))
def test_duckdb_on_partitions_equals_duckdb_on_store(ws, name, what) -> None:
    store, folders = ws
    duck = run_aggregation(what, name, freq=FREQ[name], store=store)
    part = run_aggregation(what, str(folders[name]), freq=FREQ[name], store=store)
    _same(duck, part)


@needs_java
@pytest.mark.parametrize("what", sorted(AGGREGATIONS))
@pytest.mark.parametrize("name", sorted(FREQ))
def test_spark_on_partitions_equals_duckdb_on_store(ws, name, what) -> None:
    store, folders = ws
    duck = run_aggregation(what, name, freq=FREQ[name], store=store)
    spark = run_aggregation(what, str(folders[name]), engine_name="spark", master="local[2]",
                            freq=FREQ[name])
    _same(duck, spark)
    if "events" in duck.columns and what != "cohorts":
        assert int(duck["events"].sum()) == store.info(name).rows


@needs_java
def test_spark_on_one_file_equals_duckdb_on_store(ws, tmp_path) -> None:
    store, _ = ws
    path = export_parquet(store, "nyc", tmp_path / "nyc.parquet")
    duck = run_aggregation("rhythm", "nyc", store=store)
    spark = run_aggregation("rhythm", str(path), engine_name="spark", master="local[2]")
    _same(duck, spark)
    assert int(duck["events"].sum()) == store.info("nyc").rows

"""Export to Parquet, then the same aggregation on DuckDB (by name) and on Spark (by file)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.distributed import AGGREGATIONS, export_parquet, run_aggregation

from tests.analytics.realdata import import_nyc, open_store

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]


@pytest.fixture(scope="module")
def nyc(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("dist"))
    name = import_nyc(store)
    yield store, name
    store.close()


def test_export_roundtrip(nyc, tmp_path) -> None:
    store, name = nyc
    out = export_parquet(store, name, tmp_path / "nyc" / "events.parquet")
    back = pd.read_parquet(out)
    assert list(back.columns) == list(schema.COLUMNS)
    assert len(back) == store.info(name).rows
    assert back[schema.TS].is_monotonic_increasing


def test_unknown_inputs_are_explained(nyc, tmp_path) -> None:
    store, name = nyc
    with pytest.raises(ValueError, match="unknown aggregation 'nope'"):
        run_aggregation("nope", name, store=store)
    with pytest.raises(ValueError, match="unknown engine"):
        run_aggregation("trend", name, engine_name="flink", store=store)
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        run_aggregation("trend", str(tmp_path / "missing.parquet"), store=store)


@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17+ on the PATH")
@pytest.mark.parametrize("what", ["trend", "rhythm"])
def test_spark_on_parquet_equals_duckdb_on_store(nyc, tmp_path, what) -> None:
    store, name = nyc
    path = export_parquet(store, name, tmp_path / f"{what}.parquet")
    duck = run_aggregation(what, name, engine_name="duckdb", freq="week", store=store)
    spark = run_aggregation(what, str(path), engine_name="spark", master="local[2]",
                            freq="week")
    assert what in AGGREGATIONS and len(duck) > 10
    keys = [c for c in duck.columns if c not in {"events", "users"}]
    a = duck.sort_values(keys).reset_index(drop=True)
    b = spark[list(duck.columns)].sort_values(keys).reset_index(drop=True)
    for col in a.columns:
        if pd.api.types.is_datetime64_any_dtype(a[col]):
            a[col] = a[col].astype("datetime64[us]")
            b[col] = b[col].astype("datetime64[us]")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert int(a["events"].sum()) == store.info(name).rows

"""The workspace store: atomic dataset writes, registry, replace and drop."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.store import (
    DatasetNotFound,
    Store,
    StoreError,
    derived_table,
    drop_derived,
)

ROWS = (
    "SELECT * FROM (VALUES "
    "('u1', 'i1', TIMESTAMP '2020-01-01 10:00', 40.7, -74.0, 'visit', 'Cafe', NULL, -240), "
    "('u1', 'i2', TIMESTAMP '2020-01-02 10:00', 40.8, -73.9, 'visit', NULL, NULL, -240), "
    "('u2', 'i1', TIMESTAMP '2020-01-03 10:00', NULL, NULL, 'buy', NULL, 3.5, NULL))"
)


def _save(store: Store, name: str = "d", sql: str = ROWS, replace: bool = False):
    return store.save_dataset(name, sql, source="test", fmt="generic",
                              report={"rows_read": 3}, replace=replace)


def test_save_registers_stats_and_events(store: Store) -> None:
    info = _save(store)
    assert (info.rows, info.users, info.items) == (3, 2, 2)
    assert info.has_coordinates and info.bbox == (40.7, 40.8, -74.0, -73.9)
    assert info.report == {"rows_read": 3}
    ev = store.events("d")
    assert list(ev.columns) == list(schema.COLUMNS)
    assert ev[schema.USER].tolist() == ["u1", "u1", "u2"]
    assert store.list_datasets()["name"].tolist() == ["d"]
    # the rows without pandas say the same, NULL as None
    _save(store, "e", sql=ROWS.replace("u1", "u7"))
    frame = store.list_datasets()
    records = store.dataset_records()
    assert [r["name"] for r in records] == frame["name"].tolist() == ["e", "d"]
    for rec, (_, row) in zip(records, frame.iterrows(), strict=True):
        assert list(rec) == list(frame.columns)
        for key, value in rec.items():
            assert (value is None) if pd.isna(row[key]) else value == row[key], key


def test_existing_name_refused_without_replace_and_kept(store: Store) -> None:
    _save(store)
    with pytest.raises(StoreError, match="--replace"):
        _save(store, sql=ROWS.replace("u2", "u9"))
    assert sorted(store.events("d")[schema.USER].unique()) == ["u1", "u2"]
    info = _save(store, sql=ROWS.replace("u2", "u9"), replace=True)
    assert sorted(store.events("d")[schema.USER].unique()) == ["u1", "u9"]
    assert info.users == 2


def test_failed_write_leaves_store_untouched(store: Store) -> None:
    _save(store)
    bad = "SELECT 'u', 'i', CAST('not a time' AS TIMESTAMP), NULL, NULL, NULL, NULL, NULL, NULL"
    # a DuckDB error mid-way comes back as a StoreError saying nothing changed
    with pytest.raises(StoreError, match="could not save dataset 'd'.*unchanged"):
        _save(store, "d", bad, replace=True)  # replace of an existing dataset fails mid-way
    with pytest.raises(StoreError, match="could not save dataset 'other'"):
        _save(store, "other", bad)
    assert store.info("d").rows == 3 and len(store.events("d")) == 3
    assert not store.exists("other")
    tables = store.query_df("SELECT table_name FROM information_schema.tables")["table_name"]
    assert "events__other" not in set(tables)


def test_empty_result_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="no usable rows"):
        _save(store, sql=ROWS + " WHERE false")
    assert not store.exists("d")


def test_drop_and_missing(store: Store) -> None:
    _save(store)
    store.drop("d")
    assert not store.exists("d")
    with pytest.raises(DatasetNotFound, match="trailscope datasets"):
        store.drop("d")
    with pytest.raises(DatasetNotFound):
        store.events("d")


def test_drop_removes_the_datasets_derived_tables_only(store: Store) -> None:
    """Derived tables follow the store's naming rule, so dropping ``a`` takes its own and
    its registry row, never those of ``a__b`` (whose names also start ``rollup__a__``)."""
    _save(store, "a")
    _save(store, "a__b")
    cur = store.cursor()
    cur.execute("CREATE TABLE rollups (name VARCHAR)")
    cur.execute("INSERT INTO rollups VALUES ('a'), ('a__b')")
    for name in ("a", "a__b"):
        cur.execute(f"CREATE TABLE {derived_table('rollup', name, 'users')} AS SELECT 1 AS x")
    store.drop("a")
    left = [t for (t,) in cur.execute("SELECT table_name FROM duckdb_tables() WHERE table_name "
                                      "LIKE 'rollup\\_\\_%' ESCAPE '\\' ORDER BY 1").fetchall()]
    assert left == ["rollup__a__b__users"]
    assert cur.execute("SELECT name FROM rollups").fetchall() == [("a__b",)]
    with pytest.raises(ValueError, match="not a derived table"):
        derived_table("rollup", "a", "x__y")
    cur.close()


def test_a_summary_rebuild_keeps_the_live_tables_a_drop_or_reimport_does_not(store: Store):
    """``drop_derived`` drops the summaries by default (what a rebuild replaces); the live
    write path's tables go only with the dataset: its drop or its re-import."""
    _save(store, "a")
    cur = store.cursor()

    def tables() -> set[str]:
        return {t for (t,) in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}

    def derive() -> None:
        for kind in ("rollup", "live"):
            cur.execute(f"CREATE TABLE IF NOT EXISTS {derived_table(kind, 'a', 'x')} AS "
                        "SELECT 1 AS x")

    derive()
    drop_derived(cur, "a")
    assert tables() >= {"live__a__x"} and "rollup__a__x" not in tables()
    derive()
    cur.execute(f"CREATE TABLE {derived_table('rollup', 'a', 'kept')} AS SELECT 1 AS x")
    drop_derived(cur, "a", keep=("rollup__a__kept",))  # e.g. a rebuild's staged events
    assert "rollup__a__kept" in tables() and "rollup__a__x" not in tables()
    derive()
    _save(store, "a", replace=True)  # re-import: the summaries stay (stale), live goes
    assert "rollup__a__x" in tables() and "live__a__x" not in tables()
    derive()
    store.drop("a")
    assert not {t for t in tables() if t.endswith("__a__x")}
    cur.close()


def test_invalid_names_rejected(store: Store) -> None:
    for bad in ["", "a b", "x;drop", "-lead", "a" * 65, 'q"uote']:
        with pytest.raises(ValueError, match="invalid dataset name"):
            _save(store, bad)


def test_fingerprint_changes_with_content(store: Store) -> None:
    _save(store)
    fp = store.fingerprint("d")
    assert fp == store.fingerprint("d")
    _save(store, sql=ROWS.replace("'i2'", "'i3'"), replace=True)
    assert store.fingerprint("d") != fp


def test_persists_across_reopen(tmp_path) -> None:
    path = tmp_path / "w.duckdb"
    with Store(path) as s:
        _save(s)
    with Store(path, read_only=True) as s:
        assert s.info("d").rows == 3
        with pytest.raises(StoreError, match="read-only"):
            s.drop("d")


# -- staged writes (the importer's path) -------------------------------------------------------
def _stage(store: Store, table: str = "_stage_x", extra: bool = True) -> None:
    cur = store.cursor()
    cols = ", ".join(f"{c} {schema.DUCKDB_TYPES[c]}" for c in schema.COLUMNS)
    cur.execute(f"CREATE TABLE {table} ({cols}{', junk VARCHAR' if extra else ''})")
    cur.execute(f"INSERT INTO {table} SELECT *{', NULL' if extra else ''} FROM ({ROWS})")
    cur.close()


def _tables(store: Store) -> set[str]:
    return set(store.query_df("SELECT table_name FROM duckdb_tables()")["table_name"])


def test_staged_table_is_pruned_and_renamed_with_given_stats(store: Store) -> None:
    _stage(store)
    stats = {"rows": 2, "users": 1, "items": 2, "time_min": None, "time_max": None,
             "min_lat": 40.7, "max_lat": 40.8, "min_lon": -74.0, "max_lon": -73.9}

    def prune(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(f"DELETE FROM _stage_x WHERE {schema.USER} = 'u2'")
        cur.execute("ALTER TABLE _stage_x DROP COLUMN junk")

    info = store.save_dataset("d", staged="_stage_x", prepare=prune, stats=stats,
                              source="test", fmt="generic", report={})
    assert (info.rows, info.users, info.items) == (2, 1, 2)  # taken from stats, not scanned
    assert info.bbox == (40.7, 40.8, -74.0, -73.9)
    assert len(store.events("d")) == 2 and "_stage_x" not in _tables(store)


def test_staged_table_with_wrong_columns_is_refused_and_left_as_it_was(store: Store) -> None:
    _save(store)
    _stage(store)  # still has the junk column
    with pytest.raises(StoreError, match="canonical"):
        store.save_dataset("d", staged="_stage_x", source="test", fmt="generic", report={},
                           replace=True)
    assert store.info("d").rows == 3 and len(store.events("d")) == 3
    assert store.query_df("SELECT count(*) AS n FROM _stage_x")["n"][0] == 3
    with pytest.raises(ValueError, match="exactly one"):
        store.save_dataset("e", ROWS, staged="_stage_x", source="t", fmt="g", report={})
    with pytest.raises(ValueError, match="plain table name"):
        store.save_dataset("e", staged='"x"; DROP TABLE datasets', source="t", fmt="g",
                           report={})


def test_staged_replace_swaps_the_table(store: Store) -> None:
    _save(store)
    _stage(store, extra=False)
    cur = store.cursor()
    cur.execute(f"UPDATE _stage_x SET {schema.USER} = 'z'")
    cur.close()
    info = store.save_dataset("d", staged="_stage_x", source="test", fmt="generic",
                              report={}, replace=True)
    assert (info.rows, info.users) == (3, 1)  # stats scanned from the renamed table
    assert set(store.events("d")[schema.USER]) == {"z"}


def test_names_ignore_case_and_blanks(store: Store) -> None:
    _save(store, "Trips")
    with pytest.raises(StoreError, match="already exists.*as 'Trips': names ignore case"):
        _save(store, "TRIPS")
    assert store.exists(" trips\n") and store.info("TRIPS").name == "Trips"
    assert len(store.events("tRiPs")) == 3
    _save(store, "trips", sql=ROWS.replace("u2", "u9"), replace=True)  # replaces 'Trips'
    assert store.list_datasets()["name"].tolist() == ["trips"]
    tables = set(store.query_df("SELECT table_name FROM duckdb_tables()")["table_name"])
    assert {t.lower() for t in tables if t.lower().startswith("events__")} == {"events__trips"}
    assert store.drop("TRIPS\n") == "trips" and store.list_datasets().empty
    with pytest.raises(ValueError, match="1-64 letters"):
        _save(store, "bad\nname")


def test_claim_holds_a_name_across_stores_of_one_file(store: Store, tmp_path,
                                                      monkeypatch) -> None:
    monkeypatch.chdir(store.path.parent)
    other = Store(store.path.name)  # the same file, spelt as a relative path
    try:
        with store.claim(" NYC "), pytest.raises(StoreError, match="is being imported"):
            with other.claim("nyc"):
                pass
        with other.claim("nyc"):  # released
            assert store.claimed("NYC")
        assert not store.claimed("nyc")
    finally:
        other.close()


def test_open_errors_say_what_went_wrong(tmp_path):
    """A workspace another process holds names that cause; a missing folder does not."""
    import subprocess
    import sys

    with pytest.raises(StoreError) as missing:
        Store(tmp_path / "no-such-folder" / "trailscope.duckdb")
    assert "No such file" in str(missing.value)
    assert "Another TrailScope process" not in str(missing.value)

    path = tmp_path / "held.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; "
                               f"con = duckdb.connect({str(path)!r}); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="Another TrailScope process"):
            Store(path)
    finally:
        holder.kill()
        holder.wait()

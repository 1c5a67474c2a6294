"""The one write path for streamed events (analytics.append) on the NYC slice: validation
(every rule, every problem at once, the importer's time forms and local-time rule), exact
counts, event ids stored once, the registry against a full recount, rollback on failure,
refusals, and the fingerprint that keeps models valid across appends."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from trailscope.analytics import append as ap
from trailscope.analytics import schema
from trailscope.analytics.ingest import localtime, timeparse
from trailscope.analytics.rollups import incremental
from trailscope.analytics.store import (
    DatasetNotFound,
    Store,
    StoreError,
    content_fingerprint,
    events_table,
)

from tests.analytics.realdata import import_nyc, open_store

U, IT, T, LA, LO, TZ = (schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON,
                        schema.TZ_OFFSET)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("append"))
    import_nyc(store, "nyc")
    yield store
    store.close()


def fresh(store: Store, name: str) -> str:
    """A copy of the NYC slice as dataset ``name`` (replacing an older copy)."""
    store.save_dataset(name, f"SELECT * FROM {events_table('nyc')}", source="nyc slice",
                       fmt="tsmc", report={}, replace=True)
    return name


def some(store: Store, name: str, n: int) -> pd.DataFrame:
    """``n`` real events of the dataset (user, item, place), most recent first."""
    return store.query_df(f"SELECT {U}, {IT}, {LA}, {LO}, {schema.CATEGORY} FROM "
                          f"{events_table(name)} ORDER BY {T} DESC, {U}, {IT} LIMIT {n}")


def events(store: Store, name: str, n: int, prefix: str, start: datetime,
           ids: bool = True) -> list[dict]:
    """``n`` new events: real users and places of the slice, one minute apart from
    ``start``, event ids ``<prefix>-<k>`` (when ``ids``)."""
    rows = some(store, name, n).to_dict("records")
    out = []
    for k, r in enumerate(rows):
        e = {U: r[U], IT: r[IT], T: (start + timedelta(minutes=k)).isoformat() + "Z",
             LA: r[LA], LO: r[LO]}
        if not pd.isna(r[schema.CATEGORY]):
            e[schema.CATEGORY] = r[schema.CATEGORY]
        if ids:
            e[ap.EVENT_ID] = f"{prefix}-{k}"
        out.append(e)
    return out


def recount(store: Store, name: str) -> tuple:
    return tuple(store.query_df(
        f"SELECT count(*) AS n, count(DISTINCT {U}) AS u, count(DISTINCT {IT}) AS i, "
        f"min({T}) AS t0, max({T}) AS t1, min({LA}) AS a0, max({LA}) AS a1, min({LO}) AS o0, "
        f"max({LO}) AS o1, count({LA}) > 0 AS located FROM {events_table(name)}").iloc[0])


def registry(store: Store, name: str) -> tuple:
    i = store.info(name)
    bbox = i.bbox or (None,) * 4
    return (i.rows, i.users, i.items, pd.Timestamp(i.time_min), pd.Timestamp(i.time_max),
            *bbox, i.has_coordinates)


def live(store: Store, name: str) -> pd.DataFrame:
    return store.query_df(f"SELECT * FROM {ap.live_table(name)} ORDER BY {ap.EVENT_ID}")


# -- validate ------------------------------------------------------------------------------
def test_validate_reads_the_import_forms(ws):
    r = some(ws, "nyc", 1).iloc[0]
    recs = [
        {U: r[U], IT: r[IT], T: "2012-04-03T18:00:09-04:00"},       # offset: UTC + local
        {U: 7, IT: 12.0, T: "2012-04-03 22:00:09Z", LA: r[LA], LO: r[LO]},  # Z: UTC marker
        {U: "a", IT: "b", T: 1333490409},                             # unix seconds
        {U: "a", IT: "b", T: 1333490409500},                          # unix milliseconds
        {U: "a", IT: "b", T: "1333490409", "behavior": "buy", "value": "4.5"},
        {U: "a", IT: "b", T: "2012-01-15", LA: r[LA], LO: r[LO],       # winter: EST
         schema.CATEGORY: "[{'url': '/c/1', 'name': 'Coffee Shop'}]"},
        {U: "a", IT: "b", T: "2012-07-01T12:00:00+00:00", LA: 0.5, LO: -31.0},  # at sea
    ]
    f = ap.validate(recs)
    assert list(f.columns) == [*schema.COLUMNS, ap.EVENT_ID]
    assert {c: str(f[c].dtype) for c in schema.COLUMNS} == schema.PANDAS_DTYPES
    want_ts = ["2012-04-03 22:00:09", "2012-04-03 22:00:09", "2012-04-03 22:00:09",
               "2012-04-03 22:00:09.5", "2012-04-03 22:00:09", "2012-01-15", "2012-07-01 12:00"]
    assert f[T].tolist() == [pd.Timestamp(x) for x in want_ts]
    assert f[U].tolist()[:2] == [str(r[U]), "7"] and f[IT].tolist()[1] == "12"
    # the offset in the text; New York's clock at the place (EDT, then EST); solar at sea
    assert f[TZ].tolist()[:2] == [-240, -240] and f[TZ].tolist()[5] == -300
    assert f[TZ].tolist()[6] == -120 and pd.isna(f[TZ].iloc[2])
    assert f[schema.BEHAVIOR].tolist()[3:5] == [schema.DEFAULT_BEHAVIOR, "buy"]
    assert f[schema.VALUE].iloc[4] == 4.5 and f[schema.CATEGORY].iloc[5] == "Coffee Shop"


def test_python_reading_equals_the_importers_sql():
    """The forms read in Python give what the importer's SQL gives (time, offset, status)."""
    forms = ["2012-04-03T18:00:09-04:00", "2012-04-03 18:00:09+0200", "2012-04-03T18:00:09+02",
             "2012-04-03T18:00:09.123456Z", "2012-04-03T18:00:09.1234567Z", "2012-04-03",
             "2012-04-03 18:00", "2012-4-3 18:00", "2012-04-03 18:00:09 +05:30",
             "2012-04-03T18:00:09z", "2012-04-03T18:00:09+00:00", "1899-12-31T23:59:59",
             "2199-12-31T23:59:59", "2200-01-01", "2012-02-30T10:00:00", "2012-04-03T25:00"]
    unix = ["1333476009", "1333476009.5", "-1", "99999999999", "100000000000", "1333476009500",
            "-2208988801", "7258118400"]
    cols = {k: [None] * (len(forms) + len(unix)) for k in (U, "t", "e", schema.CATEGORY)}
    cols[U] = ["u"] * len(cols[U])
    cols["t"][:len(forms)] = forms
    cols["e"][len(forms):] = unix
    ts, tz_ts, status, _ = ap._times(cols)
    con = duckdb.connect()
    con.execute(timeparse.SESSION_SQL)
    for k, (t, e) in enumerate(zip(cols["t"], cols["e"], strict=True)):
        want_ts, want_off, ok = con.execute(
            f"SELECT x, o, {timeparse.in_range_sql('x')} FROM (SELECT "
            f"coalesce({timeparse.iso_sql('t')}, {timeparse.unix_sql('e')}) AS x, "
            f"nullif({timeparse.offset_minutes_sql('t')}, 0) AS o "
            "FROM (SELECT ?::VARCHAR AS t, ?::VARCHAR AS e))", [t, e]).fetchone()
        want = "bad" if want_ts is None else "ok" if ok else "range"
        assert (status[k], ts[k] if want == "ok" else None, tz_ts[k] if want == "ok" else None) \
            == (want, want_ts if want == "ok" else None, want_off if want == "ok" else None), \
            (t, e)


def test_place_offsets_equal_the_imports(ws):
    """Offsets from coordinates equal localtime.fill's on the same events (clock changes
    included: the days around New York's change of 4 Nov 2012)."""
    places = some(ws, "nyc", 40)
    start = datetime(2012, 11, 3, 12, 0)
    recs = [{U: "u", IT: "i", T: (start + timedelta(minutes=97 * k)).isoformat(),
             LA: p[LA], LO: p[LO]} for k, p in enumerate(places.to_dict("records"))]
    recs += [{U: "u", IT: "i", T: "2012-06-01T00:00:00", LA: 35.68, LO: 139.76},  # Tokyo
             {U: "u", IT: "i", T: "2012-06-01T00:00:00", LA: 10.0, LO: -40.0},    # at sea
             {U: "u", IT: "i", T: "1905-06-01T00:00:00", LA: 52.52, LO: 13.40}]   # old Berlin
    f = ap.validate(recs)
    con = duckdb.connect()
    con.execute(timeparse.SESSION_SQL)
    con.execute(schema.create_table_sql("ev"))
    con.register("f", f[list(schema.COLUMNS)].assign(**{TZ: pd.Series([None] * len(f),
                                                                          dtype="Int32")}))
    con.execute("INSERT INTO ev SELECT * FROM f")
    localtime.fill(con, "ev")
    want = con.execute(f"SELECT {TZ} FROM ev").fetchnumpy()[TZ].tolist()
    assert f[TZ].tolist() == want
    assert {-240, -300} <= set(want[:40])  # both sides of the change


def problems(records) -> list[tuple[int, str]]:
    with pytest.raises(ap.AppendError) as err:
        ap.validate(records)
    return [(p.index, p.field) for p in err.value.problems], err.value


def test_every_rule_is_reported_with_index_field_and_reason():
    ok = {U: "u1", IT: "i1", T: "2012-04-03T18:00:09Z"}
    bad = [
        ({**ok, U: None}, U, "no user id"),
        ({**ok, IT: ""}, IT, "no item id"),
        ({**ok, U: "x" * (ap.TEXT_MAX_CHARS + 1)}, U, "longer than"),
        ({**ok, IT: ["a"]}, IT, "not a list"),
        ({**ok, U: True}, U, "not true/false"),
        ({**ok, U: math.inf}, U, "finite"),
        ({**ok, IT: 10 ** 40}, IT, "not a usable id"),
        ({U: "u", IT: "i"}, T, "no timestamp"),
        ({**ok, T: "yesterday"}, T, "timestamp could not be read"),
        ({**ok, T: "2012-02-30T10:00:00"}, T, "timestamp could not be read"),
        ({**ok, T: "0001-01-01T00:00:00"}, T, "before 1900 or after 2199"),
        ({**ok, T: -2208988801}, T, "before 1900 or after 2199"),
        ({**ok, T: 1e15}, T, "could not be read"),
        ({**ok, T: {"s": 1}}, T, "could not be read"),
        ({**ok, LA: 40.7}, LO, "without lon"),
        ({**ok, LO: -74.0}, LA, "without lat"),
        ({**ok, LA: 91, LO: 0.5}, LA, "out of range"),
        ({**ok, LA: 40, LO: -181}, LO, "out of range"),
        ({**ok, LA: "north", LO: 1}, LA, "not a number"),
        ({**ok, LA: float("nan"), LO: 1}, LA, "not a finite number"),
        ({**ok, LA: 0, LO: 0}, LA, "0, 0 is no place"),
        ({**ok, "value": "much"}, "value", "not a number"),
        ({**ok, "value": float("inf")}, "value", "not a finite number"),
        ({**ok, "value": 10 ** 400}, "value", "not a number"),
        ({**ok, "behavior": 3}, "behavior", "must be text, not int"),
        ({**ok, "category": {"name": "x"}}, "category", "not an object"),
        ({**ok, "usr_id": "u1"}, "usr_id", "unknown field"),
        ({**ok, ap.EVENT_ID: "e" * (ap.EVENT_ID_MAX_CHARS + 1)}, ap.EVENT_ID, "longer than"),
        ({**ok, ap.EVENT_ID: " "}, ap.EVENT_ID, "is empty"),
        ({**ok, T: "2012-04-03T18:00:09+02:00", TZ: 60}, TZ, "differs from the offset"),
        ({**ok, TZ: 30.5}, TZ, "whole minutes"),
        ("not an event", "", "must be an object"),
    ]
    records = []
    for rec, _, _ in bad:
        records += [dict(ok), rec]  # a good event before each bad one
    with pytest.raises(ap.AppendError) as err:
        ap.validate(records)
    got = err.value.problems
    assert [(p.index, p.field) for p in got] == [(2 * k + 1, f) for k, (_, f, _) in
                                                enumerate(bad)]
    for p, (_, _, words) in zip(got, bad, strict=True):
        assert words in p.reason, (p, words)
    text = str(err.value)
    assert text.startswith(f"nothing was stored: {len(bad)} problems in the batch: "
                           "event 1, field user_id: no user id; event 3, field item_id: ")
    assert f"(and {len(bad) - ap.SHOWN_PROBLEMS} more)" in text


def _event_by_event(monkeypatch, records) -> pa.Table | ap.AppendError:
    """validate_batch without its column-at-a-time path: the table, or the error raised."""
    with monkeypatch.context() as m:
        m.setattr(ap, "_fast_batch", lambda records: None)
        try:
            return ap.validate_batch(records)
        except ap.AppendError as exc:
            return exc


def test_the_column_path_equals_the_event_path(ws, monkeypatch):
    """validate_batch reads a clean batch a column at a time (ap._fast_batch) and leaves
    everything else to the event-by-event path: on real events and on each variant of one
    field (good or bad), both give the same table, or the same problems."""
    start = datetime(2012, 5, 1, 9, 30)
    base = events(ws, "nyc", 40, "col", start)
    base[3][TZ] = -240
    base[4][schema.VALUE] = 4
    base[5][schema.VALUE] = 2.5
    base[6][schema.BEHAVIOR] = "buy"
    base[7][T] = "2012-05-01T10:00:00-04:00"
    base[8][T] = "2012-05-01T10:00:00.123456+05:30"
    del base[9][LA], base[9][LO]
    assert ap._fast_batch(base) is not None                  # the common batch takes it
    got = ap.validate_batch(base)
    assert got.equals(_event_by_event(monkeypatch, base))
    variants = [
        (U, 17), (U, "  "), (U, "x" * 1001), (U, None), (IT, 2.5), (IT, ""),
        (T, 1336000000), (T, "1336000000"), (T, " 2012-05-01T10:00:00Z"), (T, "2012-05-01"),
        (T, "2012-05-01T10:00:00.1234567Z"), (T, "2012-05-01 10:00:00 +02:00"),
        (T, "1850-01-01T00:00:00Z"), (T, "yesterday"), (T, None), (T, True),
        (T, "2012-02-30T10:00:00Z"), (T, "2013-02-29T10:00:00Z"), (T, "2012-05-01T24:00:00Z"),
        (T, "2012-05-01T10:00:60Z"), (T, "2012-04-31T10:00:00Z"), (T, "2199-12-31T23:59:59Z"),
        (T, "2200-01-01T00:00:00Z"), (T, "1900-01-01T00:00:00Z"), (T, "1899-12-31T23:59:59Z"),
        (LA, "40.7"), (LA, None), (LA, 91.0), (LO, 181), (LA, float("nan")), (LA, True),
        (schema.BEHAVIOR, ""), (schema.BEHAVIOR, 3), (schema.BEHAVIOR, "b" * 1001),
        (schema.CATEGORY, 12), (schema.CATEGORY, " "), (schema.CATEGORY, '[{"name": "Cafe"}]'),
        (schema.VALUE, "4.5"), (schema.VALUE, float("inf")), (schema.VALUE, 10 ** 400),
        (schema.VALUE, False), (TZ, 60.0), (TZ, 61.5), (TZ, 5000), (TZ, True), (TZ, 120),
        (ap.EVENT_ID, ""), (ap.EVENT_ID, 7), (ap.EVENT_ID, "e" * 201), ("colour", "red"),
    ]
    for fld, value in variants:
        batch = [dict(e) for e in base]
        batch[2][fld] = value
        if fld == LA and value == 91.0:  # and no place at 0, 0
            batch[11][LA], batch[11][LO] = 0, 0
        slow = _event_by_event(monkeypatch, batch)
        fast = ap._fast_batch(batch)
        if isinstance(slow, ap.AppendError):
            assert fast is None, (fld, value)
            with pytest.raises(ap.AppendError) as caught:
                ap.validate_batch(batch)
            assert [str(p) for p in caught.value.problems] == [str(p) for p in slow.problems]
        else:
            assert fast is None or fast.equals(slow), (fld, value)
            assert ap.validate_batch(batch).equals(slow), (fld, value)
    assert ap._fast_batch([*base, "not an event"]) is None
    plain = [dict(e) for e in base[10:]]                     # every time ...Z: one parse
    assert ap._plain_utc([e[T] for e in plain]) is not None
    for t in ("2012-02-30T10:00:00Z", "2199-12-31T23:59:59Z", "2200-01-01T00:00:00Z"):
        batch = [dict(e) for e in plain]
        batch[0][T] = t
        slow = _event_by_event(monkeypatch, batch)
        if isinstance(slow, ap.AppendError):
            assert ap._fast_batch(batch) is None, t
        else:
            assert ap._fast_batch(batch).equals(slow), t
    assert ap._fast_batch(plain).equals(_event_by_event(monkeypatch, plain))
    with_tz = [dict(e) for e in base]
    with_tz[2][TZ] = 120
    assert ap._fast_batch(with_tz) is not None and ap._fast_batch(with_tz).equals(
        _event_by_event(monkeypatch, with_tz))


def test_small_batches_are_merged_into_one_table_equal_to_theirs(ws):
    """validate_columns leaves a small batch as Python lists (ap.Columns) and merge_batches
    joins a group's batches, small and large, into one Arrow chunk equal to their own
    validate_batch tables end to end (what the server's writer commits)."""
    start = datetime(2012, 6, 1, 9, 30)
    base = events(ws, "nyc", 60, "merge", start)
    base[1][TZ] = -240
    base[2][T] = "2012-06-01T10:00:00-04:00"
    del base[3][LA], base[3][LO]
    base[4][schema.VALUE] = 3
    singles = [[e] for e in base[:6]]
    large = base[6:6 + ap.FAST_MIN_EVENTS + 4]
    parts = [*singles[:3], large, *singles[3:], base[40:43]]
    got = [ap.validate_columns(p) for p in parts]
    assert isinstance(got[0], ap.Columns) and len(got[0]) == 1
    assert isinstance(got[3], pa.Table) and isinstance(got[-1], ap.Columns)
    for part, v in zip(parts, got, strict=True):
        table = v if isinstance(v, pa.Table) else ap.merge_batches([v])
        assert table.equals(ap.validate_batch(part))
    merged = ap.merge_batches(got)
    assert merged.column(0).num_chunks == 1
    assert merged.equals(pa.concat_tables([ap.validate_batch(p) for p in parts])
                         .combine_chunks())
    assert ap.merge_batches(got[:3]).equals(ap.validate_batch(base[:3]))
    assert len(ap.merge_batches([])) == 0
    with pytest.raises(ap.AppendError) as caught:
        ap.validate_columns([{**base[0], T: "yesterday"}])
    assert [(p.index, p.field) for p in caught.value.problems] == [(0, T)]


def test_many_problems_are_capped_and_counted():
    with pytest.raises(ap.AppendError) as err:
        ap.validate([{U: "u", IT: "i", T: "never"}] * 130 + [{U: "u"}] * 20)
    assert len(err.value.problems) == ap.MAX_PROBLEMS
    assert err.value.more == 130 + 40 - ap.MAX_PROBLEMS
    assert "170 problems" in str(err.value)
    for bad in ("not a list", {"events": []}, None):
        with pytest.raises(ap.AppendError, match="must be a list of event objects"):
            ap.validate(bad)
    assert ap.validate([]).empty


# -- append --------------------------------------------------------------------------------
def test_exact_counts_event_ids_once_and_registry_equals_recount(ws):
    name = fresh(ws, "counts")
    before = ws.info(name)
    start = pd.Timestamp(before.time_max).to_pydatetime() + timedelta(days=1)
    batch = events(ws, name, 50, "a", start)
    batch[3][U] = "brand-new-user"                  # a new user and item, a wider box
    batch[4][IT] = "brand-new-item"
    batch[5][LA], batch[5][LO] = 41.5, -72.5
    batch.append(dict(batch[0]))                    # the same event id twice in the batch
    batch.append({**batch[1], ap.EVENT_ID: None})   # no id: always stored
    del batch[-1][ap.EVENT_ID]
    res = ap.append(ws, name, ap.validate(batch))
    assert (res.stored, res.duplicates, res.rows) == (51, 1, before.rows + 51)
    assert res.kept.tolist() == [True] * 50 + [False, True]
    assert recount(ws, name) == registry(ws, name)
    after = ws.info(name)
    assert (after.users, after.items) == (before.users + 1, before.items + 1)
    assert after.bbox[1] == 41.5 and after.bbox[3] == -72.5

    # resent (with one new event): only the new one is stored
    again = [*batch[:50], *events(ws, name, 1, "b", start + timedelta(hours=5))]
    res = ap.append(ws, name, ap.validate(again))
    assert (res.stored, res.duplicates, res.rows) == (1, 50, before.rows + 52)
    assert recount(ws, name) == registry(ws, name)
    got = live(ws, name)
    assert len(got) == 52 and got[ap.EVENT_ID].notna().sum() == 51
    assert got[ap.EVENT_ID].dropna().is_unique
    assert set(got.columns) == {*schema.COLUMNS, ap.EVENT_ID, ap.ARRIVED_AT}
    assert got[ap.ARRIVED_AT].notna().all()
    stored = ws.events(name, where=f"{T} >= ?", params=[start])
    assert len(stored) == 52 and (stored[U] == "brand-new-user").sum() == 1


def test_a_failure_inside_the_transaction_changes_nothing(ws, monkeypatch):
    name = fresh(ws, "rollback")
    start = pd.Timestamp(ws.info(name).time_max).to_pydatetime() + timedelta(days=1)

    def broken(cur, name, batch, **kw):
        raise RuntimeError("summary update failed")

    monkeypatch.setattr(incremental, "stage", broken)
    state = (registry(ws, name), content_fingerprint(ws.cursor(), name))
    for attempt in range(2):  # the first append of a dataset (live tables new), then later
        with pytest.raises(RuntimeError, match="summary update failed"):
            ap.append(ws, name, ap.validate(events(ws, name, 20, "f", start)))
        assert (registry(ws, name), content_fingerprint(ws.cursor(), name)) == state
        tables = set(ws.query_df("SELECT table_name FROM duckdb_tables()")["table_name"])
        if attempt == 0:
            assert not {t for t in tables if t.startswith(f"live__{name}__")}
            monkeypatch.undo()
            ap.append(ws, name, ap.validate(events(ws, name, 1, "g", start)))
            state = (registry(ws, name), content_fingerprint(ws.cursor(), name))
            monkeypatch.setattr(incremental, "stage", broken)
    assert len(live(ws, name)) == 1
    monkeypatch.undo()
    res = ap.append(ws, name, ap.validate(events(ws, name, 20, "f", start)))
    assert res.stored == 20 and recount(ws, name) == registry(ws, name)


def test_a_failed_fold_keeps_the_events_and_the_next_fold_catches_up(ws, monkeypatch):
    """The summaries are updated after the append's commit (incremental.fold): when that
    fails the events stay stored and staged, the set stays usable, and the next fold adds
    them, equal to a fresh rebuild's counts."""
    from trailscope.analytics.rollups import build, tables

    name = fresh(ws, "folds")
    cur = ws.cursor()
    build.rebuild(cur, name)
    start = pd.Timestamp(ws.info(name).time_max).to_pydatetime() + timedelta(days=1)

    def broken(cur, name, batch):
        raise duckdb.Error("summary update failed")

    monkeypatch.setattr(incremental, "apply", broken)
    res = ap.append(ws, name, ap.validate(events(ws, name, 30, "h", start)))
    assert res.stored == 30 and recount(ws, name) == registry(ws, name)
    assert incremental.staged_rows(cur, name) == 30 and tables.fresh(cur, name)
    summary = tables.Rollup(cur, name).summary
    assert summary()["events"] == res.rows - 30       # the summaries lag by the staged ones
    monkeypatch.undo()
    res = ap.append(ws, name, ap.validate(events(ws, name, 5, "i", start)), fold=False)
    assert incremental.staged_rows(cur, name) == 35
    assert ap.fold_summaries(ws, name) == 35 and incremental.staged_rows(cur, name) == 0
    assert summary()["events"] == res.rows == ws.info(name).rows
    build.rebuild(cur, name)
    assert tables.Rollup(cur, name).summary()["events"] == res.rows


def test_folds_beside_appends_keep_the_summaries_exact(ws):
    """A fold runs beside appends (the server folds in its own thread): 40 appends commit
    while another thread folds again and again, none fails, and after a last fold the
    summary counts every event, equal to the registry and to a full rebuild."""
    import threading

    from trailscope.analytics.rollups import build, tables

    name = fresh(ws, "beside")
    cur = ws.cursor()
    build.rebuild(cur, name)
    start = pd.Timestamp(ws.info(name).time_max).to_pydatetime() + timedelta(days=1)
    batches = [ap.validate(events(ws, name, 25, f"b{k}", start + timedelta(days=k)))
               for k in range(40)]
    stop, folds, errors = threading.Event(), [], []

    def folder() -> None:
        while not stop.is_set():
            try:
                folds.append(ap.fold_summaries(ws, name))
            except Exception as exc:  # noqa: BLE001 - reported by the assert below
                errors.append(exc)
            stop.wait(0.01)

    thread = threading.Thread(target=folder)
    thread.start()
    try:
        stored = sum(ap.append(ws, name, b, fold=False).stored for b in batches)
    finally:
        stop.set()
        thread.join()
    folds.append(ap.fold_summaries(ws, name))
    assert not errors and stored == 40 * 25 and sum(folds) == stored
    assert sum(1 for n in folds if n) > 1               # some folds ran between the appends
    assert incremental.staged_rows(cur, name) == 0 and tables.fresh(cur, name)
    rows = ws.info(name).rows
    assert recount(ws, name) == registry(ws, name)
    assert tables.Rollup(cur, name).summary()["events"] == rows == recount(ws, name)[0]
    build.rebuild(cur, name)
    assert tables.Rollup(cur, name).summary()["events"] == rows


def test_refusals(ws):
    frame = ap.validate([{U: "u", IT: "i", T: "2012-04-03T18:00:09Z"}])
    with pytest.raises(DatasetNotFound, match="no dataset named 'nope'"):
        ap.append(ws, "nope", frame)
    name = fresh(ws, "busy")
    with ws.claim(name):
        with pytest.raises(StoreError, match="being imported right now"):
            ap.append(ws, name, frame)
    assert ap.append(ws, name.upper(), frame).stored == 1  # names ignore case
    with pytest.raises(ValueError, match="invalid dataset name"):
        ap.append(ws, "a b", frame)


def test_fingerprint_fixed_at_import_and_live_tables_follow_the_dataset(ws):
    name = fresh(ws, "lineage")
    fp, content = ws.fingerprint(name), ws.content_fingerprint(name)
    assert fp == content  # fixed at import from the content
    start = pd.Timestamp(ws.info(name).time_max).to_pydatetime() + timedelta(days=1)
    batch = events(ws, name, 10, "l", start)
    ap.append(ws, name, ap.validate(batch))
    assert ws.fingerprint(name) == fp and ws.content_fingerprint(name) != content
    # a re-import of other data changes it and forgets the event ids stored before
    ws.save_dataset(name, f"SELECT * FROM {events_table('nyc')} LIMIT 1000", source="x",
                    fmt="tsmc", report={}, replace=True)
    assert ws.fingerprint(name) not in (fp, content)
    assert ap.append(ws, name, ap.validate(batch)).stored == 10
    ws.drop(name)
    tables = set(ws.query_df("SELECT table_name FROM duckdb_tables()")["table_name"])
    assert not {t for t in tables if t.startswith(f"live__{name}__")}


def test_older_workspace_gets_its_fingerprints(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path) as s:
        s.save_dataset("d", "SELECT 'u', 'i', TIMESTAMP '2020-01-01', NULL::DOUBLE, "
                       "NULL::DOUBLE, 'visit', NULL, NULL::DOUBLE, NULL::INTEGER",
                       source="t", fmt="generic", report={})
        want = s.fingerprint("d")
        s.cursor().execute("ALTER TABLE datasets DROP COLUMN fingerprint")
    with Store(path, read_only=True) as s:  # read-only: computed from the content
        assert s.fingerprint("d") == want
    with Store(path) as s:                  # writable: the column is added and filled
        assert s.query_df("SELECT fingerprint FROM datasets")["fingerprint"].tolist() == [want]
        assert s.fingerprint("d") == want


def test_live_tables_lost_behind_its_back_are_made_again(ws):
    """A write that finds its live tables gone (the process remembered them) is rolled back
    and committed again with every look-up, which makes them again (the id table from the
    stored events, so the registry stays exact); a second try stores nothing twice."""
    name = fresh(ws, "heal")
    start = pd.Timestamp(ws.info(name).time_max).to_pydatetime() + timedelta(days=1)
    assert ap.append(ws, name, ap.validate(events(ws, name, 5, "h", start))).stored == 5
    cur = ws.cursor()
    cur.execute(f"DROP TABLE {ap.live_table(name)}")
    cur.close()
    before = registry(ws, name)
    batch = ap.validate(events(ws, name, 5, "k", start + timedelta(hours=1)))
    assert ap.append(ws, name, batch).stored == 5
    assert registry(ws, name)[0] == before[0] + 5
    assert ap.append(ws, name, batch).stored == 0          # the live table has its ids again
    assert recount(ws, name) == registry(ws, name) and len(live(ws, name)) == 5


def test_a_dataset_replaced_behind_the_writers_back_is_looked_up_again(ws):
    """What a commit remembers of a dataset (its name, import, tables) is checked inside the
    transaction: after a drop and a new import under the same name the next append stores
    into the new dataset only, with exact counts; after a drop alone it is refused whole."""
    name = fresh(ws, "again")
    start = pd.Timestamp(ws.info(name).time_max).to_pydatetime() + timedelta(days=1)
    assert ap.append(ws, name, ap.validate(events(ws, name, 5, "a", start))).stored == 5
    ws.drop(name)
    with pytest.raises(DatasetNotFound):
        ap.append(ws, name, ap.validate(events(ws, "nyc", 5, "b", start)))
    fresh(ws, name)
    rows = registry(ws, name)[0]
    res = ap.append(ws, name, ap.validate(events(ws, name, 7, "a", start)))  # same ids again
    assert res.stored == 7 and res.rows == rows + 7
    assert recount(ws, name) == registry(ws, name) and len(live(ws, name)) == 7


def test_frames_of_other_dtypes_are_stored_as_validated_ones(ws):
    """append takes what other callers build (numbers as ids, nanosecond times, float
    offsets, no event_id) as validate's frames; a frame with a missing required value is
    refused before anything is written."""
    name = fresh(ws, "dtypes")
    when = pd.Timestamp(ws.info(name).time_max) + pd.Timedelta(days=1, microseconds=7)
    frame = pd.DataFrame({U: [1, 2], IT: ["a", "b"], T: [when, when],
                          LA: [40.7, None], LO: [-74.0, None], schema.BEHAVIOR: "visit",
                          schema.CATEGORY: [None, "Cafe"], schema.VALUE: [None, 2.0],
                          TZ: [-300.0, None]}, index=[10, 20])
    frame[T] = frame[T].astype("datetime64[ns]")
    assert ap.append(ws, name, frame).stored == 2
    got = ws.events(name, where=f"{T} = ?", params=[when.to_pydatetime()])
    assert got[U].tolist() == ["1", "2"] and got[TZ].tolist()[0] == -300
    with pytest.raises(ValueError, match="without item_id: pass it through validate"):
        ap.append(ws, name, frame.assign(**{IT: ["a", None]}))
    assert ws.info(name).rows == ws.info("nyc").rows + 2

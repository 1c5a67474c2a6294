"""Data pipeline: k-core counts, local time, the three splits, batches, pairwise features."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
import torch
from trailscope.analytics import schema
from trailscope.models.base import Batch
from trailscope.models.data.dataset import build_dataset, encode, kcore_filter, load_events
from trailscope.models.data.features import distance_matrix, haversine_km, time_interval_matrix
from trailscope.models.data.splits import trajectory_ids

from tests.models.realdata import real_workspace, save_frame

BATCH_KEYS = {"user", "item_seq", "time_seq", "lat_seq", "lon_seq", "geo_mask", "hour_seq",
              "weekday_seq", "cat_seq", "beh_seq", "target", "target_time", "target_hour",
              "target_weekday", "target_seq", "len"}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    store = real_workspace(tmp_path_factory.mktemp("data"), "nyc", "ml", "taobao", "nyc_full")
    yield store
    store.close()


def _frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=len(rows), freq="h")
    return pd.DataFrame({schema.USER: [u for u, _ in rows], schema.ITEM: [i for _, i in rows],
                         schema.TS: ts})


def test_kcore_iterative_counts():
    # u4 (1 event) goes first; that leaves i3 with 1 event, then u3 with 1 event.
    df = _frame([("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2"), ("u3", "i3"),
                 ("u3", "i1"), ("u4", "i3")])
    out, rep = kcore_filter(df, min_user=2, min_item=2)
    assert sorted(out[schema.USER].unique()) == ["u1", "u2"]
    assert sorted(out[schema.ITEM].unique()) == ["i1", "i2"]
    assert rep.removed == {"events": 3, "users": 2, "items": 1}
    assert rep.rounds == 3 and rep.iterative
    assert "removed 3 of 7 events, 2 of 4 users, 1 of 3 items" in str(rep)
    one, rep1 = kcore_filter(df, min_user=2, min_item=2, iterative=False)
    assert rep1.removed == {"events": 1, "users": 1, "items": 0} and len(one) == 6
    with pytest.raises(ValueError, match="lower min_user"):
        kcore_filter(df, min_user=50, min_item=1)


def _toy(store, name: str = "toy", n_users: int = 6, n_events: int = 9) -> pd.DataFrame:
    """Interleaved users over 3 days, 7 items, coordinates, tz offsets for some users."""
    rng = np.random.default_rng(0)
    rows = []
    base = pd.Timestamp("2024-01-01")
    for u in range(n_users):
        for e in range(n_events):
            rows.append({schema.USER: f"u{u}", schema.ITEM: f"i{rng.integers(0, 7)}",
                         schema.TS: base + pd.Timedelta(minutes=int(rng.integers(0, 4320))),
                         schema.LAT: 40.7 + 0.01 * u, schema.LON: -74.0,
                         schema.CATEGORY: "cafe" if e % 2 else None,
                         schema.TZ_OFFSET: 60 if u % 2 else None})
    df = pd.DataFrame(rows)
    save_frame(store, name, df)
    return df


def test_local_time_from_offset_and_longitude(store):
    df = pd.DataFrame({schema.USER: ["a"] * 3 + ["b"] * 3,
                       schema.ITEM: ["x", "y", "z"] * 2,
                       schema.TS: pd.to_datetime(["2024-01-01 23:30", "2024-01-02 01:00",
                                                  "2024-01-02 02:00", "2024-01-01 03:00",
                                                  "2024-01-01 04:00", "2024-01-01 05:00"]),
                       schema.LAT: [None] * 3 + [40.7] * 3,
                       schema.LON: [None] * 3 + [-74.0] * 3,
                       schema.TZ_OFFSET: [60] * 3 + [None] * 3})
    save_frame(store, "tz", df)
    ev, vocab = encode(load_events(store, "tz"))
    # a: 23:30 UTC Monday + 1 h -> 00:30 Tuesday (hour index 0 + 1 = 1, weekday 2)
    # b: 03:00 UTC Monday - 5 h (lon -74 -> -300 min) -> 22:00 Sunday (hour 23, weekday 7)
    assert ev.hour.tolist() == [1, 3, 4, 23, 24, 1]
    assert ev.weekday.tolist() == [2, 2, 2, 7, 7, 1]
    assert vocab["local_time_from"]["tz_offset_min"] == 3
    assert vocab["local_time_from"]["longitude estimate"] == 3
    assert ev.user_start.tolist() == [0, 0, 3, 6]


def test_leave_last_no_leakage(store):
    df = _toy(store)
    ds = build_dataset(store, "toy", "leave-last", max_len=4, min_user=1, min_item=1)
    ev, parts = ds.events, ds.parts
    counts = np.diff(ev.user_start)[1:]
    assert len(parts["test"]) == len(parts["valid"]) == df[schema.USER].nunique()
    assert (parts["test"].pos == ev.user_start[2:] - 1).all()           # last event
    assert (parts["valid"].pos == ev.user_start[2:] - 2).all()          # second to last
    assert ds.split_report.train_events == int((counts - 2).sum())
    # every test/valid target is at or after every training event of the same user
    for u in range(1, ds.meta.n_users + 1):
        lo, n_train = ev.user_start[u], ds.train_len[u]
        last_train = ev.ts[lo:lo + n_train].max()
        t = parts["test"].pos[parts["test"].user == u][0]
        assert ev.ts[t] >= last_train
    # training windows only ever target training events
    train_pos = parts["train"].pos
    assert np.all(train_pos - ev.user_start[parts["train"].user] < ds.train_len[
        parts["train"].user])
    # every training transition is a teacher-forcing target exactly once
    n_targets = sum(int((b.target_seq > 0).sum()) for b in ds.batches("train", 3))
    assert n_targets == int((ds.train_len[1:] - 1).clip(min=0).sum())


def test_batches_are_left_padded_with_the_contract_keys(store):
    _toy(store)
    ds = build_dataset(store, "toy", "leave-last", max_len=12, min_user=1, min_item=1)
    b = next(ds.batches("test", 4))
    assert isinstance(b, Batch) and set(b.tensors()) == BATCH_KEYS
    assert b.item_seq.shape == (4, 12) and b.time_seq.dtype == torch.float64
    assert b.lat_seq.dtype == torch.float32 and b.geo_mask.dtype == torch.bool
    for r in range(4):
        n = int(b.len[r])
        assert n == 8                                    # 9 events: 8 before the last
        assert (b.item_seq[r, : 12 - n] == 0).all() and (b.item_seq[r, 12 - n:] > 0).all()
        assert (b.hour_seq[r, 12 - n:] >= 1).all() and (b.hour_seq[r, : 12 - n] == 0).all()
        # target_seq is item_seq shifted by one, ending with the target
        assert b.target_seq[r, -1] == b.target[r]
        assert torch.equal(b.target_seq[r, 12 - n:-1], b.item_seq[r, 12 - n + 1:])
        assert (b.time_seq[r, 12 - n:] <= b.target_time[r]).all()
    # history never includes the target event itself or anything later
    ex = ds.parts["test"]
    assert (ex.pos > ex.start).all()


def test_shuffle_is_seeded_and_complete(store):
    _toy(store)
    ds = build_dataset(store, "toy", "leave-last", max_len=3, min_user=1, min_item=1)
    a = torch.cat([b.target for b in ds.batches("train", 4, shuffle=True, seed=1)])
    b = torch.cat([b.target for b in ds.batches("train", 4, shuffle=True, seed=1)])
    c = torch.cat([b.target for b in ds.batches("train", 4, shuffle=True, seed=2)])
    plain = torch.cat([b.target for b in ds.batches("train", 4)])
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(a.tolist()) == sorted(plain.tolist())


def test_temporal_cut_ordering(store):
    _toy(store, n_users=12, n_events=15)
    ds = build_dataset(store, "toy", "temporal", min_user=1, min_item=1)
    ev = ds.events
    t1, t2 = ds.split_report.cuts
    assert t1 < t2
    in_train = np.zeros(len(ev), dtype=bool)
    for u in range(1, ds.meta.n_users + 1):
        in_train[ev.user_start[u]:ev.user_start[u] + ds.train_len[u]] = True
    assert (ev.ts[in_train] < t1).all() and (ev.ts[~in_train] >= t1).all()
    v, t = ds.parts["valid"], ds.parts["test"]
    assert ((ev.ts[v.pos] >= t1) & (ev.ts[v.pos] < t2)).all()
    assert (ev.ts[t.pos] >= t2).all()
    assert (t.pos > t.start).all() and (ev.user[t.pos] == t.user).all()
    assert len(v) + len(t) + sum(ds.split_report.dropped.values()) == int((~in_train).sum())
    assert any("unseen in training" in k for k in ds.split_report.counted)


# (dataset, users, POIs, tolerance): the complete file against the published NYC set after the
# >= 10 check-ins filter (GETNext: 1,083 users, 5,135 POIs); the slice against the same filter
# counted in pandas from its file (POIs with >= 10 check-ins, then users with >= 10 of those).
# Test and validation examples: over 1,000 each in the complete file, 901 and 906 in the slice.
@pytest.mark.parametrize(("name", "users", "pois", "tol", "examples"), [
    pytest.param("nyc", 359, 1489, (0, 0), 800, id="slice"),
    pytest.param("nyc_full", 1083, 5135, (20, 100), 1000, id="full",
                 marks=pytest.mark.full_data)])
def test_trajectory_protocol_on_real_nyc(real, name, users, pois, tol, examples):
    ds = build_dataset(real, name, "trajectory")
    rep, ev = ds.split_report, ds.events
    assert abs(ds.meta.n_users - users) <= tol[0] and abs(ds.meta.n_items - pois) <= tol[1]
    assert not ds.filter_report.iterative and ds.filter_report.min_user == 10
    t1, t2 = rep.cuts
    share_train = rep.train_events / len(ev)
    assert 0.78 < share_train < 0.82
    test, valid = ds.parts["test"], ds.parts["valid"]
    assert len(test) > examples and len(valid) > examples
    assert (ev.ts[test.pos] >= t2).all()
    assert ((ev.ts[valid.pos] >= t1) & (ev.ts[valid.pos] < t2)).all()
    # only the last check-in of a 24-hour trajectory (of >= 2 check-ins) is scored
    traj = trajectory_ids(ev.user_start, ev.ts)
    nxt = np.minimum(test.pos + 1, len(ev) - 1)
    assert ((traj[nxt] != traj[test.pos]) | (test.pos == len(ev) - 1)).all()
    assert (traj[test.pos - 1] == traj[test.pos]).all()
    starts = np.r_[0, np.nonzero(np.diff(traj))[0] + 1]                 # first event of each
    span = ev.ts[test.pos] - ev.ts[starts[traj[test.pos]]]
    assert (span < 24 * 3600).all() and (span >= 0).all()  # same-minute check-ins exist
    # POIs and users unseen in training were removed, and counted
    train_items = set(ev.item[np.concatenate([np.arange(ev.user_start[u],
                                              ev.user_start[u] + ds.train_len[u])
                                              for u in range(1, ds.meta.n_users + 1)])].tolist())
    assert set(ev.item[test.pos].tolist()) <= train_items
    assert (ds.train_len[test.user] > 0).all()
    assert rep.dropped["test: POI unseen in training"] > 0
    print("\nNYC trajectory protocol:", rep, ds.filter_report, sep="\n")


@pytest.mark.full_data
def test_exclude_seen_auto_and_build_speed(real):
    took = {}
    for name in ("nyc", "ml", "taobao"):
        t = time.perf_counter()
        ds = build_dataset(real, name, "leave-last")
        took[name] = time.perf_counter() - t
        assert any("repeat rate" in m for m in ds.messages)
        if name == "nyc":
            assert ds.exclude_seen is False and ds.repeat_rate > 0.3
            assert ds.meta.has_coordinates
        if name == "ml":
            assert ds.exclude_seen is True and ds.repeat_rate == 0.0
            assert ds.filter_report.removed["items"] > 0      # ML-100K has < 5-rating movies
    assert max(took.values()) < 15, took                       # seconds, on 2 shared cores
    forced = build_dataset(real, "ml", "leave-last", exclude_seen=False)
    assert forced.exclude_seen is False


def test_time_interval_matrix_matches_double_loop():
    t = torch.tensor([[0.0, 0.0, 1000.0, 1060.0, 90000.0],
                      [5.0, 10.0, 20.0, 4e6, 4e7]], dtype=torch.float64)
    clip, buckets = 30 * 86400.0, 16
    m = time_interval_matrix(t, clip, buckets)
    assert m.shape == (2, 5, 5) and m.dtype == torch.long
    for b in range(2):
        for i in range(5):
            for j in range(5):
                if t[b, i] == 0 or t[b, j] == 0:
                    assert m[b, i, j] == 0
                    continue
                gap = min(abs(float(t[b, i] - t[b, j])), clip)
                want = math.floor(math.log1p(gap) / math.log1p(clip) * (buckets - 1)) + 1
                assert m[b, i, j] == want
    assert (m[1].diagonal() == 1).all() and m[1, 3, 4] == buckets     # clipped gap
    assert torch.equal(m, m.transpose(1, 2))


def test_distance_matrix_against_known_distances():
    lat = torch.tensor([[40.7128, 40.7306, 0.0], [51.5074, 48.8566, 0.0]])
    lon = torch.tensor([[-74.0060, -73.9352, 0.0], [-0.1278, 2.3522, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    d = distance_matrix(lat, lon, mask, fill=-1.0)
    assert d.shape == (2, 3, 3)
    assert d[0, 0, 1].item() == pytest.approx(6.3, abs=0.2)           # Manhattan -> Brooklyn
    assert d[1, 0, 1].item() == pytest.approx(343.5, abs=2.0)          # London -> Paris
    assert torch.equal(d, d.transpose(1, 2)) and (d[:, [0, 1], [0, 1]] == 0).all()
    assert (d[:, 2, :] == -1).all() and (d[:, :, 2] == -1).all()
    la, lo = lat.double(), lon.double()   # float32 trig loses ~50 m at city scale
    one = haversine_km(la[0, 0], lo[0, 0], la[0, 1], lo[0, 1])
    assert d[0, 0, 1].item() == pytest.approx(one.item(), rel=1e-5)


def test_vocabulary_lookup_maps_missing_and_unknown_values_to_zero():
    from trailscope.models.base import DataMeta
    from trailscope.models.data import history

    meta = DataMeta(3, 2, 1, 1, 5, item_ids=("a", "b", "c"),
                    extra={"user_ids": ("u1", "u2"), "category_names": ()})
    items = meta.index_of("item_ids")
    got = history._lookup(items, pd.Series(["c", None, "zz", "a", pd.NA], dtype="string"))
    assert got.tolist() == [3, 0, 0, 1, 0] and got.dtype == np.int64
    assert history._lookup(meta.index_of("category_names"), pd.Series(["a"])).tolist() == [0]
    assert history._lookup(meta.index_of("behavior_names"), pd.Series(["a"])).tolist() == [0]
    assert history.user_index(meta, "u2") == 2
    with pytest.raises(history.UnknownUser, match="not among the 2 users"):
        history.user_index(meta, "u3")
    # built once per meta; another meta has its own
    assert meta.index_of("item_ids") is items
    other = DataMeta(3, 2, 1, 1, 5, item_ids=("b", "c", "d"))
    assert history._lookup(other.index_of("item_ids"), pd.Series(["c", "a"])).tolist() == [2, 0]

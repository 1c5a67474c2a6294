"""The store-backed data path (models/data/stored.py) gives the in-memory path's dataset exactly,
from an on-disk cache that is reused, and rebuilt when the dataset changes."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.append import append
from trailscope.analytics.store import Store
from trailscope.models.data import dataset, stored
from trailscope.models.data.dataset import BACKING_ENV, Events, build_dataset, use_store

from tests.models.realdata import real_workspace, save_frame, slice_dataset

COLUMNS = [f.name for f in dataclasses.fields(Events) if f.name != "folder"]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    store = real_workspace(tmp_path_factory.mktemp("datastore"), "nyc", "taobao")
    yield store
    store.close()


def assert_same(a, b) -> None:
    """Every array, part, report and meta field of two SeqDatasets equal (NaN == NaN)."""
    for c in COLUMNS:
        x, y = getattr(a.events, c), getattr(b.events, c)
        assert x.dtype == y.dtype, c
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), c
    assert a.parts.keys() == b.parts.keys()
    for p in a.parts:
        for f in ("user", "pos", "start"):
            assert np.array_equal(getattr(a.parts[p], f), getattr(b.parts[p], f)), (p, f)
    assert np.array_equal(a.train_len, b.train_len)
    for f in dataclasses.fields(a.meta):
        x, y = getattr(a.meta, f.name), getattr(b.meta, f.name)
        if f.name in ("item_lat", "item_lon"):
            assert np.array_equal(np.array(x), np.array(y), equal_nan=True), f.name
        else:
            assert x == y, f.name
    assert a.filter_report == b.filter_report and a.split_report == b.split_report
    assert a.repeat_rate == b.repeat_rate and a.exclude_seen == b.exclude_seen
    assert a.messages == b.messages


@pytest.mark.parametrize("split", ["leave-last", "temporal", "trajectory"])
@pytest.mark.parametrize("name", ["nyc", "taobao"])
def test_store_path_equals_memory_path(real, name, split):
    mem = build_dataset(real, name, split, 20, backing="memory")
    st = build_dataset(real, name, split, 20, backing="store")
    assert mem.events.folder is None and st.events.folder is not None
    assert isinstance(st.events.item, np.ndarray)
    assert_same(mem, st)
    # a batch cut from the memory-mapped columns is the in-memory one
    idx = np.arange(0, len(mem.parts["train"]), 7)
    a, b = mem.batch(mem.parts["train"], idx), st.batch(st.parts["train"], idx)
    for k, t in a.tensors().items():
        assert t.dtype == b.tensors()[k].dtype and bool((t == b.tensors()[k]).all()), k


def test_kcore_rounds_and_other_settings_match(real):
    # 3 and 8 need several rounds on the Taobao slice; min_user 1 keeps one-event users
    for mu, mi in ((3, 8), (1, 1), (8, 2)):
        mem = build_dataset(real, "taobao", "leave-last", 10, mu, mi, backing="memory")
        st = build_dataset(real, "taobao", "leave-last", 10, mu, mi, backing="store")
        assert_same(mem, st)
    assert mem.filter_report.rounds > 1
    with pytest.raises(ValueError, match="lower min_user/min_item"):
        build_dataset(real, "taobao", min_user=5000, backing="store")


def test_cache_is_reused_and_rebuilt_when_the_dataset_changes(real):
    name = slice_dataset(real, "nyc", "nyc80", 80)
    first = build_dataset(real, name, "leave-last", 20, backing="store")
    folder = first.events.folder
    assert folder.parent.parent == stored.cache_root(real)
    stamp = (folder / "item.npy").stat().st_mtime_ns
    split_dirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    again = build_dataset(real, name, "leave-last", 20, backing="store")
    assert again.events.folder == folder
    assert (folder / "item.npy").stat().st_mtime_ns == stamp          # not written again
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == split_dirs
    assert not any(p.name.startswith(".tmp-") for p in folder.parent.iterdir())
    # another max_len: the same events folder, one more split folder
    assert build_dataset(real, name, "leave-last", 7, backing="store").events.folder == folder
    # an append changes the data: a new folder, the old one removed, still the memory answer
    last = real.events(name).tail(3)
    late = last.assign(**{schema.TS: last[schema.TS] + pd.Timedelta(days=400)})
    append(real, name, late)
    after = build_dataset(real, name, "leave-last", 20, backing="store")
    assert after.events.folder != folder and not folder.exists()
    assert after.filter_report.events_before == first.filter_report.events_before + 3
    assert_same(build_dataset(real, name, "leave-last", 20, backing="memory"), after)
    # a drop removes the dataset's cached columns with it
    real.drop(name)
    assert not after.events.folder.exists() and not folder.parent.exists()


def test_memory_mapped_events_pickle_as_their_folder(real):
    st = build_dataset(real, "nyc", "leave-last", 20, backing="store")
    raw = pickle.dumps(st.events)
    assert len(raw) < 2000                             # the folder, not 45,000 events
    back = pickle.loads(raw)
    assert back.folder == st.events.folder and np.array_equal(back.ts, st.events.ts)
    mem = build_dataset(real, "nyc", "leave-last", 20, backing="memory")
    assert np.array_equal(pickle.loads(pickle.dumps(mem.events)).item, mem.events.item)


def test_backing_choice(real, monkeypatch):
    monkeypatch.delenv(BACKING_ENV, raising=False)
    assert not use_store(real, "nyc", "auto")          # 45,000 events: below the threshold
    assert use_store(real, "nyc", "store") and not use_store(real, "nyc", "memory")
    monkeypatch.setattr(dataset, "STORE_BACKED_MIN_EVENTS", 45_000)
    assert use_store(real, "nyc", "auto")
    monkeypatch.setenv(BACKING_ENV, "memory")
    assert not use_store(real, "nyc", "auto") and use_store(real, "nyc", "store")
    monkeypatch.setenv(BACKING_ENV, "disk")
    with pytest.raises(ValueError, match="TRAILSCOPE_DATA_BACKING must be auto"):
        use_store(real, "nyc", "auto")
    with pytest.raises(ValueError, match="backing must be"):
        build_dataset(real, "nyc", backing="disk")
    with Store(":memory:") as mem:                      # no folder for a cache
        save_frame(mem, "tiny", real.events("nyc").head(2000))
        monkeypatch.setenv(BACKING_ENV, "store")
        assert not use_store(mem, "tiny", "auto")
        with pytest.raises(ValueError, match="needs a workspace file"):
            build_dataset(mem, "tiny", min_user=1, min_item=1, backing="store")

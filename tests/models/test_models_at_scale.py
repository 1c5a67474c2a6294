"""What training at scale relies on in the models: the count parts are fitted from one pass
over an iterator of training batches (no list of every batch), with the same counts."""

from __future__ import annotations

import pytest
import torch
from trailscope.models.data.dataset import build_dataset
from trailscope.models.recommenders.st_transformer import STTransformer

from tests.models.realdata import real_workspace, slice_dataset


@pytest.fixture(scope="module")
def nyc(tmp_path_factory):
    store = real_workspace(tmp_path_factory.mktemp("scale"), "nyc")
    slice_dataset(store, "nyc", "nyc120", 120)
    ds = build_dataset(store, "nyc120", "leave-last", max_len=20)
    yield ds
    store.close()


def test_count_parts_fit_from_one_pass_over_an_iterator(nyc):
    listed = STTransformer(nyc.meta, STTransformer.Config(hidden=16))
    listed.fit_counts(list(nyc.batches("train", 64)))
    streamed = STTransformer(nyc.meta, STTransformer.Config(hidden=16))
    passes = []

    def once():
        passes.append(1)
        yield from nyc.batches("train", 64)

    streamed.fit_counts(once())
    assert len(passes) == 1
    for name in ("ptr", "col", "val"):
        a, b = getattr(listed.prior, name), getattr(streamed.prior, name)
        assert torch.equal(a, b)
    assert listed.prior.val.sum() > 0  # it counted something
    for a, b in zip(listed.recent._train, streamed.recent._train, strict=True):
        assert torch.equal(a, b)

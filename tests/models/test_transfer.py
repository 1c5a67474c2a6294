"""models.training.transfer: which weights move from one dataset's model to another's."""

from __future__ import annotations

import pytest
import torch
from trailscope.models.base import DataMeta
from trailscope.models.recommenders.st_transformer import STTransformer
from trailscope.models.training.checkpoint import meta_to_dict
from trailscope.models.training.transfer import DATA, INDEXED, load_matching


def _meta(ids: list[str], cats: list[str]) -> DataMeta:
    return DataMeta(n_items=len(ids), n_users=3, n_categories=len(cats), n_behaviors=1,
                    max_len=8, item_ids=tuple(ids),
                    item_category=tuple(1 + i % len(cats) for i in range(len(ids))),
                    item_popularity=(1,) * len(ids),
                    extra={"category_names": tuple(cats), "behavior_names": ("checkin",)})


def _pair() -> tuple[STTransformer, STTransformer]:
    """A source model on 20 items, a destination on 30 (10 of them shared by id)."""
    torch.manual_seed(0)
    src = STTransformer(_meta([f"v{i}" for i in range(20)], ["bar", "cafe"]))
    torch.manual_seed(1)
    dst = STTransformer(_meta([f"v{i}" for i in range(10, 40)], ["cafe", "gym", "bar"]))
    return src, dst


def _blob(net: STTransformer) -> dict:
    return {"state_dict": net.state_dict(), "meta": meta_to_dict(net.meta)}


def test_encoder_moves_and_items_stay_fresh():
    src, dst = _pair()
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = load_matching(dst, _blob(src))
    after, source = dst.state_dict(), src.state_dict()
    assert "blocks.0.attn.qkv.weight" in report.copied and "ln_f.weight" in report.copied
    assert "relations.tables.time" in report.copied and not report.mapped
    for name in report.copied:
        assert torch.equal(after[name], source[name]), name
        assert not name.startswith(DATA) and name not in INDEXED
    # the attention weights were different before: something was really copied
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], source["blocks.0.attn.qkv.weight"])
    for name in ("item_emb.weight", "cat_emb.weight", "cat_head.weight", "beh_emb.weight",
                 "blend_weights", "prior.pop"):
        assert name in report.fresh and torch.equal(after[name], before[name]), name
    assert set(report.copied) | set(report.fresh) == set(after)
    assert "transferred" in report.summary() and "item_emb.weight" in report.summary()


def test_shared_ids_copy_their_rows():
    src, dst = _pair()
    before = dst.item_emb.weight.detach().clone()
    report = load_matching(dst, _blob(src), map_ids=True)
    assert report.mapped["item_emb.weight"] == (10, 30)
    assert report.mapped["cat_emb.weight"] == (2, 3)
    w, s = dst.item_emb.weight.detach(), src.item_emb.weight.detach()
    for j, item in enumerate(dst.meta.item_ids):
        i = int(item[1:])
        if i < 20:   # index j + 1 here is index i + 1 there
            assert torch.equal(w[j + 1], s[i + 1]), item
        else:
            assert torch.equal(w[j + 1], before[j + 1]), item
    assert torch.equal(w[-1], s[-1])  # the mask token of pre-training
    cats = dst.cat_emb.weight.detach()
    assert torch.equal(cats[3], src.cat_emb.weight.detach()[1])  # "bar": 3 here, 1 there


def test_from_a_file_and_a_missing_one(tmp_path):
    src, dst = _pair()
    path = tmp_path / "source.pt"
    torch.save(_blob(src), path)
    report = load_matching(dst, str(path))
    assert torch.equal(dst.state_dict()["ln_out.weight"], src.state_dict()["ln_out.weight"])
    assert len(report.copied) > 20
    with pytest.raises(FileNotFoundError, match="init_from"):
        load_matching(dst, tmp_path / "missing.pt")


def test_other_shapes_stay_fresh():
    src, _ = _pair()
    torch.manual_seed(2)
    wide = STTransformer(_meta(["a", "b", "c"], ["x"]), STTransformer.Config(hidden=32))
    before = wide.state_dict()["ln_f.weight"].clone()
    report = load_matching(wide, src.state_dict())   # a plain state dict: no meta
    assert "ln_f.weight" in report.fresh and "shape" in report.fresh["ln_f.weight"]
    assert torch.equal(wide.state_dict()["ln_f.weight"], before)
    assert "pos_emb.weight" not in report.copied   # hidden 32 vs 64


def test_training_starts_from_a_checkpoint(tmp_path):
    """train(init_from=...) through the loop: with lr 0 nothing moves after the copy, so the
    encoder is the source's and the items are what the same seed gives without a source."""
    from trailscope.models.training.loop import train

    from tests.models.realdata import real_workspace, slice_dataset

    store = real_workspace(tmp_path, "nyc")
    try:
        slice_dataset(store, "nyc", "nyc40", 40)
        slice_dataset(store, "nyc", "nyc20", 20)
        common = {"epochs": 1, "max_len": 20, "hidden": 16, "resume": False,
                  "log": lambda _m: None}
        src = train(store, "nyc40", "st-transformer", **common)
        lines: list[str] = []
        alone = train(store, "nyc20", "st-transformer", lr=0.0, **common)
        moved = train(store, "nyc20", "st-transformer", lr=0.0, init_from=str(src.path),
                      **{**common, "log": lines.append})
        state = {k: torch.load(r.path, weights_only=True)["state_dict"]
                 for k, r in (("src", src), ("alone", alone), ("moved", moved))}
        assert any(line.startswith("transferred ") for line in lines), lines
        for name in ("blocks.1.mlp.fc.weight", "relations.tables.dist", "ln_out.bias"):
            assert torch.equal(state["moved"][name], state["src"][name]), name
            assert not torch.equal(state["alone"][name], state["src"][name]), name
        assert torch.equal(state["moved"]["item_emb.weight"], state["alone"]["item_emb.weight"])
    finally:
        store.close()

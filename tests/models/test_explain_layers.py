"""Every model declares what its explanations attribute (models.base.ExplainLayers), and
those declarations name real layers that the model's forward pass uses."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from trailscope.models.base import FEATURE_GROUPS, EmbeddingInput, ExplainLayers, ScorePart
from trailscope.models.explain.attribution import integrated_gradients
from trailscope.models.recommenders.registry import MODELS, build_model

from tests.models.neural_synth import make_batch, make_meta

SMALL = {"st-transformer": {"hidden": 16, "pretrain": False}, "sasrec": {"hidden": 16},
         "gru": {"hidden": 16}, "graph": {"hidden": 16}}


@pytest.fixture(scope="module")
def meta():
    return make_meta(max_len=8)


@pytest.mark.parametrize("name", list(MODELS))
def test_declared_layers_exist_and_belong_to_the_model(meta, name) -> None:
    model = build_model(name, meta, **SMALL.get(name, {}))
    layers = model.explain_layers()
    assert isinstance(layers, ExplainLayers)
    own = set(map(id, model.modules()))
    for label, mod in layers.modules().items():
        assert isinstance(mod, nn.Module), label
        assert id(mod) in own, f"{name}: declared layer {label} is not a submodule"
    assert all(e.group in FEATURE_GROUPS for e in layers.embeddings)
    assert model.parts[0] is ScorePart.ENCODER
    assert len(model.score_parts(make_batch(meta, 2, seed=0))) == len(model.parts)


@pytest.mark.parametrize("name", ["st-transformer", "sasrec", "gru"])
def test_every_declared_layer_is_attributed(meta, name) -> None:
    torch.manual_seed(0)
    model = build_model(name, meta, **SMALL[name]).eval()
    batch = make_batch(meta, 1, seed=3, min_len=5).rows(slice(0, 1))
    ig = integrated_gradients(model, batch, int(batch.target[0]), n_steps=4, max_steps=4)
    layers = model.explain_layers()
    declared = [e.name for e in layers.embeddings]
    declared += ["item_lookup"] if layers.item_lookup is not None else []
    declared += [f"rel_{t}" for t, _ in layers.relation_groups]
    declared += ["candidate"] if layers.candidate is not None else []
    assert ig.sites == declared


def test_unknown_feature_group_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown feature groups"):
        ExplainLayers(embeddings=(EmbeddingInput("x", "colour", nn.Embedding(2, 2)),))


def test_st_transformer_parts_follow_its_config(meta) -> None:
    full = build_model("st-transformer", meta, hidden=16)
    assert full.parts == (ScorePart.ENCODER, ScorePart.TRANSITIONS, ScorePart.HISTORY)
    bare = build_model("st-transformer", meta, hidden=16, use_transitions=False,
                       use_history=False)
    assert bare.parts == (ScorePart.ENCODER,)
    assert bare.explain_layers().transition_counts is None
    assert bare.part_weight(ScorePart.HISTORY) == 0.0

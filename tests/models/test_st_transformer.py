"""ST-Transformer: contract checks, ablation flags, target-time conditioning, pre-training,
text fusion and one-user latency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trailscope.models.recommenders.st_transformer import STTransformer

from tests.models import neural_checks as checks
from tests.models.neural_synth import make_batch, make_meta, train_steps

FLAGS = ("use_time", "use_distance", "use_context", "use_target_time", "use_candidate_distance")


def small(meta, **kw):
    return STTransformer(meta, STTransformer.Config(hidden=32, dropout=0.0, **kw))


def randomize_zero_init(model: STTransformer) -> STTransformer:
    """Relation and candidate tables start at zero (neutral); give them values to test flags."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.relations.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        if model.candidate is not None:
            model.candidate.table.copy_(torch.randn(model.candidate.table.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("relation", ["bias", "kv"])
@pytest.mark.parametrize("check", [
    checks.check_shapes, checks.check_learns, checks.check_padding_invariance,
    checks.check_bf16, checks.check_deterministic, checks.check_rebuild,
], ids=lambda f: f.__name__)
def test_st_transformer(check, relation):
    check(lambda meta: small(meta, relation=relation))


@pytest.mark.parametrize("relation", ["bias", "kv"])
def test_causal_except_the_target_slot_time(relation):
    # position i sees the time of event i + 1 (the slot it predicts), nothing else after i
    checks.check_causal(lambda m: randomize_zero_init(small(m, relation=relation)),
                        future_times=False)


def test_without_target_time_it_is_strictly_causal():
    checks.check_causal(lambda m: randomize_zero_init(small(m, use_target_time=False)),
                        future_times=True)


def test_no_coordinates_dataset_works():
    checks.check_shapes(lambda m: small(make_meta(coords=False)))
    model = small(make_meta(coords=False))
    assert model.candidate is None


def _shifted_times(batch, factor=3.0):
    """Same order, hours and weekdays, but every gap ``factor`` times as long (in days)."""
    out = batch.copy()
    t = batch.time_seq
    t0 = t[t > 0].min()
    days = torch.where(t > 0, torch.round((t - t0) * factor / 86400) * 86400, 0.0)
    out.time_seq = torch.where(t > 0, t + days, 0.0)
    out.target_time = batch.target_time + torch.round(
        (batch.target_time - t0) * factor / 86400) * 86400
    return out


def _moved(batch, dlat=0.03):
    out = batch.copy()
    out.lat_seq = torch.where(batch.geo_mask, batch.lat_seq + dlat, 0.0)
    return out


@pytest.mark.parametrize("flag", FLAGS)
def test_each_flag_changes_the_scores(flag):
    meta = make_meta()
    batch = make_batch(meta, batch_size=6)
    torch.manual_seed(0)
    on = randomize_zero_init(small(meta))
    off = small(meta, **{flag: False}).eval()
    off.load_state_dict(on.state_dict(), strict=False)
    assert not torch.allclose(checks.scores_of(on, batch), checks.scores_of(off, batch))


def test_time_and_distance_only_matter_when_switched_on():
    meta = make_meta()
    batch = make_batch(meta, batch_size=6)
    later, moved = _shifted_times(batch), _moved(batch)
    torch.manual_seed(0)
    full = randomize_zero_init(small(meta))
    blind = randomize_zero_init(small(meta, use_time=False, use_target_time=False,
                                      use_distance=False, use_candidate_distance=False))
    s = checks.scores_of
    assert not torch.allclose(s(full, batch), s(full, later))
    assert not torch.allclose(s(full, batch), s(full, moved))
    torch.testing.assert_close(s(blind, batch), s(blind, later))
    torch.testing.assert_close(s(blind, batch), s(blind, moved))


def test_target_time_conditions_the_score():
    """Asking "what next in 3 days" instead of "in 1 hour" changes the ranking input."""
    meta = make_meta()
    batch = make_batch(meta, batch_size=6)
    later = batch.copy()
    later.target_time = batch.target_time + 3 * 86400 + 5 * 3600
    later.target_hour = (batch.target_hour + 4) % 24 + 1
    torch.manual_seed(0)
    model = randomize_zero_init(small(meta))
    assert not torch.allclose(checks.scores_of(model, batch), checks.scores_of(model, later))
    blind = randomize_zero_init(small(meta, use_target_time=False))
    torch.testing.assert_close(checks.scores_of(blind, batch), checks.scores_of(blind, later))


def test_target_item_is_never_read():
    meta = make_meta()
    batch = make_batch(meta, batch_size=6)
    other = batch.copy()
    other.target = batch.target % meta.n_items + 1
    model = randomize_zero_init(small(meta))
    torch.testing.assert_close(checks.scores_of(model, batch), checks.scores_of(model, other))


def test_pretrain_loss_decreases_then_fine_tunes():
    torch.manual_seed(0)
    meta = make_meta()
    model = small(meta, pretrain=True)
    assert model.wants_pretraining and not small(meta).wants_pretraining
    batches = [make_batch(meta, seed=s) for s in range(4)]
    held_out = make_batch(meta, seed=50, batch_size=64)

    def masked_loss() -> float:  # the same random masks before and after training
        torch.manual_seed(5)
        with torch.no_grad():
            return model.eval().pretrain_loss(held_out).item()

    before = masked_loss()
    train_steps(model, batches, 60, lr=3e-3, loss_name="pretrain_loss")
    after = masked_loss()
    assert after < 0.85 * before, (before, after)
    fine = train_steps(model, batches, 30)
    assert np.mean(fine[-5:]) < 0.3 * np.mean(fine[:5])
    assert checks.hit_at_1(model, make_batch(meta, seed=99)) >= 0.9


def test_text_fusion(tmp_path):
    meta = make_meta()
    batch = make_batch(meta, batch_size=6)
    text = np.random.default_rng(0).normal(size=(meta.n_items + 1, 8)).astype(np.float32)
    text[0] = 0
    torch.manual_seed(0)
    plain = small(meta)  # same seed -> same shared weights as the text model below
    torch.manual_seed(0)
    with_text = STTransformer(meta, STTransformer.Config(hidden=32, dropout=0.0),
                              text_embeddings=text).eval()
    assert with_text.config.text_dim == 8
    assert not torch.allclose(checks.scores_of(plain, batch), checks.scores_of(with_text, batch))
    # switched off for the ablation: the same weights score as without text
    off = STTransformer(meta, STTransformer.Config(hidden=32, dropout=0.0, use_text=False),
                        text_embeddings=text)
    off.load_state_dict(with_text.state_dict())
    twin = small(meta)
    twin.load_state_dict(with_text.state_dict(), strict=False)
    torch.testing.assert_close(checks.scores_of(off, batch), checks.scores_of(twin, batch))
    # rebuilt from its config alone (as from a checkpoint): the text buffer is in the weights
    rebuilt = STTransformer(meta, with_text.config)
    rebuilt.load_state_dict(with_text.state_dict())
    torch.testing.assert_close(checks.scores_of(rebuilt, batch),
                               checks.scores_of(with_text, batch))
    # from a .npy path
    path = tmp_path / "text.npy"
    np.save(path, text)
    from_file = STTransformer(meta, STTransformer.Config(text_embeddings=str(path)))
    assert torch.equal(from_file.text, torch.from_numpy(text))
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        STTransformer(meta, text_embeddings=text[1:])
    with pytest.raises(FileNotFoundError, match="numpy.save"):
        STTransformer(meta, STTransformer.Config(text_embeddings=str(tmp_path / "no.npy")))


def test_bad_relation_is_explained():
    with pytest.raises(ValueError, match="'bias' or 'kv'"):
        small(make_meta(), relation="dense")


def test_top10_for_one_user_over_5000_items():
    """Top-10 over 5,000 items for one user with 50 events: the ten best real items (its
    latency is a benchmark, bench/model_bench.py's top-10 row, not a timed unit test)."""
    meta = make_meta(n_items=5000, max_len=50)
    model = STTransformer(meta).eval()
    batch = make_batch(meta, batch_size=1, seq_len=50, min_len=50)
    with torch.inference_mode():
        scores = model.score(batch)
        top = scores.topk(10)
    assert scores.shape == (1, meta.n_items + 1) and torch.isfinite(scores[0, 1:]).all()
    ranked = torch.argsort(scores[0], descending=True)[:10]
    assert set(top.indices[0].tolist()) == set(ranked.tolist())
    assert 0 not in top.indices[0].tolist()  # the padding index is never recommended

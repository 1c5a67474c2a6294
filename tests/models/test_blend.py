"""The encoder weight fitted on validation log-loss (models.blend), on a planted draw."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from bench import planted as pl
from models import checkpoint as ckpt
from models.base import Batch, DataMeta, Recommender
from models.blend import GRID, fit_weight
from models.data import build_dataset
from models.train import train

QUIET = {"log": lambda _m: None}


@pytest.fixture()
def planted(store):
    pl.save(store, "planted", pl.generate(
        pl.PlantedConfig(n_users=300, events_per_user=30, n_items=150, seed=4)))
    return store


class Parts(Recommender):
    """Scores built from the target itself: ``signal`` goes to one part, noise to both."""

    name = "parts"

    @dataclass(frozen=True)
    class Config:
        signal_in: str = "encoder"

    def __init__(self, meta: DataMeta, config: Config) -> None:
        super().__init__(meta, config)

    def score_parts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(int(batch["user"].sum()))
        shape = (len(batch["target"]), self.meta.n_items + 1)
        signal = torch.zeros(shape).scatter_(1, batch["target"][:, None], 4.0)
        noise_a, noise_b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        if self.config.signal_in == "encoder":
            return signal + noise_a, noise_b
        return noise_a, signal + noise_b


def test_the_weight_follows_the_part_that_carries_the_signal(planted):
    ds = build_dataset(planted, "planted", "leave-last")
    to_encoder = fit_weight(Parts(ds.meta, Parts.Config("encoder")), ds)
    to_prior = fit_weight(Parts(ds.meta, Parts.Config("prior")), ds)
    assert to_encoder.n == to_prior.n == len(ds.parts["valid"]) > 0
    assert to_encoder.weight >= 1.5 and to_prior.weight == 0.0
    assert set(to_prior.nll) == set(GRID)
    assert to_prior.nll[0.0] < to_prior.nll[1.0] < to_prior.nll[2.0]
    assert "encoder weight 0.0" in to_prior.message()


def test_st_transformer_weighs_its_encoder_on_validation(planted):
    res = train(planted, "planted", model="st-transformer", epochs=2, batch_size=64,
                max_len=20, hidden=16, resume=False, pretrain_epochs=0, **QUIET)
    assert any(m.startswith("encoder weight") for m in res.messages)
    model = ckpt.load(res.path, planted).model
    w = float(model.encoder_weight)
    assert min(abs(w - g) for g in GRID) < 1e-6
    # first-order data: the sequence encoder adds nothing the prior does not already say
    assert w < 1.0
    ds = build_dataset(planted, "planted", "leave-last", max_len=20)
    batch = next(ds.batches("test", 32))
    with torch.no_grad():
        enc, prior = model.score_parts(batch)
        scores = model.score(batch)
        torch.testing.assert_close(scores[:, 1:], w * enc[:, 1:] + prior[:, 1:])
        assert torch.isneginf(scores[:, 0]).all()
    # without the blend the weight stays at 1
    plain = train(planted, "planted", model="st-transformer", epochs=1, batch_size=64,
                  max_len=20, hidden=16, prior_epochs=3, blend=False, resume=False,
                  pretrain_epochs=0, **QUIET)
    assert float(ckpt.load(plain.path, planted).model.encoder_weight) == 1.0

"""SASRec: contract, learning a planted pattern, causality, padding, bf16, determinism."""

from __future__ import annotations

import pytest
from trailscope.models.recommenders.sasrec import SASRec

from tests.models import neural_checks as checks


def small(meta):
    return SASRec(meta, SASRec.Config(hidden=32, n_layers=2, n_heads=2, dropout=0.0))


@pytest.mark.parametrize("check", [
    checks.check_shapes, checks.check_learns, checks.check_causal,
    checks.check_padding_invariance, checks.check_bf16, checks.check_deterministic,
    checks.check_rebuild,
], ids=lambda f: f.__name__)
def test_sasrec(check):
    check(small)


def test_config_overrides_and_name():
    cfg = SASRec.Config(hidden=16, n_heads=4)
    assert cfg.hidden == 16 and SASRec.name == "sasrec"
    with pytest.raises(AssertionError, match="divisible"):
        SASRec(checks.make_meta(), SASRec.Config(hidden=10, n_heads=4))

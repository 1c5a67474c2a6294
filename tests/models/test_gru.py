"""GRU4Rec: contract, learning a planted pattern, causality, padding, bf16, determinism."""

from __future__ import annotations

import pytest
from trailscope.models.recommenders.gru import GRU4Rec

from tests.models import neural_checks as checks


def small(meta, cell="gru"):
    return GRU4Rec(meta, GRU4Rec.Config(hidden=32, dropout=0.0, cell=cell))


@pytest.mark.parametrize("check", [
    checks.check_shapes, checks.check_learns, checks.check_causal,
    checks.check_padding_invariance, checks.check_bf16, checks.check_deterministic,
    checks.check_rebuild,
], ids=lambda f: f.__name__)
def test_gru(check):
    check(small)


def test_lstm_cell_learns_and_is_padding_invariant():
    checks.check_learns(lambda m: small(m, "lstm"))
    checks.check_padding_invariance(lambda m: small(m, "lstm"))


def test_bad_cell_is_explained():
    with pytest.raises(ValueError, match="'gru' or 'lstm'"):
        GRU4Rec(checks.make_meta(), GRU4Rec.Config(cell="rnn"))

"""Churn features, labels and the temporal backtest (hand-computed, then NYC)."""

from __future__ import annotations

import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import duckdb_backend, events_table
from trailscope.analytics.users import churn as C

from tests.analytics.realdata import import_nyc, open_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*")

CUT = pd.Timestamp("2024-03-01")


@pytest.fixture()
def tiny() -> pd.DataFrame:
    """Cut 1 Mar 2024, window 7 days: [23 Feb, 1 Mar) is window 1, [16 Feb, 23 Feb) window 2.

    u1: 20, 21, 29 Feb noon; 3 Mar (back within the window) -> stays.
    u2: 10 Jan; 10 Mar (after the window) -> churned.
    u3: only after the cut -> not scored.
    u4: 25 Feb; exactly at the cut -> stays (the label window starts at the cut).
    u5: exactly 23 Feb 00:00 (window 1's first second) -> churned.
    """
    rows = [("u1", "2024-02-20"), ("u1", "2024-02-21"), ("u1", "2024-02-29 12:00"),
            ("u1", "2024-03-03"), ("u2", "2024-01-10"), ("u2", "2024-03-10"),
            ("u3", "2024-03-02"), ("u4", "2024-02-25"), ("u4", "2024-03-01"),
            ("u5", "2024-02-23")]
    return pd.DataFrame({schema.USER: [u for u, _ in rows], schema.ITEM: "x",
                         schema.TS: pd.to_datetime([t for _, t in rows], format="ISO8601")})


def test_features_and_labels_by_hand(tiny):
    f = C.churn_features(tiny, CUT, "7D", windows=2).set_index(schema.USER)
    assert list(f.index) == ["u1", "u2", "u4", "u5"]
    assert f[C.CHURNED].to_dict() == {"u1": 0, "u2": 1, "u4": 0, "u5": 1}
    assert f.loc["u1", C.RECENCY] == pytest.approx(0.5)
    assert f.loc["u1", C.TENURE] == pytest.approx(10.0)
    assert (f.loc["u1", C.freq_col(1)], f.loc["u1", C.freq_col(2)]) == (1, 2)
    assert f.loc["u1", C.TREND] == pytest.approx(-1.0)      # 2 then 1 event per window
    assert f.loc["u1", C.TOTAL] == 3                        # the 3 Mar event is not a feature
    assert f.loc["u2", C.RECENCY] == pytest.approx(51.0)    # 10 Jan -> 1 Mar (leap year)
    assert (f.loc["u2", C.freq_col(1)], f.loc["u2", C.TREND]) == (0, 0.0)
    assert (f.loc["u5", C.freq_col(1)], f.loc["u5", C.freq_col(2)]) == (1, 0)
    assert f.loc["u5", C.RECENCY] == pytest.approx(7.0)
    assert C.TREND in C.churn_features(tiny, CUT, "7D", 2, label=False).columns
    assert C.CHURNED not in C.churn_features(tiny, CUT, "7D", 2, label=False).columns


def test_features_never_read_the_future(tiny):
    before = tiny[tiny[schema.TS] < CUT]
    a = C.churn_features(tiny, CUT, "7D", 3, label=False)
    b = C.churn_features(before, CUT, "7D", 3, label=False)
    pd.testing.assert_frame_equal(a, b)


def test_input_errors(tiny):
    with pytest.raises(ValueError, match="at least 2"):
        C.churn_features(tiny, CUT, "7D", windows=1)
    with pytest.raises(ValueError, match="positive"):
        C.churn_features(tiny, CUT, "0D")
    only_active = C.churn_features(tiny, CUT, "7D", 2)
    with pytest.raises(ValueError, match="every user"):
        C.fit_churn_model(only_active[only_active[C.CHURNED] == 0])


@pytest.fixture(scope="module")
def nyc(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("churn_ws"))
    name = import_nyc(store)
    yield events_table(duckdb_backend(store), name)
    store.close()


def test_nyc_backtest_auc(nyc):
    result, model = C.churn_backtest(nyc, window="14D", windows=4)
    auc = result.set_index(C.MODEL)[C.ROC_AUC]
    assert auc[C.LOGISTIC] > 0.75 and auc[C.RECENCY_ONLY] > 0.5
    # the trends add little over recency on this data; the model must not be worse
    assert auc[C.LOGISTIC] >= auc[C.RECENCY_ONLY] - 0.01
    assert 0 < result[C.CHURN_RATE].iloc[0] < 1
    assert (result[C.TEST_CUT] - result[C.TRAIN_CUT]).iloc[0] == pd.Timedelta(days=14)
    coef = model.coefficients().set_index(C.FEATURE)[C.COEFFICIENT]
    assert coef[f"log1p({C.RECENCY})"] > 0      # the longer away, the likelier gone
    assert coef[f"log1p({C.freq_col(1)})"] < 0  # recent activity keeps users


def test_nyc_risk_ranks_recent_users_low(nyc):
    risk = C.churn_risk(nyc, window="14D", windows=4)
    assert risk[C.RISK].between(0, 1).all() and risk[C.RISK].is_monotonic_decreasing
    assert risk[schema.USER].is_unique
    rho = risk[C.RISK].corr(risk[C.RECENCY], method="spearman")
    assert rho > 0.5

"""The Users page's dataset-wide parts read a bounded number of users' rows (issue #15: at 10M
Taobao-shaped events the page held every user's drift in pandas and ran the server out of
memory), and still answer as the computation over every user does.

Data: the Taobao slice (250 users over nine days: the page's window is a day, whose drift the
summary build stores too).
"""

from __future__ import annotations

import pandas as pd
import pytest
from trailscope.analytics.ingest.pipeline import import_file
from trailscope.analytics.rollups import lookup
from trailscope.analytics.rollups import users as r_users
from trailscope.analytics.schema import USER
from trailscope.app.services import cache
from trailscope.app.services import users as svc

from tests.analytics.rollup_reads import recorded
from tests.conftest import TAOBAO

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:(ibis|pyspark).*"),
]

N = 3


@pytest.fixture()
def taobao(workspace):
    import_file(workspace, TAOBAO, name="tb")
    return "tb"


def _reads(call):
    """(what ``call`` returns, every frame the summary tables gave it)."""
    got, _, frames = recorded(call)
    return got, frames


def _users_in(frame: pd.DataFrame) -> int:
    for col in (USER, "user_idx"):
        if col in frame.columns:
            return frame[col].nunique()
    return 0


def test_the_page_window_drift_is_stored_and_read_for_a_few_users_only(taobao):
    assert svc.drift_freq(taobao) == "day"
    with svc.events_table(taobao) as t:
        everyone = r_users.drift(t, "day", svc.DRIFT_MIN_EVENTS, prior=svc.DRIFT_PRIOR)
    drifting = everyone[USER].nunique()
    bound = 4 * N + r_users.TOP_MARGIN
    assert drifting > bound  # else the bound below could not catch a read of everyone

    cache.clear_all()
    top, frames = _reads(lambda: svc.top_changers(taobao, N))
    assert frames, "the stored drift was not read"
    assert max(_users_in(f) for f in frames) <= bound
    ref, frames = _reads(lambda: svc.drift_reference(taobao))
    assert frames and max(len(f) for f in frames) == len(ref) < 20  # one row per day

    # the same answers as the computation over every user's raw events
    cache.clear_all()
    with lookup.disabled():
        raw_top = svc.top_changers(taobao, N)
        raw_ref = svc.drift_reference(taobao)
    assert len(top) == N
    pd.testing.assert_frame_equal(top, raw_top)
    pd.testing.assert_frame_equal(ref, raw_ref)


def test_one_users_drift_reads_only_that_user(taobao):
    user = str(svc.top_changers(taobao, 1)[USER].iloc[0])
    cache.clear_all()
    res, frames = _reads(lambda: svc.user_drift(taobao, user))
    assert len(res.drift) >= 2 and (res.drift[USER] == user).all()
    assert all(_users_in(f) <= 1 for f in frames)
    with lookup.disabled():
        cache.clear_all()
        raw = svc.user_drift(taobao, user)
    pd.testing.assert_frame_equal(res.drift, raw.drift)
    pd.testing.assert_frame_equal(res.profiles, raw.profiles)


def test_churn_is_stored_by_the_build_and_read_back_equal(taobao):
    res, frames = _reads(lambda: svc.churn(taobao))
    assert res.window and not res.note
    assert len(frames) >= 2  # the stored risk and backtest, no event read
    cache.clear_all()
    with lookup.disabled():
        raw = svc.churn(taobao)
    assert res.window == raw.window
    pd.testing.assert_frame_equal(res.risk, raw.risk)
    pd.testing.assert_frame_equal(res.backtest, raw.backtest)

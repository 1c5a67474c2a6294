"""Interest profiles and their drift: hand-computed JS divergences, then the NYC check-ins."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.engine import EVENTS, PERIOD, duckdb_backend, events_table
from trailscope.analytics.users import evolution as E

from tests.analytics.realdata import import_nyc, open_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:(ibis|pyspark).*")


def test_js_divergence_by_hand():
    assert E.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert E.js_divergence([3, 1], [3, 1]) == pytest.approx(0.0)
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4):
    # KL(p||m) = 1 - log2(3)/2, KL(q||m) = 2 - log2(3), JS = 3/2 - 3/4 log2(3)
    assert E.js_divergence([1, 1], [2, 0]) == pytest.approx(1.5 - 0.75 * math.log2(3))
    with pytest.raises(ValueError):
        E.js_divergence([0, 0], [1, 0])


def test_js_matches_scipy_on_random_mixes():
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(3)
    for _ in range(5):
        p, q = rng.random(6), rng.random(6)
        assert E.js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2)


@pytest.fixture()
def tiny() -> pd.DataFrame:
    """a: Jan bar+cafe, Feb bar, Mar gym. b: Jan bar, Feb bar and one uncategorised event."""
    return pd.DataFrame({
        schema.USER: ["a"] * 4 + ["b"] * 3,
        schema.ITEM: "x",
        schema.TS: pd.to_datetime(["2024-01-05", "2024-01-06", "2024-02-03", "2024-03-01",
                                   "2024-01-01", "2024-02-01", "2024-02-02"]),
        schema.CATEGORY: ["bar", "cafe", "bar", "gym", "bar", "bar", None],
    })


def test_profiles_are_shares_per_window(tiny):
    p = E.interest_profiles(tiny, "month")
    a_jan = p[(p[schema.USER] == "a") & (p[PERIOD] == pd.Timestamp("2024-01-01"))]
    assert a_jan[schema.CATEGORY].tolist() == ["bar", "cafe"]
    assert a_jan[E.SHARE].tolist() == [0.5, 0.5]
    assert p.groupby([schema.USER, PERIOD])[E.SHARE].sum().round(12).eq(1.0).all()
    assert p[EVENTS].sum() == 6                     # the null category is dropped ...
    kept = E.interest_profiles(tiny, "month", missing="(unknown)")
    assert kept[EVENTS].sum() == 7                  # ... unless it gets a label
    b_feb = kept[(kept[schema.USER] == "b") & (kept[PERIOD] == pd.Timestamp("2024-02-01"))]
    assert b_feb[E.SHARE].tolist() == [0.5, 0.5]


def test_drift_between_consecutive_windows(tiny):
    d = E.interest_drift(E.interest_profiles(tiny, "month"))
    got = {(u, str(p.date())): js for u, p, js in zip(d[schema.USER], d[PERIOD], d[E.JS],
                                                        strict=True)}
    assert got == pytest.approx({("a", "2024-02-01"): 1.5 - 0.75 * math.log2(3),
                                 ("a", "2024-03-01"): 1.0, ("b", "2024-02-01"): 0.0})
    assert d[E.PREV_PERIOD].min() == pd.Timestamp("2024-01-01")
    # windows with fewer than 2 categorised events are skipped: only a's Jan remains
    assert E.interest_drift(E.interest_profiles(tiny, "month"), min_events=2).empty


def test_shrunk_drift_by_hand(tiny):
    """Shares smoothed toward the user's overall mix with ``prior`` pseudo-events."""
    d = E.interest_drift(E.interest_profiles(tiny, "month"), min_events=1, prior=2)
    a = d[d[schema.USER] == "a"].set_index(PERIOD)
    # a's mix over (bar, cafe, gym): 2/4, 1/4, 1/4; Jan counts (1, 1, 0) of 2 events,
    # Feb (1, 0, 0) of 1, Mar (0, 0, 1) of 1; smoothed: (count + 2 * mix) / (events + 2)
    mix = np.array([0.5, 0.25, 0.25])
    jan, feb, mar = ((np.array(c) + 2 * mix) / (n + 2) for c, n in
                     (((1, 1, 0), 2), ((1, 0, 0), 1), ((0, 0, 1), 1)))
    assert a[E.SHRUNK_JS].tolist() == pytest.approx([E.js_divergence(jan, feb),
                                                     E.js_divergence(feb, mar)])
    assert a[E.JS].tolist() == pytest.approx([1.5 - 0.75 * math.log2(3), 1.0])  # unchanged
    assert (a[E.SHRUNK_JS] < a[E.JS]).all()
    # b's two windows are all bar: no change, shrunk or not
    assert d.loc[d[schema.USER] == "b", [E.JS, E.SHRUNK_JS]].to_numpy().tolist() == [[0, 0]]
    # without a prior there is no shrunk column (the stored drift table keeps its shape)
    assert E.SHRUNK_JS not in E.interest_drift(E.interest_profiles(tiny, "month")).columns
    with pytest.raises(ValueError, match="pseudo-events"):
        E.interest_drift(E.interest_profiles(tiny, "month"), prior=-1)


def test_user_drift_table_shows_the_evidence(tiny):
    d = E.interest_drift(E.interest_profiles(tiny, "month"), prior=2)
    t = E.user_drift_table(d).set_index(schema.USER)
    # a: windows Jan (2 events), Feb (1), Mar (1); b: Jan (1), Feb (1 categorised)
    assert t.loc["a", [E.WINDOWS, E.PAIRS, EVENTS]].tolist() == [3, 2, 4]
    assert t.loc["b", [E.WINDOWS, E.PAIRS, EVENTS]].tolist() == [2, 1, 2]
    assert t.index.tolist() == ["a", "b"]                   # most changed first
    assert t.loc["a", E.MEAN_JS] == pytest.approx(d.loc[d[schema.USER] == "a",
                                                        E.SHRUNK_JS].mean())
    assert t.loc["a", E.RAW_MEAN_JS] == pytest.approx(d.loc[d[schema.USER] == "a",
                                                            E.JS].mean())
    assert E.user_drift_table(d, min_pairs=2).index.tolist() == [0]  # only a


def test_segments_and_top_changers(tiny):
    extra = pd.DataFrame({schema.USER: "c", schema.ITEM: "x", schema.CATEGORY: "bar",
                          schema.TS: pd.to_datetime(["2024-01-01"] * 9 + ["2024-02-01"])})
    prof = E.interest_profiles(pd.concat([tiny, extra]), "month")
    seg = E.activity_segments(prof).set_index(schema.USER)[E.SEGMENT]
    assert seg.to_dict() == {"a": "medium", "b": "light", "c": "heavy"}
    drift = E.interest_drift(prof)
    sd = E.segment_drift(drift, E.activity_segments(prof))
    assert sd[E.SEGMENT].tolist() == ["light", "medium", "medium", "heavy"]
    top = E.top_changers(drift, prof, n=2)
    assert top[schema.USER].tolist() == ["a", "b"]
    first = top.iloc[0]
    assert (first[E.GAINED], first[E.LOST], first[E.PAIRS]) == ("gym", "bar", 2)
    assert pd.isna(top.iloc[1][E.GAINED])           # b's mix never changed


@pytest.fixture(scope="module")
def nyc_profiles(tmp_path_factory) -> pd.DataFrame:
    store = open_store(tmp_path_factory.mktemp("evolution_ws"))
    name = import_nyc(store)
    prof = E.interest_profiles(events_table(duckdb_backend(store), name), "month")
    store.close()
    return prof


def test_nyc_drift(nyc_profiles):
    drift = E.interest_drift(nyc_profiles, min_events=5)
    assert len(drift) > 1000
    assert drift[E.JS].between(0, 1).all()
    active = nyc_profiles.groupby([schema.USER, PERIOD])[EVENTS].sum()
    windows = (active >= 5).groupby(level=0).sum()
    assert len(drift) == int((windows - 1).clip(lower=0).sum())
    # users with many check-ins have steadier monthly mixes than occasional users
    seg = E.segment_drift(drift, E.activity_segments(nyc_profiles))
    mean = seg.groupby(E.SEGMENT)[E.MEAN_JS].mean()
    assert mean["heavy"] < mean["light"]
    top = E.top_changers(drift, nyc_profiles, n=10, min_pairs=3)
    assert len(top) == 10 and top[E.MEAN_JS].is_monotonic_decreasing
    assert (top[E.PAIRS] >= 3).all() and top[E.GAINED].notna().all()


def _pairwise_drift(profiles: pd.DataFrame, min_events: int, prior: float) -> pd.DataFrame:
    """The drift by its definition, one pair of windows at a time: dense share vectors over
    the user's categories and ``js_divergence`` (the reference the vectorised code must
    equal)."""
    rows = []
    for user, p in profiles.groupby(schema.USER, sort=True):
        cats = sorted(p[schema.CATEGORY].unique())
        counts = p.pivot_table(index=PERIOD, columns=schema.CATEGORY, values=EVENTS,
                               aggfunc="sum", fill_value=0).reindex(columns=cats)
        mix = counts.sum().to_numpy() / counts.to_numpy().sum()
        windows = counts[counts.sum(axis=1) >= min_events]
        for (pa, a), (pb, b) in zip(windows.iterrows(), list(windows.iterrows())[1:],
                                    strict=False):
            na, nb = a.sum(), b.sum()
            row = {schema.USER: user, E.PREV_PERIOD: pa, PERIOD: pb, E.PREV_EVENTS: na,
                   EVENTS: nb, E.JS: E.js_divergence(a.to_numpy(), b.to_numpy())}
            if prior > 0:
                row[E.SHRUNK_JS] = E.js_divergence((a.to_numpy() + prior * mix) / (na + prior),
                                                   (b.to_numpy() + prior * mix) / (nb + prior))
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("min_events, prior", [(1, 0.0), (5, 10.0), (3, 0.5)])
def test_drift_equals_the_pairwise_definition_on_real_profiles(nyc_profiles, min_events, prior):
    """The vectorised drift (matched keys, keys seen in one window only, the closed form for
    the mix's other keys) equals comparing each pair of windows' dense share vectors, on
    160 NYC users' monthly profiles."""
    users = sorted(nyc_profiles[schema.USER].unique())[::6][:160]
    prof = nyc_profiles[nyc_profiles[schema.USER].isin(users)]
    got = E.interest_drift(prof.sample(frac=1, random_state=2), min_events=min_events,
                           prior=prior)
    want = _pairwise_drift(prof, min_events, prior)
    assert len(got) == len(want) > 200
    assert got[E.JS].between(0, 1).all() and got[E.JS].std() > 0.05
    for c in (schema.USER, E.PREV_PERIOD, PERIOD, E.PREV_EVENTS, EVENTS):
        assert (got[c].to_numpy() == want[c].to_numpy()).all(), c
    scores = [E.JS] + ([E.SHRUNK_JS] if prior > 0 else [])
    np.testing.assert_allclose(got[scores].to_numpy(), want[scores].to_numpy(), atol=1e-12)


def test_drift_from_events_equals_drift_of_their_profiles(nyc_profiles):
    """The summary build's path (the events' integer columns, sorted by user and time, or in
    any order) gives the drift of the profiles counted from the same events."""
    rng = np.random.default_rng(4)
    prof = nyc_profiles[nyc_profiles[schema.USER].isin(
        sorted(nyc_profiles[schema.USER].unique())[:300])]
    users, names = pd.factorize(prof[schema.USER], sort=True)
    cats = pd.factorize(prof[schema.CATEGORY])[0]
    reps = prof[EVENTS].to_numpy()
    # every profile cell back as events, at random times inside its month
    start = prof[PERIOD].to_numpy("datetime64[us]").view(np.int64).repeat(reps)
    us = start + rng.integers(0, 28 * 86_400_000_000, len(start))
    user, key = users.repeat(reps), cats.repeat(reps)
    want = E.interest_drift(prof, min_events=5, prior=10.0)
    order = np.lexsort((us, user))
    for idx in (order, rng.permutation(len(us))):  # sorted as the build reads, and shuffled
        got = E.drift_from_events(user[idx].astype(np.int32), us[idx], key[idx], "month",
                                  min_events=5, prior=10.0)
        assert (np.asarray(names)[got["user"]] == want[schema.USER].to_numpy()).all()
        assert (got["period"].view("datetime64[us]") == want[PERIOD].to_numpy()).all()
        assert (got["events"] == want[EVENTS].to_numpy()).all()
        np.testing.assert_allclose(got["shrunk_js"], want[E.SHRUNK_JS], atol=1e-12)
        np.testing.assert_allclose(got["js"], want[E.JS], atol=1e-12)

"""The Users page's queries for bench/analytics_bench.py: one user's timeline, drift and
mobility, the top changers and the churn panel, each against the same work in pandas.

``queries()`` returns ``BenchQuery`` entries (see bench/analytics_bench.py); the per-user ones
use ``ctx.extra["user"]``, the most active user of the generated events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from trailscope.analytics import schema

from bench.analytics_bench import BenchQuery, Context, _frames_equal, _same_rows
from bench.analytics_pandas import pd_churn_features, pd_profiles


def pd_user_events(df: pd.DataFrame, user: str) -> pd.DataFrame:
    return df[df[schema.USER] == user].sort_values(schema.TS, kind="mergesort")


def _pd_features(df: pd.DataFrame, cut: pd.Timestamp, window: pd.Timedelta,
                 windows: int = 4) -> pd.DataFrame:
    """``analytics.churn.churn_features``'s frame, computed with ``pd_churn_features``."""
    from trailscope.analytics.users import churn

    raw = pd_churn_features(df, cut, window, windows)
    out = pd.DataFrame({schema.USER: raw[schema.USER],
                        churn.RECENCY: (cut - raw["last"]).dt.total_seconds() / 86400.0,
                        churn.TENURE: (cut - raw["first"]).dt.total_seconds() / 86400.0,
                        churn.TOTAL: raw["n"].astype("int64")})
    for i in range(1, windows + 1):
        out[f"freq_{i}"] = raw[f"freq_{i}"].astype("int64")
    x = np.arange(windows, dtype=float) - (windows - 1) / 2
    counts = out[[f"freq_{i}" for i in range(windows, 0, -1)]].to_numpy(dtype=float)
    out[churn.TREND] = counts @ x / (x @ x)
    out[churn.CHURNED] = raw["churned"].astype("int64")
    return out.sort_values(schema.USER).reset_index(drop=True)


def pd_churn_panel(df: pd.DataFrame, window: pd.Timedelta) -> tuple[pd.DataFrame, float]:
    """The Users page's churn panel in pandas: risk at the end (model fitted one window
    earlier) and the backtest's ROC-AUC one window before the end."""
    from sklearn.metrics import roc_auc_score
    from trailscope.analytics.users import churn

    last = pd.Timestamp(df[schema.TS].max())
    at = last + pd.Timedelta(seconds=1)
    model = churn.fit_churn_model(_pd_features(df, at - window, window))
    risk = model.predict(_pd_features(df, at, window).drop(columns=churn.CHURNED))
    test_cut = last - window
    bt_model = churn.fit_churn_model(_pd_features(df, test_cut - window, window))
    test = _pd_features(df, test_cut, window)
    auc = roc_auc_score(test[churn.CHURNED], bt_model.predict(test)[churn.RISK])
    return risk.sort_values([churn.RISK, schema.USER], ascending=[False, True]), float(auc)


def pd_interest_drift(profiles: pd.DataFrame, min_events: int = 1) -> pd.DataFrame:
    """``evolution.interest_drift`` (no prior) in pandas: every compared window x every
    category of the user, then the JS terms summed per pair (the pandas baseline; the
    analysis runs one DuckDB query)."""
    from trailscope.analytics.users import evolution as ev

    user, period, cat, events = schema.USER, "period", schema.CATEGORY, "events"
    totals = profiles.groupby([user, period], as_index=False)[events].sum()
    totals = totals[totals[events] >= min_events].sort_values([user, period])
    totals = totals[totals.groupby(user)[period].transform("size") >= 2]
    totals["_rank"] = totals.groupby(user).cumcount()
    cats = profiles[[user, cat]].drop_duplicates()
    grid = totals.merge(cats, on=user).merge(
        profiles[[user, period, cat, events]].rename(columns={events: "_c"}),
        on=[user, period, cat], how="left")
    grid["_p"] = grid["_c"].fillna(0).to_numpy("float64") / grid[events].to_numpy("float64")
    cur = grid[[user, "_rank", cat, "_p"]]
    pairs = cur.assign(_rank=cur["_rank"] + 1).merge(cur, on=[user, "_rank", cat],
                                                     suffixes=("_a", "_b"))
    p, q = pairs["_p_a"].to_numpy(), pairs["_p_b"].to_numpy()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = 0.5 * np.where(p > 0, p * np.log2(p / m), 0) \
            + 0.5 * np.where(q > 0, q * np.log2(q / m), 0)
    js = pairs.assign(**{ev.JS: terms}).groupby([user, "_rank"], as_index=False)[ev.JS].sum()
    js[ev.JS] = js[ev.JS].clip(0.0, 1.0)
    prv = totals.assign(_rank=totals["_rank"] + 1).rename(
        columns={period: ev.PREV_PERIOD, events: ev.PREV_EVENTS})
    out = js.merge(totals, on=[user, "_rank"]).merge(prv, on=[user, "_rank"])
    cols = [user, ev.PREV_PERIOD, period, ev.PREV_EVENTS, events, ev.JS]
    return out.sort_values([user, period])[cols].reset_index(drop=True)


def _pd_top_changers(df: pd.DataFrame) -> pd.DataFrame:
    from trailscope.analytics.users import evolution

    profiles = pd_profiles(df)
    profiles["period"] = profiles["period"].astype("datetime64[us]")
    drift = pd_interest_drift(profiles, min_events=3)
    return evolution.top_changers(drift, profiles, n=12, min_pairs=2)


def _top_changers(c: Context) -> pd.DataFrame:
    from trailscope.analytics.rollups import users as r_users
    from trailscope.analytics.users import evolution

    drift = r_users.top_drift(c.events, "month", 12, 2, 3)
    return evolution.top_changers(drift, r_users.interest_profiles(
        c.events, "month", user=drift[schema.USER].unique().tolist()), 12, min_pairs=2)


def _churn_panel(c: Context, window: str) -> tuple[pd.DataFrame, float]:
    from trailscope.analytics.rollups import users as r_users
    from trailscope.analytics.users import churn

    risk, bt = r_users.churn_panel(c.events, window=window)
    return risk, float(bt.loc[bt[churn.MODEL] == churn.LOGISTIC, churn.ROC_AUC].iloc[0])


def _same_churn(a: tuple[pd.DataFrame, float], b: tuple[pd.DataFrame, float]) -> bool:
    from trailscope.analytics.users import churn

    ra, rb = (x.set_index(schema.USER)[churn.RISK] for x in (a[0], b[0]))
    return len(ra) == len(rb) and bool(np.allclose(ra, rb.reindex(ra.index))) \
        and abs(a[1] - b[1]) < 1e-9


def _same_drift(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return len(a) == len(b) and bool(np.allclose(a["js"], b["js"]))


def queries() -> list[BenchQuery]:
    from trailscope.analytics.rollups import users as r_users
    from trailscope.analytics.spatial import mobility

    def user(c: Context) -> str:
        return c.extra["user"]

    def events(c: Context) -> pd.DataFrame:
        return r_users.user_events_sql(c.con, c.table, user(c))

    return [
        BenchQuery("one user's timeline", "Users", events,
                   lambda c: pd_user_events(c.df, user(c)), _same_rows,
                   note="the most active user"),
        BenchQuery("one user's profiles + interest drift (monthly)", "Users",
                   lambda c: r_users.user_interest(c.events, user(c), "month", 3)[1],
                   lambda c: pd_interest_drift(
                       pd_profiles(pd_user_events(c.df, user(c))), min_events=3),
                   _same_drift),
        BenchQuery("top changers (all users' drift)", "Users", _top_changers,
                   lambda c: _pd_top_changers(c.df), _frames_equal,
                   note="as app/services/users.py: the ranked users' drift and profiles"),
        BenchQuery("one user's mobility (monthly)", "Users",
                   lambda c: r_users.user_mobility_sql(c.con, c.table, user(c), "month"),
                   lambda c: mobility.user_mobility(pd_user_events(c.df, user(c)),
                                                    window="month"), _frames_equal),
        BenchQuery("churn risk + backtest (14 d)", "Users",
                   lambda c: _churn_panel(c, "14D"),
                   lambda c: pd_churn_panel(c.df, pd.Timedelta(days=14)), _same_churn,
                   note="same sklearn fits both ways"),
    ]

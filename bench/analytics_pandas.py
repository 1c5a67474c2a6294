"""Plain-pandas baselines of the dashboard queries, for bench/analytics_bench.py.

Each function is the computation a notebook would write on the in-memory events DataFrame
(canonical column names); the bench times it against the analytics function on the store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from trailscope.analytics import schema

SESSION_GAP = pd.Timedelta("30min")


def _week_start(ts: pd.Series) -> pd.Series:
    day = ts.dt.floor("D")
    return day - pd.to_timedelta(day.dt.day_of_week, unit="D")


def pd_kpis(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{"events": len(df), "users": df[schema.USER].nunique(),
                          "items": df[schema.ITEM].nunique(), "first_ts": df[schema.TS].min(),
                          "last_ts": df[schema.TS].max()}])


def pd_daily(df: pd.DataFrame) -> pd.DataFrame:
    out = df.groupby(df[schema.TS].dt.floor("D")).agg(
        events=(schema.USER, "size"), users=(schema.USER, "nunique"))
    full = pd.date_range(out.index.min(), out.index.max(), freq="D")
    return out.reindex(full, fill_value=0).rename_axis("period").reset_index()


def pd_rhythm(df: pd.DataFrame, users: bool = True) -> pd.DataFrame:
    offset = pd.to_timedelta(df[schema.TZ_OFFSET].fillna(0).astype("int64"), unit="m")
    local = df[schema.TS] + offset
    keys = [local.dt.day_of_week.rename("weekday"), local.dt.hour.rename("hour")]
    aggs = {"events": (schema.USER, "size")}
    if users:
        aggs["users"] = (schema.USER, "nunique")
    out = df.groupby(keys).agg(**aggs)
    grid = pd.MultiIndex.from_product([range(7), range(24)], names=["weekday", "hour"])
    return out.reindex(grid, fill_value=0).reset_index()


def pd_cohorts(df: pd.DataFrame) -> pd.DataFrame:
    ua = pd.DataFrame({"u": df[schema.USER], "p": _week_start(df[schema.TS])}).drop_duplicates()
    ua["cohort"] = ua.groupby("u")["p"].transform("min")
    ua["since"] = (ua["p"] - ua["cohort"]).dt.days // 7
    out = ua.groupby(["cohort", "since"]).size().rename("users").reset_index()
    size = out[out["since"] == 0].set_index("cohort")["users"]
    out["retention"] = out["users"] / out["cohort"].map(size)
    return out


def pd_active_users(df: pd.DataFrame) -> pd.DataFrame:
    ua = pd.DataFrame({"u": df[schema.USER], "p": _week_start(df[schema.TS])}).drop_duplicates()
    first = ua.groupby("u")["p"].transform("min")
    out = ua.assign(new=(ua["p"] == first)).groupby("p").agg(
        active=("u", "size"), new=("new", "sum"))
    out["returning"] = out["active"] - out["new"]
    return out.reset_index()


def _pd_gaps(df: pd.DataFrame) -> pd.DataFrame:
    s = df[[schema.USER, schema.ITEM, schema.TS]].sort_values([schema.USER, schema.TS])
    return s.assign(gap=s.groupby(schema.USER)[schema.TS].diff().dt.total_seconds())


def pd_sessions(df: pd.DataFrame) -> pd.DataFrame:
    s = _pd_gaps(df)
    new = s["gap"].isna() | (s["gap"] > SESSION_GAP.total_seconds())
    s = s.assign(session=new.astype("int64").groupby(s[schema.USER]).cumsum())
    return s.groupby([schema.USER, "session"]).agg(
        start=(schema.TS, "min"), end=(schema.TS, "max"), events=(schema.TS, "size"),
        items=(schema.ITEM, "nunique")).reset_index()


def pd_session_summary(df: pd.DataFrame) -> pd.DataFrame:
    per = pd_sessions(df)
    duration = (per["end"] - per["start"]).dt.total_seconds()
    n, users = len(per), per[schema.USER].nunique()
    return pd.DataFrame([{"sessions": n, "users": users, "sessions_per_user": n / users,
                          "events_per_session": per["events"].sum() / n,
                          "median_duration_s": float(duration.median()),
                          "single_event_share": float((per["events"] == 1).mean())}])


def pd_interval_hist(df: pd.DataFrame) -> pd.DataFrame:
    gap = _pd_gaps(df)["gap"].dropna()
    k = np.where(gap < 1, -1, np.floor(np.log10(gap.clip(lower=1)) * 4)).astype("int64")
    return pd.Series(k).value_counts().sort_index().rename("count").reset_index()


def pd_profiles(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df[schema.CATEGORY].notna()]
    month = d[schema.TS].dt.to_period("M").dt.start_time
    out = d.groupby([d[schema.USER], month.rename("period"), d[schema.CATEGORY]]).size() \
        .rename("events").reset_index()
    out["share"] = out["events"] / out.groupby([schema.USER, "period"])["events"].transform("sum")
    return out


def pd_churn_features(df: pd.DataFrame, cut: pd.Timestamp, window: pd.Timedelta,
                      windows: int = 4) -> pd.DataFrame:
    before = df[df[schema.TS] < cut]
    g = before.groupby(schema.USER)[schema.TS]
    out = pd.DataFrame({"last": g.max(), "first": g.min(), "n": g.size()})
    for i in range(1, windows + 1):
        ts = before[schema.TS]
        in_w = (ts >= cut - i * window) & (ts < cut - (i - 1) * window)
        out[f"freq_{i}"] = in_w.groupby(before[schema.USER]).sum()
    after = df[(df[schema.TS] >= cut) & (df[schema.TS] < cut + window)][schema.USER].unique()
    out["churned"] = ~out.index.isin(after)
    return out.reset_index()

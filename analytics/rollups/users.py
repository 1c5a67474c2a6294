"""Per-user questions answered from the summary tables when they can, else by the analyses.

Interest profiles and drift (``users.evolution``), churn (``users.churn``), one user's events
and mobility (``spatial.mobility``) and the user lists of the Users page. Each function
returns exactly what its analysis (or raw query) returns; see temporal.py for the rule.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..engine import EVENTS, PERIOD, check_freq
from ..spacetime import WINDOW
from ..spatial import mobility
from ..users import churn, evolution
from . import batches, lookup
from .tables import DRIFT, PROFILE_FREQS, Rollup


# -- interest profiles and drift -------------------------------------------------------------
def interest_profiles(events: Any, freq: str = "month", column: str = schema.CATEGORY,
                      missing: str | None = None,
                      user: str | list[str] | None = None) -> pd.DataFrame:
    """``evolution.interest_profiles``."""
    check_freq(freq)
    ru = lookup.for_events(events)
    if ru is not None and column == schema.CATEGORY and missing is None \
            and freq in PROFILE_FREQS:
        return stored_profiles(ru, freq, user)
    return evolution.interest_profiles(events, freq, column, missing, user)


def profile_source(ru: Rollup, freq: str, where: str = "") -> str:
    """The profiles per ``freq`` as a relation (``user_idx, period, cat_idx, events,
    share``), counted from the sorted events with their integer category ids (``where``, a
    condition on ``user_idx``, keeps the read to a few users' row groups)."""
    cond = f"AND {where.removeprefix('WHERE ')}" if where else ""
    return (f"(SELECT *, {EVENTS} / sum({EVENTS}) OVER (PARTITION BY user_idx, {PERIOD}) AS "
            f"{evolution.SHARE} FROM (SELECT user_idx, date_trunc('{freq}', {schema.TS}) AS "
            f"{PERIOD}, cat_idx, count(*) AS {EVENTS} FROM {ru.t('ev')} WHERE cat_idx IS NOT "
            f"NULL {cond} GROUP BY ALL))")


def stored_profiles(ru: Rollup, freq: str, user: str | list[str] | None) -> pd.DataFrame:
    """The profiles counted from the sorted event table (``profile_source``), in (user,
    period, category) order with their shares; integer user and category ids are turned back
    into names with one vectorised take."""
    where, names = "", None
    if isinstance(user, str):
        return _user_profiles(ru, freq, ru.user_idx(user), user)
    if user is not None:
        names = ru.df(f"SELECT user_idx, {schema.USER} FROM {ru.t('users')} WHERE "
                      f"{schema.USER} IN (SELECT unnest(?)) ORDER BY user_idx",
                      [evolution.user_list(user)])
        where = f"WHERE user_idx IN ({', '.join(map(str, names['user_idx'])) or 'NULL'})"
        names = names.set_index("user_idx")[schema.USER]
    prof = ru.df(f"SELECT user_idx, {PERIOD}, cat_idx, {EVENTS}, {evolution.SHARE} FROM "
                 f"{profile_source(ru, freq, where)} ORDER BY user_idx, {PERIOD}, cat_idx")
    cats = ru.df(f"SELECT {schema.CATEGORY} FROM {ru.t('categories')}")[schema.CATEGORY]
    ids = prof["user_idx"].to_numpy()
    users = ru.user_ids().take(ids) if names is None else names.loc[ids]
    return pd.DataFrame({
        schema.USER: users.reset_index(drop=True),
        PERIOD: prof[PERIOD].astype("datetime64[us]"),
        schema.CATEGORY: cats.take(prof["cat_idx"].to_numpy()).reset_index(drop=True),
        EVENTS: prof[EVENTS].astype("int64"), evolution.SHARE: prof[evolution.SHARE]})


def _user_profiles(ru: Rollup, freq: str, idx: int | None, user: str) -> pd.DataFrame:
    """One user's profiles from the sorted events (``idx``: their user_idx, None when
    unknown): one query on their row groups, the category names joined in the engine."""
    where = f"WHERE user_idx = {-1 if idx is None else int(idx)}"
    return _timestamps(ru.df(
        f"SELECT CAST(? AS VARCHAR) AS {schema.USER}, p.{PERIOD}, c.{schema.CATEGORY}, "
        f"p.{EVENTS}, p.{evolution.SHARE} FROM {profile_source(ru, freq, where)} p JOIN "
        f"{ru.t('categories')} c USING (cat_idx) ORDER BY p.{PERIOD}, p.cat_idx",
        [str(user)]), PERIOD)


def _timestamps(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """``cols`` as datetime64[us] (DuckDB's TIMESTAMP; converted only where it is not)."""
    for col in cols:
        if df[col].dtype != "datetime64[us]":
            df[col] = df[col].astype("datetime64[us]")
    return df


def user_interest(events: Any, user: str, freq: str = "month", min_events: int = 1,
                  column: str = schema.CATEGORY,
                  prior: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``evolution.user_interest``: from the summary tables in three small reads (freshness,
    the user's index, profiles, drift) when they store that drift; else the drift of the
    user's (stored or raw) profiles."""
    ru = lookup.for_events(events)
    if ru is not None and _drift_stored(ru, freq, min_events, column, prior):
        idx = ru.user_idx(user)
        return (_user_profiles(ru, freq, idx, user), _stored_drift(ru, freq, str(user), idx))
    profiles = interest_profiles(events, freq, column, user=str(user))
    return profiles, evolution.interest_drift(profiles, column, min_events, prior)


def drift(events: Any, freq: str = "month", min_events: int = 1,
          user: str | None = None, column: str = schema.CATEGORY,
          prior: float = 0.0) -> pd.DataFrame:
    """``evolution.drift``: read from the summary tables when they store that drift
    (``tables.DRIFT``: category basis, its minimum events and prior, the stored window), else
    the interest drift of the (stored or raw) profiles."""
    ru = lookup.for_events(events)
    if ru is not None and _drift_stored(ru, freq, min_events, column, prior):
        return _stored_drift(ru, freq, user)
    return evolution.interest_drift(interest_profiles(events, freq, column, user=user),
                                    column, min_events, prior)


def drift_reference(events: Any, freq: str = "month", min_events: int = 1,
                    column: str = schema.CATEGORY, prior: float = 0.0) -> pd.DataFrame:
    """``evolution.reference(drift(...))``: the median drift and the users per window,
    aggregated by the engine on the stored drift when there is one."""
    ru = lookup.for_events(events)
    if ru is not None and _drift_stored(ru, freq, min_events, column, prior):
        stored = f"drift_ref_{freq}"
        query = (f"SELECT * FROM {ru.t(stored)}" if ru.has(stored)
                 else drift_summaries_sql(ru, freq)[stored])
        return _timestamps(ru.df(query + f" ORDER BY {PERIOD}"), PERIOD)
    return evolution.reference(drift(events, freq, min_events, column=column, prior=prior))


def drift_summaries_sql(ru: Rollup, freq: str) -> dict[str, str]:
    """What the Users page reads of everyone's stored drift per ``freq``, as queries over
    it (the summary build stores them beside it, so a first view reads a few rows):
    ``drift_ref_<freq>``, the median drift and users per window (``evolution.reference``);
    ``drift_rank_<freq>``, each user's window pairs and mean shrunk drift (what
    :func:`top_drift` ranks)."""
    t = ru.t("drift_" + freq)
    return {f"drift_ref_{freq}": (
                f"SELECT {PERIOD}, median({evolution.SHRUNK_JS}) AS {evolution.MEDIAN_JS}, "
                f"count(DISTINCT user_idx) AS {evolution.USERS} FROM {t} GROUP BY {PERIOD}"),
            f"drift_rank_{freq}": (
                f"SELECT user_idx, count(*) AS pairs, avg({evolution.SHRUNK_JS}) AS mean_js "
                f"FROM {t} GROUP BY user_idx")}


#: Users ranked by the engine for ``top_drift`` beyond the ``n`` asked, so that pandas' own
#: ranking of them (ties by id, its float sums) picks the same ``n`` as on everyone's drift.
TOP_MARGIN = 50


def top_drift(events: Any, freq: str = "month", n: int = 10, min_pairs: int = 1,
              min_events: int = 1, column: str = schema.CATEGORY,
              prior: float = 0.0) -> pd.DataFrame:
    """The drift rows (as ``drift`` returns them) of the ``n`` users ``evolution.top_users``
    ranks first: on the stored drift the engine ranks the users and only the first
    ``4 n + TOP_MARGIN`` users' rows are read, so the Users page never holds everyone's."""
    ru = lookup.for_events(events)
    if ru is None or not _drift_stored(ru, freq, min_events, column, prior):
        dr = drift(events, freq, min_events, column=column, prior=prior)
    else:
        t, rank = ru.t("drift_" + freq), f"drift_rank_{freq}"
        ranks = ru.t(rank) if ru.has(rank) else f"({drift_summaries_sql(ru, freq)[rank]})"
        got = ru.df(
            f"SELECT u.{schema.USER}, d.* EXCLUDE (user_idx) FROM {t} d JOIN {ru.t('users')} "
            f"u USING (user_idx) WHERE d.user_idx IN (SELECT user_idx FROM {ranks} WHERE "
            f"pairs >= {int(min_pairs)} ORDER BY mean_js DESC, user_idx LIMIT "
            f"{4 * int(n) + TOP_MARGIN}) ORDER BY d.user_idx, d.{PERIOD}")
        dr = _timestamps(got, evolution.PREV_PERIOD, PERIOD)
    top = evolution.top_users(dr, n, min_pairs)[schema.USER]
    return dr[dr[schema.USER].isin(top)].reset_index(drop=True)


def _drift_stored(ru: Rollup, freq: str, min_events: int, column: str, prior: float) -> bool:
    """Whether the summary tables hold this drift (``tables.DRIFT``'s settings, for the Users
    page's window)."""
    return (min_events, prior) == DRIFT and column == schema.CATEGORY \
        and freq in PROFILE_FREQS and ru.has("drift_" + freq)


def _stored_drift(ru: Rollup, freq: str, user: str | None,
                  idx: int | None = None) -> pd.DataFrame:
    """The stored drift of everyone, or of ``user`` (``idx``: their user_idx when known)."""
    if user is not None:  # one read, the frame as the query returns it
        idx = ru.user_idx(user) if idx is None else idx
        return _timestamps(ru.df(
            f"SELECT CAST(? AS VARCHAR) AS {schema.USER}, * EXCLUDE (user_idx) FROM "
            f"{ru.t('drift_' + freq)} WHERE user_idx = ? ORDER BY {PERIOD}",
            [str(user), -1 if idx is None else idx]),
            evolution.PREV_PERIOD, PERIOD)
    got = ru.df(f"SELECT * FROM {ru.t('drift_' + freq)}")
    out = got.drop(columns="user_idx")
    out.insert(0, schema.USER, ru.user_ids().take(got["user_idx"].to_numpy())
               .reset_index(drop=True))
    for col in (evolution.PREV_PERIOD, PERIOD):
        out[col] = out[col].astype("datetime64[us]")
    return out


# -- churn ----------------------------------------------------------------------------------
def _sql_counts(ru: Rollup, cut_s: int, w: int, windows: int) -> pd.DataFrame:
    """``churn.Counts`` over the summary event table (integer user ids and precomputed epoch
    seconds), user ids joined back: one scan serves features and labels."""
    before = f"FILTER (WHERE s < {cut_s})"
    counts = "".join(
        f", count(*) FILTER (WHERE s >= {cut_s - i * w} AND s < {cut_s - (i - 1) * w}) "
        f"AS {churn.freq_col(i)}" for i in range(1, windows + 1))
    return ru.df(
        f"SELECT u.{schema.USER}, f.* EXCLUDE (user_idx) FROM (SELECT user_idx, max(s) {before} "
        f"AS _last, min(s) {before} AS _first, count(*) {before} AS {churn.TOTAL}{counts}, "
        f"count(*) FILTER (WHERE s >= {cut_s} AND s < {cut_s + w}) AS _after FROM "
        f"{ru.t('ev')} GROUP BY user_idx HAVING count(*) {before} > 0) f JOIN {ru.t('users')} "
        "u ON f.user_idx = u.user_idx")


def _counts_at(ru: Rollup, cuts: list[int], w: int, windows: int) -> dict[int, pd.DataFrame]:
    """:func:`_sql_counts` of each of ``cuts`` from one read of the sorted event times, in
    batches of whole users (``batches``): per batch a ``churn.UserTimes`` (binary searches
    per user), so memory stays bounded by the batch, not the events."""
    ids = ru.user_ids()
    parts: dict[int, list[pd.DataFrame]] = {cut: [] for cut in cuts}

    def compute(got: dict[str, np.ndarray]) -> dict[int, pd.DataFrame]:
        got = batches.in_row_order(got)
        user = np.asarray(got["user_idx"], np.int64)
        lo, hi = int(user[0]), int(user[-1])
        times = churn.UserTimes(user - lo, got["s"], ids.iloc[lo:hi + 1].reset_index(drop=True))
        return {cut: times.counts(cut, w, windows) for cut in cuts}

    def consume(counted: dict[int, pd.DataFrame]) -> None:
        for cut, rows in counted.items():
            parts[cut].append(rows)

    batches.map_user_batches(ru, CHURN_BATCH, f"SELECT rowid, user_idx, s FROM {ru.t('ev')} "
                             "WHERE user_idx BETWEEN {lo} AND {hi}", compute, consume)
    return {cut: pd.concat(rows, ignore_index=True) for cut, rows in parts.items() if rows}


#: Events per batch of users whose churn counts numpy finds at once.
CHURN_BATCH = 4_000_000


def _user_times(ru: Rollup) -> churn.UserTimes | None:
    """Every event's (user, second) read once from the sorted event table; None when the
    rows did not come back in that order (the counts then come from SQL)."""
    got = ru.con.execute(f"SELECT user_idx, s FROM {ru.t('ev')}").fetchnumpy()
    try:
        return churn.UserTimes(np.asarray(got["user_idx"]), np.asarray(got["s"]),
                               ru.user_ids())
    except ValueError:
        return None


def _panel_sources(events: Any) -> tuple[churn.Counts | None, Any]:
    """(counts, last event time) for the churn functions that cut several times."""
    ru = lookup.for_events(events)
    if ru is None:
        return None, None
    times = _user_times(ru)
    counts = times.counts if times is not None else partial(_sql_counts, ru)
    return counts, ru.summary()["last_ts"]


def churn_features(events: Any, cut: Any, window: str | pd.Timedelta = "14D",
                   windows: int = 4, label: bool = True) -> pd.DataFrame:
    """``churn.churn_features``."""
    ru = lookup.for_events(events)
    return churn.churn_features(events, cut, window, windows, label,
                                None if ru is None else partial(_sql_counts, ru))


def churn_backtest(events: Any, cut: Any = None, window: str | pd.Timedelta = "14D",
                   windows: int = 4) -> tuple[pd.DataFrame, churn.ChurnModel]:
    """``churn.churn_backtest``."""
    counts, last = _panel_sources(events)
    return churn.churn_backtest(events, cut, window, windows, counts, last)


def churn_risk(events: Any, at: Any = None, window: str | pd.Timedelta = "14D",
               windows: int = 4) -> pd.DataFrame:
    """``churn.churn_risk``."""
    counts, last = _panel_sources(events)
    return churn.churn_risk(events, at, window, windows, counts, last)


def churn_panel(events: Any, window: str | pd.Timedelta = "14D",
                windows: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``churn.churn_panel``: one read of the event times serves all four cuts."""
    counts, last = _panel_sources(events)
    return churn.churn_panel(events, window, windows, counts, last)


def page_churn(events: Any, first: Any, last: Any) -> tuple[pd.DataFrame, pd.DataFrame, str, str]:
    """``churn.page_panel``: the panel the summary build stored for this span when it did
    (two small reads), else computed (one read of the event times serves every cut)."""
    ru = lookup.for_events(events)
    if ru is not None and ru.has("churn_params"):
        got = stored_churn(ru, first, last)
        if got is not None:
            return got
    counts, last_ts = _panel_sources(events)
    return churn.page_panel(events, first, last, counts, last_ts)


def build_churn(ru: Rollup) -> None:
    """``churn_params`` / ``churn_risk`` / ``churn_backtest``: the Users page's churn panel
    for the span the page uses (``summary``'s ts_p01 .. ts_p99), counted by the engine one cut
    at a time (memory bounded by the users, not the events)."""
    s = ru.summary()
    if s["ts_p01"] is None:
        return
    # the cuts of the page's first window counted in one scan (each was a scan of its own)
    first = churn.page_windows(s["ts_p01"], s["ts_p99"])[0]
    w = int(pd.Timedelta(first).total_seconds())
    ahead = _counts_at(ru, churn.panel_cuts(first, s["last_ts"]), w, 4)

    def counts(cut_s: int, window_s: int, windows: int) -> pd.DataFrame:
        if window_s == w and windows == 4 and cut_s in ahead:
            return ahead.pop(cut_s)
        return _sql_counts(ru, cut_s, window_s, windows)

    risk, bt, window, why = churn.page_panel(None, s["ts_p01"], s["ts_p99"], counts,
                                             s["last_ts"])
    ru.con.execute(f"CREATE TABLE {ru.t('churn_params')} AS SELECT CAST(? AS TIMESTAMP) AS "
                   "first_ts, CAST(? AS TIMESTAMP) AS last_ts, CAST(? AS VARCHAR) AS "
                   "churn_window, CAST(? AS VARCHAR) AS note",
                   [s["ts_p01"], s["ts_p99"], window, why])
    if not window:
        return
    ru.con.register("_churn_risk", risk.assign(pos=range(len(risk))))
    ru.con.register("_churn_bt", bt)
    try:
        ru.con.execute(f"CREATE TABLE {ru.t('churn_risk')} AS SELECT r.pos, u.user_idx, "
                       f"r.* EXCLUDE (pos, {schema.USER}) FROM _churn_risk r JOIN "
                       f"{ru.t('users')} u USING ({schema.USER}) ORDER BY r.pos")
        ru.con.execute(f"CREATE TABLE {ru.t('churn_backtest')} AS SELECT * FROM _churn_bt")
    finally:
        ru.con.unregister("_churn_risk")
        ru.con.unregister("_churn_bt")


def stored_churn(ru: Rollup, first: Any,
                 last: Any) -> tuple[pd.DataFrame, pd.DataFrame, str, str] | None:
    """The stored churn panel when it was built for [first, last], else None."""
    params = ru.one(f"SELECT first_ts, last_ts, churn_window, note FROM "
                    f"{ru.t('churn_params')}")
    if params is None or (pd.Timestamp(params[0]), pd.Timestamp(params[1])) != (
            pd.Timestamp(first), pd.Timestamp(last)):
        return None
    if not params[2]:
        return pd.DataFrame(), pd.DataFrame(), "", params[3]
    risk = ru.df(f"SELECT u.{schema.USER}, c.* EXCLUDE (pos, user_idx) FROM "
                 f"{ru.t('churn_risk')} c JOIN {ru.t('users')} u USING (user_idx) "
                 "ORDER BY c.pos", arrow=True)
    bt = _timestamps(ru.df(f"SELECT * FROM {ru.t('churn_backtest')}"), churn.TRAIN_CUT,
                     churn.TEST_CUT)
    return risk, bt, params[2], ""


# -- one user's events and mobility ------------------------------------------------------------
def user_events_sql(con: Any, table: str, user: str,
                    columns: list[str] | None = None) -> pd.DataFrame:
    """``mobility.user_events_sql``: from the summary event table sorted by user (one or two
    row groups, whatever order the file was imported in) when there is one."""
    ru = lookup.for_sql(con, table)
    if ru is not None:
        return ru.user_events(user, columns)
    return mobility.user_events_sql(con, table, user, columns)


def user_mobility_sql(con: Any, table: str, user: str, window: Any = None) -> pd.DataFrame:
    """``mobility.user_mobility_sql``: the stored rows in one read when the summary tables
    hold that window (``mobility.page_window``), else computed on the user's events."""
    ru = lookup.for_sql(con, table)
    if ru is None:
        return mobility.user_mobility_sql(con, table, user, window)
    if window is not None:
        got = _stored_mobility(ru, str(user), window)
        if got is not None:
            return got
    return mobility.user_mobility(ru.user_events(str(user)), window)


def _stored_mobility(ru: Rollup, user: str, window: str) -> pd.DataFrame | None:
    """The stored rows of ``user`` for ``window``, None when that window is not stored or
    the user is unknown (the caller then computes, as the raw path does)."""
    got = stored_mobility(ru, window, user)
    if got.empty:
        return None
    return got.assign(**{schema.USER: pd.Series([user] * len(got), dtype="str")})


def stored_mobility(ru: Rollup, window: str, user: str | None = None) -> pd.DataFrame:
    """The ``mobility`` rows of ``window`` (of one ``user``, else everyone's; none for a user
    or window not stored), in
    ``mobility.user_mobility``'s columns and dtypes, ordered by user and window: the anchors
    are stored by item_idx, their ids joined here for the rows read."""
    anchors = ("home", "work")
    got = ru.df(f"SELECT u.{schema.USER}, m.* EXCLUDE (freq, user_idx) REPLACE ("
                + ", ".join(f"{a}.{schema.ITEM} AS {a}_idx" for a in anchors)
                + f") FROM {ru.t('users')} u LEFT JOIN {ru.t('mobility')} m ON m.user_idx = "
                "u.user_idx AND m.freq = ? "
                + " ".join(f"LEFT JOIN {ru.t('items')} {a} ON {a}.item_idx = m.{a}_idx"
                           for a in anchors)
                + ("" if user is None else f" WHERE u.{schema.USER} = ?")
                + f" ORDER BY u.{schema.USER}, m.{WINDOW}",
                [window] + ([] if user is None else [user]))
    got = got[got[WINDOW].notna()].reset_index(drop=True)  # a user without stored rows
    return got.rename(columns={f"{a}_idx": f"{a}_item" for a in anchors}).astype(
        {WINDOW: "datetime64[us]", mobility.EVENTS: "int64", mobility.PLACES: "int64",
         "home_visits": "Int64", "work_visits": "Int64"})


# -- the Users page's user lists ---------------------------------------------------------------
def per_user(con: Any, table: str, where: str, params: list, tail: str) -> pd.DataFrame:
    """``user_id, events`` of the users matching ``where`` (a condition on ``user_id``),
    ``tail`` for order and limit: from the per-user table, else grouping the events."""
    ru = lookup.for_sql(con, table)
    if ru is not None:
        return ru.df(f"SELECT {schema.USER}, events FROM {ru.t('users')} {where} {tail}",
                     params)
    return con.execute(f"SELECT {schema.USER}, count(*) AS events FROM {table} {where} "
                       f"GROUP BY 1 {tail}", params).df()


def user_exists(con: Any, table: str, user: str) -> bool:
    """Whether ``table`` has an event of ``user``."""
    ru = lookup.for_sql(con, table)
    if ru is not None:
        return ru.user_idx(str(user)) is not None
    return con.execute(f"SELECT 1 FROM {table} WHERE {schema.USER} = ? LIMIT 1",
                       [str(user)]).fetchone() is not None


def has_categories(con: Any, table: str) -> bool:
    """Whether any event of ``table`` has a category."""
    ru = lookup.for_sql(con, table)
    if ru is not None:
        return bool(ru.summary()["categorised"])
    row = con.execute(f"SELECT count({schema.CATEGORY}) FROM {table}").fetchone()
    return bool(row and row[0])

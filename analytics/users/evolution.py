"""How users' interests move: shares per user per window, and their drift.

Interests are profiled over a *basis*: the event categories (``category``) when the data has
them, else the areas the user visits (``zone``: H3 cells of resolution ``ZONE_RESOLUTION``), so
check-in logs without categories (SNAP Gowalla, Brightkite) still show how users move.

* ``interest_profiles``: per user and window (hour/day/week/month), the share of the user's
  events in each category or zone (counted in the engine; shares in pandas);
* ``interest_drift``: Jensen-Shannon divergence (base 2, so 0 = same mix, 1 = disjoint
  mixes) between each user's consecutive active windows; with a ``prior`` also the divergence
  of shares shrunk toward the user's overall mix, so windows of a few events drift little;
* ``user_drift_table``: per user the windows, pairs and events behind the drift, ranked;
* ``segment_drift`` / ``segment_summary``: drift per activity segment (light / medium /
  heavy users);
* ``top_changers``: the users whose interests changed most, with what they gained and lost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..engine import EVENTS, PERIOD, USERS, as_table, check_freq, execute, period_start
from ..geo import has_coords
from ..runs import in_order, run_ids, run_starts
from ..spacetime import window_starts_us
from ..spatial.density import hex_cells_of

#: The zone basis: events counted per H3 cell of this resolution (about 5 km2, some 2.5 km
#: across: a neighbourhood), for data without categories.
ZONE = "zone"
ZONE_RESOLUTION = 7
BASES = (schema.CATEGORY, ZONE)

SHARE = "share"
PREV_PERIOD = "prev_period"
PREV_EVENTS = "prev_events"
JS = "js"
SEGMENT = "segment"
MEAN_JS = "mean_js"
MEDIAN_JS = "median_js"
MAX_JS = "max_js"
PAIRS = "pairs"
WINDOWS = "windows"    # a user's compared windows (pairs + 1)
SHRUNK_JS = "shrunk_js"  # JS of the shares shrunk toward the user's overall mix
RAW_MEAN_JS = "raw_mean_js"  # a user's mean unshrunk JS (mean_js is the ranked, shrunk one)
GAINED = "gained"      # category / zone whose share grew most from the first to the last
LOST = "lost"          # compared window; the one whose share shrank most
SEGMENT_LABELS = ("light", "medium", "heavy")
#: The drift the pages show (app/services/users.py) and the summary tables store
#: (analytics/rollups/tables.py): windows with fewer profiled events are not compared (a
#: handful of check-ins says little about a mix), and each window's shares are shrunk toward
#: the user's overall mix with this many pseudo-events (a window of 5 events keeps a third of
#: its own mix, one of 500 keeps 98%).
MIN_EVENTS_PER_WINDOW = 5
PRIOR_EVENTS = 10.0


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence of two distributions in base 2 (0..1).

    ``p`` and ``q`` are non-negative weights over the same categories; each is normalised to
    sum to 1 first. Raises when either is all zeros.
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape or (p < 0).any() or (q < 0).any() or p.sum() == 0 or q.sum() == 0:
        raise ValueError("js_divergence needs two non-negative, non-empty weight vectors of "
                         "the same length")
    return float(_js_terms(p / p.sum(), q / q.sum()).sum())


def _kl_terms(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """p * log2(p / m) with 0 * log(0) = 0 (m > 0 wherever p > 0 by construction)."""
    pos = p > 0
    ratio = np.divide(p, m, out=np.ones_like(p, dtype=float), where=pos)
    return p * np.log2(ratio, out=ratio, where=pos)


def interest_profiles(events: Any, freq: str = "month", column: str = schema.CATEGORY,
                      missing: str | None = None,
                      user: str | list[str] | None = None) -> pd.DataFrame:
    """Each user's mix per window: ``user_id, period, <column>, events, share``.

    ``column`` is the basis: an event column (``category``) or ``ZONE``, the H3 cell of
    resolution ``ZONE_RESOLUTION`` of the event's coordinates (events without usable
    coordinates have no zone and are dropped). Events with a null ``column`` are dropped
    (unknown interest), unless ``missing`` names a label to count them under (not for zones).
    ``share`` sums to 1 per (user, period). ``user`` keeps one user's rows, or those of a
    list of users (a profile page need not profile everyone).
    """
    check_freq(freq)
    t = as_table(events)
    if user is not None:
        t = t.filter(t[schema.USER].isin(user_list(user)))
    if column == ZONE:
        if missing is not None:
            raise ValueError("zone profiles have no 'missing' label: an event without "
                             "coordinates has no zone")
        return _shares(_zone_counts(t, freq), column)
    if column not in t.columns:
        raise ValueError(f"cannot profile by {column!r}: the events have no such column")
    key = t[column]
    if missing is None:
        t = t.filter(key.notnull())
        key = t[column]
    else:
        key = key.fill_null(missing)
    expr = t.group_by(**{schema.USER: t[schema.USER], PERIOD: period_start(t, freq),
                         column: key}).aggregate(**{EVENTS: t.count()})
    return _shares(execute(expr), column)


def _zone_counts(t: Any, freq: str) -> pd.DataFrame:
    """``user_id, period, zone, events``: events counted per place in the engine, the
    distinct places turned into H3 cells once each, then summed per cell."""
    t = t.filter(t[schema.LAT].notnull() & t[schema.LON].notnull())
    got = execute(t.group_by(**{schema.USER: t[schema.USER], PERIOD: period_start(t, freq),
                                schema.LAT: t[schema.LAT], schema.LON: t[schema.LON]})
                  .aggregate(**{EVENTS: t.count()}))
    got = got[has_coords(got).to_numpy()]
    cells = hex_cells_of(got[schema.LAT].to_numpy("float64"),
                         got[schema.LON].to_numpy("float64"), ZONE_RESOLUTION)
    got = got[[schema.USER, PERIOD, EVENTS]].assign(**{ZONE: cells})
    return got.groupby([schema.USER, PERIOD, ZONE], as_index=False, sort=False)[EVENTS].sum()


def _shares(out: pd.DataFrame, column: str) -> pd.DataFrame:
    """Counts per (user, period, ``column``) with their share of the (user, period), sorted."""
    out[PERIOD] = pd.to_datetime(out[PERIOD]).astype("datetime64[us]")
    out[EVENTS] = out[EVENTS].astype("int64")
    out[SHARE] = out[EVENTS] / out.groupby([schema.USER, PERIOD])[EVENTS].transform("sum")
    out = out[[schema.USER, PERIOD, column, EVENTS, SHARE]]
    return out.sort_values([schema.USER, PERIOD, column]).reset_index(drop=True)


def user_list(user: str | list[str]) -> list[str]:
    """One user id or a list of them, as a list of strings."""
    return [str(user)] if isinstance(user, str) else [str(u) for u in user]


def user_interest(events: Any, user: str, freq: str = "month", min_events: int = 1,
                  column: str = schema.CATEGORY,
                  prior: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(interest_profiles(events, freq, column, user=user), interest_drift(those profiles,
    column, min_events, prior))``: what the Users page shows for one user."""
    profiles = interest_profiles(events, freq, column, user=str(user))
    return profiles, interest_drift(profiles, column, min_events, prior)


def drift(events: Any, freq: str = "month", min_events: int = 1,
          user: str | None = None, column: str = schema.CATEGORY,
          prior: float = 0.0) -> pd.DataFrame:
    """``interest_drift(interest_profiles(events, freq, column), column, min_events,
    prior)``, for one ``user`` or everyone."""
    return interest_drift(interest_profiles(events, freq, column, user=user), column,
                          min_events, prior)


def interest_drift(profiles: pd.DataFrame, column: str = schema.CATEGORY,
                   min_events: int = 1, prior: float = 0.0) -> pd.DataFrame:
    """JS divergence between each user's consecutive active windows.

    One row per user and window after their first active one: ``user_id, prev_period,
    period, prev_events, events, js``. Windows with fewer than ``min_events`` profiled
    events are skipped (one check-in per month says little about a mix), so ``prev_period``
    is the user's previous active window, not necessarily the calendar one before.

    With ``prior > 0`` a column ``shrunk_js`` follows: the divergence of additively smoothed
    shares ``(count + prior * m) / (events + prior)``, ``m`` the user's overall mix (all their
    profiled events), i.e. a Dirichlet prior worth ``prior`` events. A window of 5 events
    with a prior of 10 keeps a third of its own mix, one of 500 keeps 98%: two tiny windows
    of disjoint items no longer read as a complete change.

    Computed by :func:`drift_arrays` on integer codes of the users and ``column`` (the same
    code the summary build runs over every user, :func:`drift_from_events`).
    """
    _check_prior(prior)
    users, user_names = pd.factorize(profiles[schema.USER], sort=True)
    keys = pd.factorize(profiles[column])[0]
    period = profiles[PERIOD].to_numpy("datetime64[us]").view(np.int64)
    count = profiles[EVENTS].to_numpy(np.int64)
    groups = np.lexsort((period, users))  # (user, period): the windows
    g_start = run_starts(users[groups], period[groups])
    g_first = groups[g_start]
    group_of = np.empty(len(users), np.int64)
    group_of[groups] = run_ids(len(groups), g_start)
    cells = np.lexsort((period, keys, users))  # (user, key, period): one key's windows in turn
    out = drift_arrays(users[g_first], period[g_first],
                       np.add.reduceat(count[groups], g_start) if len(groups) else count[:0],
                       group_of[cells], keys[cells], count[cells], min_events, prior)
    return _drift_frame(out, user_names, profiles[schema.USER].dtype, prior)


def drift_from_events(user: np.ndarray, us: np.ndarray, key: np.ndarray, freq: str,
                      min_events: int = 1, prior: float = 0.0) -> dict[str, np.ndarray]:
    """:func:`interest_drift` of every user straight from their events: ``user`` (integer
    ids), ``us`` (UTC epoch microseconds) and ``key`` (the category's integer id, >= 0),
    best sorted by user and then time, as the summary build's sorted event table is (other
    orders are sorted first); windows of ``freq``. The arrays of :func:`drift_arrays`. One
    stable sort of the events by (user, key) finds the profile cells, no grouping of the
    (user, window, key) triples."""
    if not in_order(user, us):
        order = np.lexsort((us, user))
        user, us, key = user[order], us[order], key[order]
    period = window_starts_us(us, freq)
    g_start = run_starts(user, period)  # the events are in (user, time) order: windows are runs
    group_of = run_ids(len(user), g_start)
    order = np.argsort(user.astype(np.int64) * (int(key.max(initial=0)) + 1) + key,
                       kind="stable")  # (user, key), time order kept: (user, key, window)
    grp, k = group_of[order], key[order]
    c_start = run_starts(grp, k)
    return drift_arrays(user[g_start], period[g_start], np.diff(np.r_[g_start, len(user)]),
                        grp[c_start], k[c_start], np.diff(np.r_[c_start, len(user)]),
                        min_events, prior)


def _js_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Each element's JS term of ``p`` and ``q`` (what :func:`js_divergence` sums), base 2."""
    m = (p + q) / 2
    return 0.5 * _kl_terms(p, m) + 0.5 * _kl_terms(q, m)


def drift_arrays(g_user: np.ndarray, g_period: np.ndarray, g_events: np.ndarray,
                 c_group: np.ndarray, c_key: np.ndarray, c_events: np.ndarray,
                 min_events: int = 1, prior: float = 0.0) -> dict[str, np.ndarray]:
    """:func:`interest_drift` over integer arrays: the windows (``g_``: user, period start,
    profiled events; sorted by user and period) and the profile cells (``c_``: window index,
    key, events; sorted by user, key and period).

    Windows of fewer than ``min_events`` events are skipped; users with fewer than two
    windows left have no drift. Windows ``j`` and ``j + 1`` of a user form a pair; a key seen
    in both is *matched* (cells ``i``, ``i + 1`` of one (user, key) run), one seen in only
    one window has share 0 in the other, so its JS term is half its share (no logarithm).
    The shrunk shares of every key of the user's mix seen in neither window are ``a * m`` and
    ``b * m``, whose terms sum to ``(1 - sum of the seen m) * JS-term(a, b)``: one closed form
    per pair. Sums per pair by ``bincount``: linear in the cells after their sort.

    Returns ``user, prev_period, period, prev_events, events, js`` (and ``shrunk_js`` when
    ``prior > 0``), one entry per pair in (user, period) order.
    """
    _check_prior(prior)
    k = float(prior)
    valid = g_events >= min_events
    u_start = run_starts(g_user)
    u_of = run_ids(len(g_user), u_start)
    kept = valid & (np.add.reduceat(valid.astype(np.int64), u_start)[u_of] >= 2) \
        if len(g_user) else valid
    win = np.flatnonzero(kept)  # window j -> its group
    w_of = np.full(len(g_user), -1)
    w_of[win] = np.arange(len(win))
    w_user, w_n = g_user[win], g_events[win].astype(np.float64)
    last = np.ones(len(win), bool)
    last[:-1] = w_user[1:] != w_user[:-1]
    first = np.ones(len(win), bool)
    first[1:] = last[:-1]
    pairs = np.flatnonzero(~last)  # pair j: windows j, j + 1
    out = {"user": w_user[pairs], "prev_period": g_period[win][pairs],
           "period": g_period[win][pairs + 1], "prev_events": g_events[win][pairs],
           "events": g_events[win][pairs + 1]}
    # the user's mix: each (user, key) run's events over all the user's profiled events
    run = run_starts(g_user[c_group], c_key)
    total = np.add.reduceat(g_events, u_start)[u_of] if len(g_user) else g_events
    mix = np.repeat(np.add.reduceat(c_events, run) if len(run) else c_events,
                    np.diff(np.r_[run, len(c_key)])) / total[c_group]
    w = w_of[c_group]
    cell = w >= 0
    run_of = run_ids(len(c_key), run)[cell]
    w, mix, n = w[cell], mix[cell], w_n[w[cell]]
    p = c_events[cell] / n
    matched = np.zeros(len(w), bool)  # this cell and the next: one key in windows j, j + 1
    matched[:-1] = (run_of[1:] == run_of[:-1]) & (w[1:] == w[:-1] + 1)
    a_only = ~last[w] & ~matched  # seen in window j, not in j + 1
    b_only = ~first[w]
    b_only[1:] &= ~matched[:-1]  # seen in window j, not in j - 1
    ia = np.flatnonzero(matched)
    size = len(win)

    def per_pair(at: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.bincount(at, weights=values, minlength=size)

    js = (per_pair(w[ia], _js_terms(p[ia], p[ia + 1])) + per_pair(w[a_only], p[a_only] / 2)
          + per_pair(w[b_only] - 1, p[b_only] / 2))
    out["js"] = np.clip(js[pairs], 0, 1)
    if k > 0:
        s = (c_events[cell] + k * mix) / (n + k)
        ja, jb = w[a_only], w[b_only] - 1
        shrunk = (per_pair(w[ia], _js_terms(s[ia], s[ia + 1]))
                  + per_pair(ja, _js_terms(s[a_only], k * mix[a_only] / (w_n[ja + 1] + k)))
                  + per_pair(jb, _js_terms(k * mix[b_only] / (w_n[jb] + k), s[b_only])))
        seen = (per_pair(w[ia], mix[ia]) + per_pair(w[a_only], mix[a_only])
                + per_pair(w[b_only] - 1, mix[b_only]))[pairs]
        a, b = k / (w_n[pairs] + k), k / (w_n[pairs + 1] + k)
        out["shrunk_js"] = np.clip(shrunk[pairs] + np.maximum(1 - seen, 0)
                                   * _js_terms(a, b), 0, 1)
    return out


def _check_prior(prior: float) -> None:
    if prior < 0:
        raise ValueError(f"the prior is a number of pseudo-events (>= 0), got {prior!r}")


def _drift_frame(out: dict[str, np.ndarray], user_names: Any, user_dtype: Any,
                 prior: float) -> pd.DataFrame:
    """The arrays of :func:`drift_arrays` as drift rows, users by name (``user_names``,
    indexed by the integer ids) in the profiles' dtype."""
    scores = [JS, SHRUNK_JS] if prior > 0 else [JS]
    frame = pd.DataFrame({
        schema.USER: pd.Series(np.asarray(user_names)[out["user"]]).astype(user_dtype),
        PREV_PERIOD: out["prev_period"].view("datetime64[us]"),
        PERIOD: out["period"].view("datetime64[us]"),
        PREV_EVENTS: out["prev_events"].astype("int64"),
        EVENTS: out["events"].astype("int64"),
        **{c: out[c].astype("float64") for c in scores}})
    return frame



def reference(drift: pd.DataFrame) -> pd.DataFrame:
    """Median drift (``drift_score``) and users per window of all users' ``drift``:
    ``period, median_js, users``: what one user's drift is read against."""
    if drift is None or drift.empty:
        return pd.DataFrame(columns=[PERIOD, MEDIAN_JS, USERS])
    return drift.groupby(PERIOD, as_index=False).agg(
        **{MEDIAN_JS: (drift_score(drift), "median"), USERS: (schema.USER, "nunique")})


def activity_segments(profiles: pd.DataFrame,
                      labels: tuple[str, ...] = SEGMENT_LABELS) -> pd.DataFrame:
    """Users split into equal-sized activity segments by total events (ranks, so ties in
    counts do not leave a segment empty): ``user_id, events, segment``."""
    totals = profiles.groupby(schema.USER, as_index=False)[EVENTS].sum()
    if totals.empty:
        return totals.assign(**{SEGMENT: pd.Series(dtype="string")})
    k = min(len(labels), len(totals))
    ranks = totals[EVENTS].rank(method="first")
    totals[SEGMENT] = pd.qcut(ranks, k, labels=list(labels[:k])).astype("string")
    return totals


def drift_score(drift: pd.DataFrame) -> str:
    """The column drift is ranked and summarised by: ``shrunk_js`` when the drift has it,
    else ``js``."""
    return SHRUNK_JS if SHRUNK_JS in drift.columns else JS


def segment_drift(drift: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Drift per activity segment and window: ``segment, period, users, mean_js,
    median_js``; ``segments`` comes from ``activity_segments``."""
    return _by_segment(drift, segments, [PERIOD])


def segment_summary(drift: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Drift per activity segment over all windows: ``segment, users, pairs, mean_js,
    median_js`` (of ``drift_score``)."""
    return _by_segment(drift, segments, [], pairs=True)


def _by_segment(drift: pd.DataFrame, segments: pd.DataFrame, by: list[str],
                pairs: bool = False) -> pd.DataFrame:
    score = drift_score(drift)
    j = drift.merge(segments[[schema.USER, SEGMENT]], on=schema.USER)
    aggs = {USERS: (schema.USER, "nunique"), **({PAIRS: (score, "size")} if pairs else {}),
            MEAN_JS: (score, "mean"), MEDIAN_JS: (score, "median")}
    out = j.groupby([SEGMENT, *by], as_index=False).agg(**aggs)
    order = {label: i for i, label in enumerate(SEGMENT_LABELS)}
    out["_o"] = out[SEGMENT].map(order).fillna(len(order))
    return out.sort_values(["_o", *by]).drop(columns="_o").reset_index(drop=True)


def user_drift_table(drift: pd.DataFrame, min_pairs: int = 1) -> pd.DataFrame:
    """Per user with at least ``min_pairs`` window pairs, most changed first (ties by id):
    ``user_id, windows, pairs, events, mean_js, max_js, raw_mean_js``.

    ``mean_js`` / ``max_js`` are of ``drift_score`` (the shrunk divergence when the drift
    has it), ``raw_mean_js`` the mean unshrunk one; ``windows`` and ``events`` are the
    compared windows and their events: the evidence behind the figure."""
    score = drift_score(drift)
    d = drift.sort_values([schema.USER, PERIOD])
    g = d.groupby(schema.USER)
    out = g.agg(**{PAIRS: (JS, "size"), MEAN_JS: (score, "mean"), MAX_JS: (score, "max"),
                   RAW_MEAN_JS: (JS, "mean")})
    out.insert(0, WINDOWS, out[PAIRS] + 1)
    out.insert(2, EVENTS, (g[EVENTS].sum() + g[PREV_EVENTS].first()).astype("int64"))
    out = out.reset_index()
    out = out[out[PAIRS] >= min_pairs]
    return out.sort_values([MEAN_JS, schema.USER], ascending=[False, True]).reset_index(
        drop=True)


def top_users(drift: pd.DataFrame, n: int = 10, min_pairs: int = 1) -> pd.DataFrame:
    """The first ``n`` rows of ``user_drift_table``: the users with the highest mean drift
    over at least ``min_pairs`` window pairs. ``top_changers`` needs the profiles of these
    users only."""
    return user_drift_table(drift, min_pairs).head(n)


def changes(drift: pd.DataFrame, profiles: pd.DataFrame,
            column: str = schema.CATEGORY) -> pd.DataFrame:
    """``user_id, gained, lost``: the category / zone whose share rose / fell most between
    each user's first and last compared window of ``drift`` (null when nothing rose / fell);
    ``profiles`` may hold only the users wanted."""
    span = drift.groupby(schema.USER).agg(_a=(PREV_PERIOD, "min"), _b=(PERIOD, "max"))
    prof = profiles.merge(span, left_on=schema.USER, right_index=True)
    a = prof[prof[PERIOD] == prof["_a"]].set_index([schema.USER, column])[SHARE]
    b = prof[prof[PERIOD] == prof["_b"]].set_index([schema.USER, column])[SHARE]
    change = b.sub(a, fill_value=0.0).rename("delta").reset_index()
    change = change.sort_values([schema.USER, "delta", column])
    lost = change[change["delta"] < 0].groupby(schema.USER)[column].first().rename(LOST)
    gained = change[change["delta"] > 0].groupby(schema.USER)[column].last().rename(GAINED)
    users = pd.Index(span.index.unique(), name=schema.USER)
    return pd.concat([gained.reindex(users), lost.reindex(users)], axis=1).reset_index()


def top_changers(drift: pd.DataFrame, profiles: pd.DataFrame, n: int = 10,
                 column: str = schema.CATEGORY, min_pairs: int = 1) -> pd.DataFrame:
    """The ``n`` users with the highest mean drift over at least ``min_pairs`` window pairs.

    Columns: those of ``user_drift_table`` and ``gained, lost`` (see ``changes``).
    """
    top = top_users(drift, n, min_pairs)
    prof = profiles[profiles[schema.USER].isin(top[schema.USER])]
    got = changes(drift[drift[schema.USER].isin(top[schema.USER])], prof, column)
    return top.merge(got, on=schema.USER, how="left")


def zone_labels(cells: Any) -> dict[str, str]:
    """``{cell: "area at 40.758, -73.985"}``: the centre of each H3 cell (about 100 m
    precision), a name people can read for the zone basis."""
    import h3  # the 'h3' package (v4), as spatial.density uses it

    out = {}
    for cell in dict.fromkeys(str(c) for c in cells if c is not None and c == c):
        lat, lon = h3.cell_to_latlng(cell)
        out[cell] = f"area at {lat:.3f}, {lon:.3f}"
    return out

"""Built-in sample data: a deterministic synthetic Berlin whose residents live plausible lives.

``generate_events`` returns events in the canonical schema (analytics/schema.py) for a seeded
population of users. What is in there, so analytics and models have something to find:

* **anchors**: every user has a home (a ``Home`` place in a residential district) and a
  workplace (an ``Office`` in a business district);
* **daily and weekly rhythms**: commute peaks around 08:00 and 18:00 local time on weekdays,
  lunch near work, evening errands and gym, nightlife mostly on Friday and Saturday nights
  (spilling past midnight), brunch and parks/museums at weekends;
* **local time**: ``tz_offset_min`` is Europe/Berlin's offset (60 in winter, 120 in summer);
  ``ts`` is UTC;
* **taste and drift**: each user has preferences over leisure venue types; about a third of
  the users drift, moving their preferences gradually to a different mix over their lifetime;
* **cohorts and churn**: about half the users are there from day one, the rest join over the
  period; about a quarter churn (their events stop well before the end);
* **repeat and exploration**: a user returns to a few favourite places per venue type and
  otherwise explores places whose probability decays with distance from home or work;
* **behaviour and value**: mostly ``visit`` with ``value`` = dwell minutes; some ``like`` and
  ``share`` events without a value.

Everything is vectorised numpy; ``iter_event_chunks`` streams any number of events in bounded
memory (used by bench/import_bench.py to write 10M-row CSVs). The city itself (districts,
places, time zone) lives in analytics/sample_city.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import schema
from .city import (
    BBOX,
    CAT,
    CATEGORIES,
    CENTER,
    CITY,
    DWELL_MIN,
    LEISURE,
    berlin_offset_min,
    generate_places,
    hood_distances_km,
)

if TYPE_CHECKING:  # the store is only a parameter here; no import cycle at run time
    from ..store import DatasetInfo, Store

__all__ = [
    "BBOX", "CENTER", "CITY", "CSV_COLUMNS", "generate_events", "generate_places",
    "generate_users", "import_sample", "iter_event_chunks", "write_csv",
]

#: Column names (and order) of the CSV written by :func:`write_csv` (the "generic" format).
CSV_COLUMNS: tuple[str, ...] = (
    schema.USER, schema.ITEM, schema.TS, schema.LAT, schema.LON,
    schema.BEHAVIOR, schema.CATEGORY, schema.VALUE,
)

# Activities: (anchor is home?, mean local hour, sd hours, weight Mon..Sun, venue-type weights).
_ACTIVITIES: tuple[tuple[bool, float, float, tuple[float, ...], dict[str, float]], ...] = (
    (True, 8.0, 0.6, (.13,) * 5 + (.01, .01), {"Transit": 1}),  # morning commute
    (False, 10.5, 1.8, (.10,) * 5 + (.01, .005), {"Office": 1}),  # at work
    (False, 12.8, 0.6, (.12,) * 5 + (.03, .03), {"Cafe": 1, "Restaurant": 2}),  # lunch
    (False, 17.8, 0.7, (.12,) * 5 + (.01, .01), {"Transit": 1}),  # evening commute
    (True, 19.3, 1.3, (.17, .17, .17, .17, .12, .08, .06),  # errands, gym, dinner
     {"Gym": 1.5, "Shop": 1, "Supermarket": 1.5, "Restaurant": 1, "Cafe": .3}),
    (True, 21.8, 1.5, (.11,) * 5 + (.08, .12), {"Home": 1}),  # back home
    (True, 23.2, 1.4, (.03, .03, .04, .06, .20, .24, .04), {"Bar": 3, "Nightclub": 1}),
    (True, 14.5, 2.5, (.03,) * 5 + (.32, .42),  # weekend leisure
     {"Park": 2, "Museum": 1, "Shop": 1.5, "Cafe": 1, "Restaurant": 1}),
    (True, 11.0, 1.0, (.02,) * 5 + (.14, .18), {"Cafe": 2, "Restaurant": 1}),  # brunch
)
_ACT_HOME = np.array([a[0] for a in _ACTIVITIES])
_ACT_MU = np.array([a[1] for a in _ACTIVITIES])
_ACT_SD = np.array([a[2] for a in _ACTIVITIES])
_DOW_W = np.array([a[3] for a in _ACTIVITIES]).T  # (7, A)
_DOW_CUM = (_DOW_W / _DOW_W.sum(axis=1, keepdims=True)).cumsum(axis=1)
_ACT_CAT = np.zeros((len(_ACTIVITIES), len(CATEGORIES)))  # (A, C)
for _a, (*_, _cats) in enumerate(_ACTIVITIES):
    for _c, _w in _cats.items():
        _ACT_CAT[_a, CAT[_c]] = _w
_LEISURE_IDX = np.array([CAT[c] for c in LEISURE])
_FAV_WEIGHTS = np.array([0.45, 0.25, 0.15, 0.10, 0.05])  # how often the k-th favourite is chosen
#: Distance-decay scale (km) of exploration per venue type: people travel further to go out.
_DECAY_KM = np.array([1.5, 1.5, 1.0, 1.5, 2.0, 4.0, 5.0, 1.5, 4.0, 6.0, 2.0, 1.0])
_BEHAVIORS = np.array([schema.DEFAULT_BEHAVIOR, "like", "share"])
_BEHAVIOR_P = np.array([0.93, 0.05, 0.02])
_BATCH_USERS = 500  # users simulated at once by iter_event_chunks (~80k events)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _pick(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row from rows of cumulative (unnormalised) weights. (N, K) -> (N,)"""
    u = rng.random(len(cum)) * cum[:, -1]
    return (cum < u[:, None]).sum(axis=1).clip(0, cum.shape[1] - 1)


class _City:
    """Places plus the per-(district, venue type) exploration distributions, built once."""

    def __init__(self, seed: int, n_places: int) -> None:
        self.places = generate_places(seed, n_places)
        p = self.places
        self.cat = np.array([CAT[c] for c in p[schema.CATEGORY].to_numpy()])
        self.hood = p["hood"].to_numpy()
        d = hood_distances_km(p)  # (H, P)
        w = np.exp(-d[:, None, :] / _DECAY_KM[None, :, None])  # (H, C, P)
        w = w * (self.cat[None, None, :] == np.arange(len(CATEGORIES))[None, :, None])
        self.explore = w / w.sum(axis=2, keepdims=True)  # (H, C, P)
        n_h = self.explore.shape[0]
        home_share = np.bincount(self.hood[self.cat == CAT["Home"]], minlength=n_h)
        work_share = np.bincount(self.hood[self.cat == CAT["Office"]], minlength=n_h)
        self.home_p = home_share / home_share.sum()
        self.work_p = work_share / work_share.sum()

    def sample(self, hood: np.ndarray, cat: np.ndarray, rng: np.random.Generator,
               size: tuple[int, ...] = ()) -> np.ndarray:
        """Places of type ``cat`` near district ``hood``, one (or ``size``) per row."""
        out = np.empty((len(hood), *size), dtype=np.int64)
        key = hood * len(CATEGORIES) + cat
        order = np.argsort(key, kind="stable")
        uniq, starts = np.unique(key[order], return_index=True)
        for k, lo, hi in zip(uniq, starts, np.append(starts[1:], len(order)), strict=True):
            idx = order[lo:hi]
            p = self.explore[k // len(CATEGORIES), k % len(CATEGORIES)]
            out[idx] = rng.choice(len(p), size=(len(idx), *size), p=p)
        return out


def _users(city: _City, rng: np.random.Generator, first: int, n: int, days: int,
           rate: float) -> dict[str, np.ndarray]:
    """Per-user attributes of users ``first .. first+n-1`` as arrays."""
    n_l = len(LEISURE)
    home_hood = rng.choice(len(city.home_p), size=n, p=city.home_p)
    work_hood = rng.choice(len(city.work_p), size=n, p=city.work_p)
    home = city.sample(home_hood, np.full(n, CAT["Home"]), rng)
    work = city.sample(work_hood, np.full(n, CAT["Office"]), rng)
    late = rng.random(n) < 0.45  # joins after day 0: the later cohorts
    join = np.where(late, rng.integers(1, max(2, days - 21), size=n), 0)
    churns = rng.random(n) < 0.25
    span = np.maximum(days - join - 28, 1)
    end = np.where(churns, join + 14 + (rng.random(n) * span).astype(int), days)
    pref0 = 0.1 / n_l + 0.9 * rng.dirichlet(np.full(n_l, 0.4), size=n)  # (n, L)
    # Drifters move towards a new taste that favours what they used to ignore: a fresh draw
    # whose largest share goes to their least-liked venue type, and so on down.
    drifts = rng.random(n) < 0.35
    fresh = np.sort(0.1 / n_l + 0.9 * rng.dirichlet(np.full(n_l, 0.4), size=n), axis=1)
    pref1 = np.empty_like(pref0)
    pref1[np.arange(n)[:, None], np.argsort(pref0, axis=1)] = fresh[:, ::-1]
    pref1 = np.where(drifts[:, None], pref1, pref0)
    fav = np.empty((n, 2, len(CATEGORIES), len(_FAV_WEIGHTS)), dtype=np.int64)  # (n, anchor, C, K)
    for a, hood in enumerate((home_hood, work_hood)):
        for c in range(len(CATEGORIES)):
            fav[:, a, c] = city.sample(hood, np.full(n, c), rng, size=(len(_FAV_WEIGHTS),))
    return {
        "index": np.arange(first, first + n), "home_hood": home_hood, "work_hood": work_hood,
        "home": home, "work": work, "join": join, "end": end, "churns": churns,
        "drifts": drifts, "pref0": pref0, "pref1": pref1, "fav": fav,
        "rate": rate * rng.gamma(3.0, 1 / 3.0, size=n), "p_repeat": rng.beta(5, 2, size=n),
    }


def _events(city: _City, us: dict[str, np.ndarray], rng: np.random.Generator,
            start: np.datetime64, days: int) -> pd.DataFrame:
    """Events of the users in ``us``, canonical schema, sorted by user then ts."""
    active = us["end"] - us["join"]
    counts = rng.poisson(us["rate"] * active)
    u = np.repeat(np.arange(len(active)), counts)  # (N,) local user index
    n = len(u)
    day = us["join"][u] + (rng.random(n) * active[u]).astype(np.int64)
    dow = (start.astype("datetime64[D]").astype(np.int64) + day + 3) % 7  # Monday = 0
    act = _pick(_DOW_CUM[dow], rng)
    # Taste at this point of the user's life: a gradual (smoothstep) drift from pref0 to pref1.
    w = ((day - us["join"][u]) / np.maximum(active[u] - 1, 1))[:, None]
    w = w * w * (3 - 2 * w)
    taste = np.ones((n, len(CATEGORIES)))
    taste[:, _LEISURE_IDX] = (1 - w) * us["pref0"][u] + w * us["pref1"][u]
    cat = _pick((_ACT_CAT[act] * taste).cumsum(axis=1), rng)
    del taste
    hours = (_ACT_MU[act] + rng.normal(size=n) * _ACT_SD[act]).clip(5.0, 28.9)
    local = (start.astype("datetime64[s]") + (day * 86400).astype("timedelta64[s]")
             + (hours * 3600).astype("timedelta64[s]"))
    # Place: fixed anchors, else a favourite (repeat) or a nearby place (exploration).
    home_anchor = _ACT_HOME[act]
    hood = np.where(home_anchor, us["home_hood"][u], us["work_hood"][u])
    repeat = rng.random(n) < us["p_repeat"][u]
    k = _pick(np.broadcast_to(_FAV_WEIGHTS.cumsum(), (n, len(_FAV_WEIGHTS))), rng)
    place = us["fav"][u, (~home_anchor).astype(np.int64), cat, k]
    explore = ~repeat
    place[explore] = city.sample(hood[explore], cat[explore], rng)
    place = np.where(cat == CAT["Home"], us["home"][u], place)
    place = np.where(cat == CAT["Office"], us["work"][u], place)
    behavior = rng.choice(len(_BEHAVIORS), size=n, p=_BEHAVIOR_P)
    dwell = DWELL_MIN[cat] * rng.lognormal(-0.18, 0.6, size=n)
    value = np.where(behavior == 0, dwell.round(1), np.nan)

    end = start.astype("datetime64[s]") + np.timedelta64(days * 86400, "s")
    keep = local < end  # a late-night event on the last evening would spill past the period
    offset = berlin_offset_min(local.astype("datetime64[D]"))
    ts = local - offset.astype("timedelta64[m]")
    order = np.lexsort((ts, u))
    order = order[keep[order]]
    u, ts, place = u[order], ts[order], place[order]
    p = city.places
    uid = np.array([f"U{i:06d}" for i in us["index"]], dtype=object)
    df = pd.DataFrame({
        schema.USER: uid[u],
        schema.ITEM: p[schema.ITEM].to_numpy(dtype=object)[place],
        schema.TS: ts.astype("datetime64[us]"),
        schema.LAT: p[schema.LAT].to_numpy()[place],
        schema.LON: p[schema.LON].to_numpy()[place],
        schema.BEHAVIOR: _BEHAVIORS.astype(object)[behavior[order]],
        schema.CATEGORY: np.array(CATEGORIES, dtype=object)[cat[order]],
        schema.VALUE: value[order],
        schema.TZ_OFFSET: offset[order],
    })
    return df.astype(schema.PANDAS_DTYPES)


def _check(users: int, days: int, events_per_user_day: float) -> None:
    if users < 1 or days < 30 or events_per_user_day <= 0:
        raise ValueError(
            f"cannot generate sample data for users={users}, days={days}, "
            f"events_per_user_day={events_per_user_day}: use at least 1 user, at least 30 "
            "days and a positive event rate"
        )


def generate_users(users: int = 500, seed: int = 7, start: str = "2024-01-01",
                   days: int = 180, events_per_user_day: float = 1.5,
                   n_places: int = 3000) -> pd.DataFrame:
    """The simulated population behind :func:`generate_events` (same arguments, same users).

    One row per user: user_id, home/work item ids and district indexes, ``join_day`` and
    ``end_day`` (first and one-past-last active day, counted from ``start``), ``churns``,
    ``drifts`` and ``rate`` (mean events per active day). For tests and documentation.
    """
    _check(users, days, events_per_user_day)
    city = _City(seed, n_places)
    us = _users(city, _rng(seed, 1, 0), 0, users, days, events_per_user_day)
    item = city.places[schema.ITEM].to_numpy(dtype=object)
    return pd.DataFrame({
        schema.USER: pd.array([f"U{i:06d}" for i in us["index"]], dtype="string"),
        "home_item": pd.array(item[us["home"]], dtype="string"),
        "work_item": pd.array(item[us["work"]], dtype="string"),
        "home_hood": us["home_hood"], "work_hood": us["work_hood"],
        "join_day": us["join"], "end_day": us["end"], "churns": us["churns"],
        "drifts": us["drifts"], "rate": us["rate"],
    })


def generate_events(users: int = 500, seed: int = 7, start: str = "2024-01-01",
                    days: int = 180, events_per_user_day: float = 1.5,
                    n_places: int = 3000) -> pd.DataFrame:
    """Events of ``users`` simulated Berliners over ``days`` days from ``start`` (UTC).

    Deterministic in its arguments; columns ``schema.COLUMNS`` with ``schema.PANDAS_DTYPES``;
    sorted by user then ts. 500 users x 180 days at 1.5 events/day give about 90k events.
    """
    _check(users, days, events_per_user_day)
    city = _City(seed, n_places)
    us = _users(city, _rng(seed, 1, 0), 0, users, days, events_per_user_day)
    return _events(city, us, _rng(seed, 2, 0), np.datetime64(start, "D"), days)


def iter_event_chunks(n_events: int, seed: int = 7, chunk_rows: int = 500_000, *,
                      start: str = "2024-01-01", days: int = 180,
                      events_per_user_day: float = 1.5,
                      n_places: int = 3000) -> Iterator[pd.DataFrame]:
    """Exactly ``n_events`` events in DataFrames of at most ``chunk_rows`` rows each.

    Users are simulated in batches of 500 (each batch seeded from ``seed`` and its number), so
    memory stays bounded by a few chunks whatever ``n_events`` is, and the rows do not depend
    on ``chunk_rows``. Rows are sorted by user then ts
    across chunks; user ids continue from batch to batch.
    """
    if n_events < 0 or chunk_rows < 1:
        raise ValueError(f"n_events must be >= 0 and chunk_rows >= 1, got {n_events}, "
                         f"{chunk_rows}")
    _check(1, days, events_per_user_day)
    city = _City(seed, n_places)
    t0 = np.datetime64(start, "D")
    pending: list[pd.DataFrame] = []
    n_pending = produced = 0
    batch = 0
    while produced < n_events:
        us = _users(city, _rng(seed, 1, batch), batch * _BATCH_USERS, _BATCH_USERS, days,
                    events_per_user_day)
        pending.append(_events(city, us, _rng(seed, 2, batch), t0, days))
        n_pending += len(pending[-1])
        batch += 1
        while n_pending >= chunk_rows or (n_pending and produced + n_pending >= n_events):
            buf = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            take = min(chunk_rows, n_events - produced, len(buf))
            yield buf.iloc[:take].reset_index(drop=True)
            produced += take
            rest = buf.iloc[take:] if produced < n_events else buf.iloc[:0]
            pending, n_pending = ([rest], len(rest)) if len(rest) else ([], 0)
            if produced >= n_events:
                return


def write_csv(path: str | Path, n_events: int, seed: int = 7,
              chunk_rows: int = 500_000) -> Path:
    """Stream ``n_events`` sample events to a CSV with a header row; returns the path.

    Columns are :data:`CSV_COLUMNS` (user_id,item_id,ts,lat,lon,behavior,category,value), ts
    as ``YYYY-MM-DD HH:MM:SS`` UTC; non-visit events have an empty value.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        header = True
        for chunk in iter_event_chunks(n_events, seed, chunk_rows):
            chunk[list(CSV_COLUMNS)].to_csv(fh, header=header, index=False,
                                            date_format="%Y-%m-%d %H:%M:%S")
            header = False
        if header:  # no events at all: still write the header
            fh.write(",".join(CSV_COLUMNS) + "\n")
    return path


def import_sample(store: Store, name: str = "sample", users: int = 500, seed: int = 7,
                  replace: bool = False) -> DatasetInfo:
    """Generate sample events and save them as dataset ``name`` in ``store``.

    Returns the new dataset's DatasetInfo. The registry row's report
    has the same keys as a file import's report (nothing is ever rejected here).
    """
    schema.check_dataset_name(name)
    df = generate_events(users=users, seed=seed)
    report = {
        "name": name, "rows_read": len(df), "rows_kept": len(df), "rows_rejected": 0,
        "rejected_by_reason": {}, "users": int(df[schema.USER].nunique()),
        "items": int(df[schema.ITEM].nunique()),
        "time_min": str(df[schema.TS].min()), "time_max": str(df[schema.TS].max()),
        "has_coordinates": bool(df[schema.LAT].notna().any()),
    }
    cur = store.cursor()
    try:
        cur.register("_sample_events", df)
        cols = ", ".join(schema.COLUMNS)
        return store.save_dataset(
            name, f"SELECT {cols} FROM _sample_events", source=f"generated:seed={seed},"
            f"users={users}", fmt="sample", report=report, replace=replace, con=cur)
    finally:
        cur.close()

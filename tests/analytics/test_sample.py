"""The built-in sample generator: determinism, schema, and the behaviour it promises to contain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trailscope.analytics import schema
from trailscope.analytics.sample.city import CATEGORIES, KM_PER_DEG_LAT, KM_PER_DEG_LON, LEISURE
from trailscope.analytics.sample.generate import (
    BBOX,
    CENTER,
    CSV_COLUMNS,
    generate_events,
    generate_places,
    generate_users,
    import_sample,
    iter_event_chunks,
    write_csv,
)

USERS = 200
SEED = 11
START = pd.Timestamp("2024-01-01")
END = START + pd.Timedelta(days=180)


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return generate_events(users=USERS, seed=SEED)


@pytest.fixture(scope="module")
def users() -> pd.DataFrame:
    return generate_users(users=USERS, seed=SEED)


def _local(df: pd.DataFrame) -> pd.Series:
    return df[schema.TS] + pd.to_timedelta(df[schema.TZ_OFFSET].astype("int64"), unit="min")


def _js(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two count vectors."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    a = generate_events(users=40, seed=5)
    pd.testing.assert_frame_equal(a, generate_events(users=40, seed=5))
    b = generate_events(users=40, seed=6)
    assert len(a) != len(b) or not a.equals(b)
    assert not a[schema.ITEM].head(200).equals(b[schema.ITEM].head(200))


def test_schema_dtypes_order_and_values(events: pd.DataFrame) -> None:
    assert tuple(events.columns) == schema.COLUMNS
    assert {c: str(t) for c, t in events.dtypes.items()} == schema.PANDAS_DTYPES
    assert 150 * USERS < len(events) < 400 * USERS  # ~1.5 events/day over active days
    assert not events[list(schema.REQUIRED)].isna().any().any()
    # sorted by user, then time
    key = events[[schema.USER, schema.TS]]
    assert key.equals(key.sort_values([schema.USER, schema.TS]).reset_index(drop=True))
    assert events[schema.ITEM].str.fullmatch(r"P\d{5}").all()
    assert set(events[schema.CATEGORY].unique()) == set(CATEGORIES)
    visit = events[schema.BEHAVIOR] == schema.DEFAULT_BEHAVIOR
    assert 0.85 < visit.mean() < 0.99
    assert events.loc[visit, schema.VALUE].gt(0).all()  # dwell minutes
    assert events.loc[~visit, schema.VALUE].isna().all()
    assert START <= events[schema.TS].min() and events[schema.TS].max() < END


def test_tz_offset_is_berlin_time(events: pd.DataFrame) -> None:
    month = _local(events).dt.month
    offsets = events[schema.TZ_OFFSET].astype("int64")
    assert (offsets[month.isin([1, 2])] == 60).all()
    assert (offsets[month.isin([5, 6])] == 120).all()


def test_coordinates_inside_the_city(events: pd.DataFrame) -> None:
    min_lat, max_lat, min_lon, max_lon = BBOX
    assert events[schema.LAT].between(min_lat, max_lat).all()
    assert events[schema.LON].between(min_lon, max_lon).all()
    km = np.hypot((events[schema.LAT] - CENTER[0]) * KM_PER_DEG_LAT,
                  (events[schema.LON] - CENTER[1]) * KM_PER_DEG_LON)
    assert km.median() < 10  # a city, centred where documented


def test_places_are_deterministic_and_cover_every_type() -> None:
    p = generate_places(3, n=800)
    pd.testing.assert_frame_equal(p, generate_places(3, n=800))
    assert len(p) == 800 and p[schema.ITEM].is_unique
    assert set(p[schema.CATEGORY]) == set(CATEGORIES)
    assert p[schema.LAT].between(BBOX[0], BBOX[1]).all()
    with pytest.raises(ValueError, match="too few"):
        generate_places(3, n=10)


def test_weekday_commute_peak_and_weekend_nightlife(events: pd.DataFrame) -> None:
    local = _local(events)
    dow, hour = local.dt.day_of_week, local.dt.hour
    weekday = dow < 5
    commute = hour.isin([7, 8])
    weekday_share = commute[weekday].mean()
    weekend_share = commute[~weekday].mean()
    assert weekday_share > 3 * weekend_share, (weekday_share, weekend_share)
    # nightlife: bars and clubs on Friday/Saturday evenings (and the small hours after)
    night = events[schema.CATEGORY].isin(["Bar", "Nightclub"]) & ((hour >= 20) | (hour < 4))
    evening_dow = (local - pd.Timedelta(hours=4)).dt.day_of_week
    per_day = night.groupby(evening_dow).sum() / evening_dow.value_counts().sort_index()
    assert per_day.loc[[4, 5]].min() > 2 * per_day.loc[[0, 1, 2]].max(), per_day


def test_churn_and_cohorts(events: pd.DataFrame, users: pd.DataFrame) -> None:
    first = events.groupby(schema.USER)[schema.TS].min()
    last = events.groupby(schema.USER)[schema.TS].max()
    gone = (END - last) > pd.Timedelta(days=30)
    joined_late = (first - START) > pd.Timedelta(days=30)
    assert 0.1 < gone.mean() < 0.5, gone.mean()
    assert 0.2 < joined_late.mean() < 0.6, joined_late.mean()
    # the users who stop early are (nearly all) the ones the simulation made churn; a few
    # rare visitors just happen to have no late events
    flagged = set(users.loc[users["churns"], schema.USER])
    early = set(gone[gone].index)
    assert len(early & flagged) >= 0.8 * len(early)
    # cohorts: several distinct join months
    assert first.dt.month.nunique() >= 5


def test_interest_drift(events: pd.DataFrame, users: pd.DataFrame) -> None:
    """First vs last month of each long-lived user: drifters differ beyond sampling noise."""
    leisure = events[events[schema.CATEGORY].isin(LEISURE)]
    rows = []
    for uid, g in leisure.groupby(schema.USER):
        t0, t1 = g[schema.TS].min(), g[schema.TS].max()
        if t1 - t0 < pd.Timedelta(days=90):
            continue
        month = pd.Timedelta(days=30)
        a = g.loc[g[schema.TS] < t0 + month, schema.CATEGORY].value_counts()
        b = g.loc[g[schema.TS] > t1 - month, schema.CATEGORY].value_counts()
        a, b = (x.reindex(list(LEISURE), fill_value=0).to_numpy(float) for x in (a, b))
        if a.sum() >= 10 and b.sum() >= 10:
            rows.append((uid, _js(a, b)))
    js = pd.DataFrame(rows, columns=[schema.USER, "js"]).merge(
        users[[schema.USER, "drifts"]].astype({schema.USER: object}), on=schema.USER)
    stable, drifting = js.loc[~js["drifts"], "js"], js.loc[js["drifts"], "js"]
    assert len(stable) >= 20 and len(drifting) >= 20
    # Threshold from the data: the noise level of users whose taste does not move.
    threshold = stable.quantile(0.75)
    assert drifting.median() > threshold, (drifting.median(), threshold)
    assert drifting.median() > 2 * stable.median()


def test_repeat_visits_and_distance_decay(events: pd.DataFrame, users: pd.DataFrame) -> None:
    visits = events.groupby([schema.USER, schema.ITEM]).size()
    assert (visits > 1).sum() / len(visits) > 0.2  # favourite places come back
    places = generate_places(SEED).set_index(schema.ITEM)
    home = users.set_index(schema.USER)["home_item"]
    shops = events[events[schema.CATEGORY].isin(["Supermarket", "Gym"])]
    h = places.loc[home.loc[shops[schema.USER]].to_numpy(), [schema.LAT, schema.LON]].to_numpy()
    d_home = np.hypot((shops[schema.LAT].to_numpy() - h[:, 0]) * KM_PER_DEG_LAT,
                      (shops[schema.LON].to_numpy() - h[:, 1]) * KM_PER_DEG_LON)
    rng = np.random.default_rng(0)
    r = places.iloc[rng.integers(0, len(places), size=4000)]  # 2000 random pairs of places
    lat, lon = r[schema.LAT].to_numpy(), r[schema.LON].to_numpy()
    d_random = np.hypot((lat[:2000] - lat[2000:]) * KM_PER_DEG_LAT,
                        (lon[:2000] - lon[2000:]) * KM_PER_DEG_LON)
    assert np.median(d_home) < 0.5 * np.median(d_random), (np.median(d_home),
                                                          np.median(d_random))


def test_iter_event_chunks_exact_count_bounded_chunks() -> None:
    chunks = list(iter_event_chunks(23_456, seed=4, chunk_rows=5_000))
    sizes = [len(c) for c in chunks]
    assert sum(sizes) == 23_456
    assert max(sizes) <= 5_000 and all(s == 5_000 for s in sizes[:-1])
    allrows = pd.concat(chunks, ignore_index=True)
    assert tuple(allrows.columns) == schema.COLUMNS
    key = allrows[[schema.USER, schema.TS]]
    assert key.equals(key.sort_values([schema.USER, schema.TS]).reset_index(drop=True))
    assert allrows[schema.USER].nunique() > 50  # several user batches, ids continue
    again = pd.concat(iter_event_chunks(23_456, seed=4, chunk_rows=7_000), ignore_index=True)
    pd.testing.assert_frame_equal(allrows, again)  # chunk size does not change the data
    assert list(iter_event_chunks(0, seed=4)) == []


def test_write_csv_streams_a_generic_csv(tmp_path) -> None:
    path = write_csv(tmp_path / "sub" / "s.csv", 3_210, seed=2, chunk_rows=1_000)
    with path.open() as fh:
        assert fh.readline().strip() == ",".join(CSV_COLUMNS)
    back = pd.read_csv(path)
    assert len(back) == 3_210
    ts = pd.to_datetime(back[schema.TS], format="%Y-%m-%d %H:%M:%S")
    expected = pd.concat(iter_event_chunks(3_210, seed=2), ignore_index=True)
    assert (ts.to_numpy() == expected[schema.TS].to_numpy()).all()
    assert back[schema.VALUE].isna().sum() == expected[schema.VALUE].isna().sum()
    np.testing.assert_allclose(back[schema.LAT], expected[schema.LAT])


def test_import_sample_registers_dataset(store) -> None:
    from trailscope.analytics.store import StoreError

    info = import_sample(store, name="demo", users=30, seed=3)
    expected = generate_events(users=30, seed=3)
    assert info.rows == len(expected)
    assert info.users == expected[schema.USER].nunique() <= 30
    assert info.items == expected[schema.ITEM].nunique()
    assert info.format == "sample" and info.source == "generated:seed=3,users=30"
    assert info.has_coordinates
    assert info.report["rows_kept"] == info.report["rows_read"] == len(expected)
    assert info.report["rows_rejected"] == 0 and info.report["rejected_by_reason"] == {}
    stored = store.events("demo")
    assert len(stored) == len(expected)
    assert (stored[schema.TS].to_numpy() == expected[schema.TS].to_numpy()).all()
    assert stored[schema.TZ_OFFSET].astype("int64").isin([60, 120]).all()
    with pytest.raises(StoreError, match="already exists"):
        import_sample(store, name="demo", users=30, seed=3)
    assert import_sample(store, name="demo", users=10, seed=3, replace=True).users <= 10

"""The Live page's data: what arrived through the live write path (analytics/append.py).

Everything is read from the dataset's live table (``analytics.append.live_table``: the
appended events with their ``event_id`` and ``arrived_at``, UTC), never from the whole events
table, and memoised in ``cache.ANALYTICS`` under the dataset's stamp (which every append
changes) and the current minute (the per-minute chart's hour slides with the clock):

* :func:`snapshot`: events per minute of arrival over the last hour, the newest located
  events (the map), the latest events (the feed), the totals;
* :func:`top_changes`: the users whose top-10 changed most. For the users active in the
  last :data:`ACTIVE_WINDOW` the dataset's default model (app/services/models.py, memoised)
  gives a top-10 each time the dataset changes; the top-10 of the previous change is kept
  per dataset and model in this process, and a user's change is ``1 - overlap / 10``;
* :func:`rebuild_if_needed`: the summaries keep their exact tables fresh on every append
  (analytics.rollups.incremental); the others fall behind, and once enough events are
  behind (``incremental.needs_rebuild``) this starts one full rebuild as a background job
  (app/services/jobs.py, kind ``import``, like the import's summary build), once the last
  rebuild ended long enough ago (``incremental.rebuild_spaced``). It builds from
  one DuckDB snapshot of the events (build.rebuild: one transaction, MVCC) while appends go on
  committing; folds wait (``analytics.append.fold_lock``), and the events staged after the
  snapshot stay staged for the first fold on the new tables.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from ...analytics import append as writes
from ...analytics import schema
from ...analytics.rollups import build, incremental
from . import cache, jobs
from . import models as model_service
from . import workspace as services
from .workspace import ServiceError

#: Minutes of arrivals the per-minute chart shows.
MINUTES = 60
#: Newest located events drawn on the map / latest events in the feed.
MAP_EVENTS = 300
FEED_EVENTS = 25
#: Users whose recommendations are followed: active in this window, at most this many.
ACTIVE_WINDOW = timedelta(minutes=15)
ACTIVE_USERS = 12
TOP_K = 10

MINUTE, EVENTS = "minute", "events"
ARRIVED = writes.ARRIVED_AT
FEED_COLUMNS = [ARRIVED, schema.TS, schema.USER, schema.ITEM, schema.CATEGORY,
                schema.BEHAVIOR, schema.LAT, schema.LON]


@dataclass
class Snapshot:
    """What the Live page draws of dataset ``name`` (frames may be empty)."""

    name: str
    total: int                          # events that arrived through the live path
    last_arrival: pd.Timestamp | None
    per_minute: pd.DataFrame            # minute, events (the last MINUTES minutes, 0-filled)
    newest: pd.DataFrame                # the newest located events (FEED_COLUMNS)
    feed: pd.DataFrame                  # the latest events, newest first (FEED_COLUMNS)
    endpoint: str = ""                  # where to send events
    rows: int = 0                       # events in the dataset
    now: pd.Timestamp | None = None     # when this was read (UTC)
    known: frozenset[str] | None = None  # the default model's users (None: no model)


@dataclass
class Changes:
    """Users whose top-10 changed most (``user_id, change, overlap, top``), or a note."""

    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    note: str | None = None
    model_id: str | None = None


def endpoint(name: str) -> str:
    """The API path events of ``name`` are posted to."""
    return f"/api/v1/datasets/{name}/events"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _has_live(store: Any, name: str) -> bool:
    table = writes.live_table(name).strip('"')
    return bool(store.query_df("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = ? "
                               "AND schema_name = current_schema()", [table])["n"].iloc[0])


def version(name: str) -> str:
    """What the Live page's view of ``name`` depends on: the dataset's stamp (every append
    changes it) and the current minute (the per-minute chart's hour moves with the clock)."""
    return f"{services.dataset_stamp(name)}|{_now():%Y%m%d%H%M}"


def snapshot(name: str) -> Snapshot:
    """The Live page's frames for dataset ``name`` (memoised per :func:`version`)."""
    now = _now()
    return cache.ANALYTICS.get_or_compute(f"live.snapshot|{name}|{version(name)}",
                                          lambda: _snapshot(name, now))


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in FEED_COLUMNS})


def _known(name: str) -> frozenset[str] | None:
    """The users the dataset's default model knows (their feed rows link to an explanation);
    None without a model."""
    try:
        return model_service.known_users(name, model_service.default_model(name))
    except model_service.user_errors():
        return None


def _snapshot(name: str, now: datetime) -> Snapshot:
    store = services.get_store()
    end = pd.Timestamp(now).floor("min")
    minutes = pd.date_range(end - pd.Timedelta(minutes=MINUTES - 1), end, freq="min")
    zero = pd.DataFrame({MINUTE: minutes, EVENTS: 0})
    rows = int(services.dataset_info(name).rows)
    if not _has_live(store, name):
        return Snapshot(name, 0, None, zero, _empty_events(), _empty_events(), endpoint(name),
                        rows, pd.Timestamp(now))
    live = writes.live_table(name)
    cols = ", ".join(FEED_COLUMNS)
    total, last = store.query_df(f"SELECT count(*) AS n, max({ARRIVED}) AS last FROM {live}"
                                 ).iloc[0]
    counts = store.query_df(
        f"SELECT date_trunc('minute', {ARRIVED}) AS {MINUTE}, count(*) AS {EVENTS} FROM {live} "
        f"WHERE {ARRIVED} >= ? GROUP BY 1", [minutes[0].to_pydatetime()])
    per_minute = zero.set_index(MINUTE)[EVENTS].add(
        counts.set_index(MINUTE)[EVENTS].astype("int64"), fill_value=0).astype("int64") \
        .reindex(minutes, fill_value=0).rename_axis(MINUTE).reset_index()
    order = f"ORDER BY {ARRIVED} DESC, {schema.TS} DESC"
    newest = store.query_df(f"SELECT {cols} FROM {live} WHERE {schema.LAT} IS NOT NULL AND "
                            f"{schema.LON} IS NOT NULL {order} LIMIT {MAP_EVENTS}")
    feed = store.query_df(f"SELECT {cols} FROM {live} {order} LIMIT {FEED_EVENTS}")
    return Snapshot(name, int(total), None if pd.isna(last) else pd.Timestamp(last),
                    per_minute, newest, feed, endpoint(name), rows, pd.Timestamp(now),
                    _known(name))


# -- whose recommendations changed ---------------------------------------------------------
_tops_lock = threading.Lock()
#: (dataset, model id) -> user -> (stamp, top items) at the previous change of the dataset.
_tops: dict[tuple[str, str], dict[str, tuple[str, tuple[str, ...]]]] = {}
#: (dataset, model id) -> user -> (change, overlap, top items) at the latest change.
_changes: dict[tuple[str, str], dict[str, tuple[float, int, tuple[str, ...]]]] = {}


def top_changes(name: str, limit: int = 10) -> Changes:
    """The users active in the last ACTIVE_WINDOW whose top-10 changed most since the
    previous change of the dataset (memoised per dataset stamp)."""
    stamp = services.dataset_stamp(name)
    return cache.ANALYTICS.get_or_compute(f"live.changes|{name}|{stamp}|{limit}",
                                          lambda: _top_changes(name, stamp, limit))


def _top_changes(name: str, stamp: str, limit: int) -> Changes:
    try:
        model_id = model_service.default_model(name)
    except model_service.user_errors():
        return Changes(note="No trained model for this dataset yet: train one on the Models "
                            "page to see whose recommendations the new events change.")
    store = services.get_store()
    if not _has_live(store, name):
        return Changes(note="No events have arrived yet.", model_id=model_id)
    active = store.query_df(
        f"SELECT {schema.USER} FROM {writes.live_table(name)} WHERE {ARRIVED} >= ? GROUP BY 1 "
        f"ORDER BY max({ARRIVED}) DESC LIMIT {ACTIVE_USERS}",
        [_now() - ACTIVE_WINDOW])[schema.USER].astype(str).tolist()
    key = (name, model_id)
    unknown = 0
    for user in active:
        try:
            got = model_service.recommend(name, user, TOP_K, model_id)
        except model_service.user_errors():
            unknown += 1        # a user the model was not trained on
            continue
        top = tuple(str(i["item_id"]) for i in got["items"])
        with _tops_lock:
            seen = _tops.setdefault(key, {})
            before = seen.get(user)
            if before is not None and before[0] != stamp:
                overlap = len(set(before[1]) & set(top))
                _changes.setdefault(key, {})[user] = (1 - overlap / TOP_K, overlap, top)
            if before is None or before[0] != stamp:
                seen[user] = (stamp, top)
    with _tops_lock:
        known = dict(_changes.get(key, {}))
    rows = pd.DataFrame([{schema.USER: u, "change": c, "overlap": o, "top": ", ".join(t[:3])}
                         for u, (c, o, t) in known.items() if u in active],
                        columns=[schema.USER, "change", "overlap", "top"])
    rows = rows.sort_values(["change", schema.USER], ascending=[False, True],
                            ignore_index=True).head(int(limit))
    note = None
    if rows.empty:
        note = ("No recently active user's top-10 has changed yet: the first events of a user "
                "set their top-10; the next ones are compared with it.")
        if unknown and unknown == len(active):
            note = (f"The recently active users are not known to model {model_id} (it was "
                    "trained before they appeared): retrain it to follow them.")
    return Changes(rows=rows, note=note, model_id=model_id)


# -- the full rebuild the incremental summaries need now and then ---------------------------
def rebuild_if_needed(name: str) -> str | None:
    """Start the full summary rebuild of ``name`` as a background job when enough appended
    events are behind in the tables the appends cannot keep exact
    (``incremental.needs_rebuild``) and the last rebuild ended long enough ago
    (``incremental.rebuild_spaced``: a rebuild pauses the folds, not the appends, while it
    runs, so a steady stream must not start one after another); its job id, else None (not
    needed, too soon, or one already queued or running)."""
    store = services.get_store()
    cur = store.cursor()
    try:
        if not incremental.needs_rebuild(cur, name) or not incremental.rebuild_spaced(cur, name):
            return None
    finally:
        cur.close()
    if jobs.jobs(active_only=True, dataset=name, rebuild=True):
        return None

    def target(progress: jobs.Progress, cancel: threading.Event, log: Any) -> dict[str, Any]:
        if cancel.is_set():
            raise jobs.Cancelled("before the rebuild")
        progress({"phase": "import", "fraction": 0.05,
                  "message": f"Rebuilding the summaries of {name}…"})
        # only folds wait (they update the tables being replaced); appends commit meanwhile:
        # the rebuild reads one snapshot and keeps what they stage after it for the next fold
        with writes.fold_lock:
            c = store.cursor()
            try:
                seconds = build.rebuild(c, name, cancel=cancel)
                incremental.settle(c, name)
            except build.Cancelled:  # rolled back: the old tables and the staged events stay
                raise jobs.Cancelled("during the rebuild") from None
            finally:
                c.close()
        return {"dataset": name, "summaries_s": seconds}

    job = jobs.Job(target, label=f"rebuild the summaries of {name}", kind="import",
                   meta={"dataset": name, "rebuild": True}, summarize=lambda r: r,
                   expected=(ServiceError,))
    try:
        return jobs.start(job)
    except jobs.QueueFull:
        return None

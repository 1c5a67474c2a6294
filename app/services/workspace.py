"""The thin service layer that Dash pages call: one workspace Store per process, plus caching.

Pages never open DuckDB or import analytics/models directly; they call these functions. Heavy
read-only calls are memoised in ``cache.ANALYTICS`` (app/services/cache.py, the one caching
policy) under keys that include the dataset's import stamp, so re-importing a dataset under the
same name invalidates them without any explicit cache busting. Use :func:`memoize_dataset` for
new cached per-dataset calls::

    @memoize_dataset
    def daily_counts(name: str, freq: str = "D") -> pd.DataFrame: ...
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from ...analytics.store import DatasetInfo, Store, StoreError
from . import cache
from .messages import public_message

T = TypeVar("T")

_store: Store | None = None
_store_lock = threading.Lock()
_default_dataset: str | None = None


class ServiceError(ValueError):
    """A request the dashboard cannot fulfil; the message says what to change (without
    server paths: ``messages.public_message``)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(public_message(message))


# -- the workspace -------------------------------------------------------------------------
def get_store() -> Store:
    """The process-wide workspace Store, opened on first use from ``$TRAILSCOPE_HOME``."""
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                _store = Store()
    return _store


def close_store() -> None:
    """Close the process-wide Store and forget cached results (tests, shutdown)."""
    global _store
    with _store_lock:
        if _store is not None:
            _store.close()
            _store = None
    cache.clear_all()


def set_default_dataset(name: str | None) -> None:
    """The dataset pages show when the URL names none (``create_app(default_dataset)``)."""
    global _default_dataset
    _default_dataset = name or None


# -- catalog -------------------------------------------------------------------------------
def list_datasets() -> pd.DataFrame:
    """One row per dataset with its stats, newest import first (always fresh, never cached)."""
    return get_store().list_datasets()


def dataset_records() -> list[dict[str, Any]]:
    """:func:`list_datasets` as plain rows (always fresh), without pandas."""
    return get_store().dataset_records()


def dataset_names() -> list[str]:
    """Dataset names, newest import first."""
    return [str(r["name"]) for r in dataset_records()]


def default_dataset() -> str | None:
    """The configured default if it exists, else the most recently imported dataset."""
    names = dataset_names()
    if _default_dataset in names:
        return _default_dataset
    return names[0] if names else None


def resolve_dataset(requested: str | None) -> str | None:
    """``requested`` if such a dataset exists, else :func:`default_dataset`."""
    if isinstance(requested, str) and requested and get_store().exists(requested):
        return requested
    return default_dataset()


def dataset_stamp(name: str) -> str:
    """The version of dataset ``name`` (``cache.dataset_stamp``: new on every re-import)."""
    return cache.dataset_stamp(get_store(), name)


def memoize_dataset(fn: Callable[..., T]) -> Callable[..., T]:
    """Memoise ``fn(name, *args, **kwargs)`` under a key holding the dataset's import time.

    Arguments after ``name`` must have a stable ``repr``. Every caller gets its own copy of
    the result (``cache.ANALYTICS`` stores values pickled).
    """
    qualname = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(name: str, *args: Any, **kwargs: Any) -> T:
        key = f"{qualname}|{name}|{dataset_stamp(name)}|{args!r}|{sorted(kwargs.items())!r}"
        return cache.ANALYTICS.get_or_compute(key, lambda: fn(name, *args, **kwargs))

    return wrapper


@memoize_dataset
def dataset_info(name: str) -> DatasetInfo:
    """Registry stats of one dataset (raises DatasetNotFound with a helpful message)."""
    return get_store().info(name)


def drop_dataset(name: str) -> None:
    """Delete a dataset and its events (a workspace that refuses says why, as ServiceError)."""
    try:
        get_store().drop(name)
    except StoreError as exc:
        raise ServiceError(str(exc)) from exc


# -- import --------------------------------------------------------------------------------
def sniff(path: str | Path, fmt: str = "auto") -> Any:
    """Guess format, columns and mapping of a file: ``analytics.ingest.Sniff``. A file the
    importer cannot read raises ServiceError saying why."""
    from ...analytics.ingest import pipeline as ingest

    try:
        return ingest.sniff(path, fmt=fmt)
    except ingest.IngestError as exc:
        raise ServiceError(str(exc)) from exc


def formats() -> tuple[str, ...]:
    """The file formats the importer understands (``analytics.ingest.FORMATS``)."""
    from ...analytics.ingest import pipeline as ingest

    return tuple(ingest.FORMATS)


def import_uploaded(path: str | Path, name: str, fmt: str = "auto",
                    mapping: dict[str, str] | None = None, replace: bool = False,
                    keep_duplicates: bool = False) -> dict[str, Any]:
    """Import a file into the workspace and build its dashboard summaries; returns the import
    report as a dict (``summaries_s``: the summaries' build time, None when not built).

    Raises ``analytics.ingest.IngestError`` for bad input and :class:`ServiceError` for a bad
    name or a name clash, each with a message meant for the user.
    """
    from ...analytics.ingest import pipeline as ingest
    from ...analytics.schema import check_dataset_name

    name = (name or "").strip()
    try:
        check_dataset_name(name)
    except ValueError as exc:
        raise ServiceError(f"{exc}. Type a dataset name such as 'nyc_checkins'.") from exc
    store = get_store()
    if store.exists(name) and not replace:
        raise ServiceError(
            f"a dataset named {name!r} already exists: tick 'Replace an existing dataset' to "
            "overwrite it, or type another name")
    clean_mapping = {k: v for k, v in (mapping or {}).items() if v} or None
    try:
        report = ingest.import_file(store, path, name=name, fmt=fmt or "auto",
                                    mapping=clean_mapping, replace=replace,
                                    keep_duplicates=keep_duplicates)
    except StoreError as exc:
        raise ServiceError(str(exc)) from exc
    data = report.to_json()
    data = json.loads(data) if isinstance(data, str) else dict(data)
    data["summaries_s"] = build_summaries(name)
    return data


def build_summaries(name: str) -> float | None:
    """Build the dataset's dashboard summary tables (``analytics.rollup``) right after its
    import, so the first page view does not pay for them; the seconds taken, or None where
    the workspace cannot hold them (read-only: pages then read the raw table)."""
    from ...analytics.rollups import build

    return build.after_import(get_store(), name)
